"""Render a PNG grid of generated training anomalies for one MVTec-layout category.

Each sample shows (generated image, mask, generated image with the foreground outline in
green and the mask outline in red), labelled by its source, so one can check by eye that
anomalies land on the object, are visible, and match their masks::

    python -m prn.tools.preview_generation --root ../shared/data/mvtec_anomaly_detection \
        --category bottle --dtd ../shared/data/dtd/images --out /tmp/preview.png

The loader here is deliberately minimal (``train/good`` normals; k seen anomalies drawn
with a fixed seed from ``test/<defect>`` with ``ground_truth/<defect>/<stem>_mask.png``);
training uses the project's datamodules instead.
"""

from __future__ import annotations

import argparse
import tempfile
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageDraw

from prn.data.generation import ExtendedAnomalySource, ForegroundEstimator, SimulatedAnomalySource
from prn.data.types import NormalImage, TrainingPool

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")
SEEN_ANOMALY_SEED = 0
SAMPLES_PER_ROW = 2
LABEL_HEIGHT = 18


def _read_rgb(path: Path, size: int) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB").resize((size, size), Image.BILINEAR))


def _read_mask(path: Path, size: int) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image.convert("L").resize((size, size), Image.NEAREST)) >= 128


def _image_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)


def load_normals(category_dir: Path, size: int) -> list[np.ndarray]:
    folder = category_dir / "train" / "good"
    if not folder.is_dir():
        raise FileNotFoundError(f"--root/--category: {folder} does not exist; expected the MVTec layout <root>/<category>/train/good")
    return [_read_rgb(path, size) for path in _image_files(folder)]


def load_seen_anomalies(category_dir: Path, size: int, count: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """``count`` test anomalies drawn with a fixed seed, with their ground-truth masks."""
    candidates = [
        (path, category_dir / "ground_truth" / defect.name / f"{path.stem}_mask.png")
        for defect in sorted((category_dir / "test").iterdir())
        if defect.is_dir() and defect.name != "good"
        for path in _image_files(defect)
    ]
    if not candidates:
        raise FileNotFoundError(f"{category_dir / 'test'} holds no defect folders; seen anomalies need test/<defect>/ images")
    rng = np.random.default_rng(SEEN_ANOMALY_SEED)
    picked = rng.choice(len(candidates), size=min(count, len(candidates)), replace=False)
    images = [_read_rgb(candidates[i][0], size) for i in sorted(picked)]
    masks = [_read_mask(candidates[i][1], size) for i in sorted(picked)]
    return images, masks


def _raw_seen_anomaly(pool: TrainingPool, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """What the batch gets instead of EA when EA is off: an unchanged seen anomaly."""
    index = int(rng.integers(len(pool.seen_images)))
    return pool.seen_images[index], pool.seen_masks[index].astype(np.float32)


def build_sources(pool: TrainingPool, args: argparse.Namespace) -> dict[str, Callable]:
    """One source per enabled strategy, each named by what it makes (``seen`` replaces EA when off)."""
    use_ta = not args.no_ta
    sources: dict[str, Callable] = {}
    if not args.no_ea:
        sources["EA"] = ExtendedAnomalySource(pool, use_target_area=use_ta)
    else:
        sources["seen"] = lambda base, rng: _raw_seen_anomaly(pool, rng)
    if not args.no_hea:
        sources["HEA"] = SimulatedAnomalySource(pool, args.dtd, use_homologous=False, use_target_area=use_ta)
    if not args.no_hoa:
        sources["HOA"] = SimulatedAnomalySource(pool, None, use_heterologous=False, use_target_area=use_ta)
    return sources


def _outline_overlay(image: np.ndarray, foreground: np.ndarray | None, mask: np.ndarray) -> np.ndarray:
    overlay = image.copy()
    if foreground is not None:
        contours, _ = cv2.findContours(foreground.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
        cv2.drawContours(overlay, contours, -1, (0, 255, 0), 1)
    contours, _ = cv2.findContours((mask > 0).astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    cv2.drawContours(overlay, contours, -1, (255, 0, 0), 1)
    return overlay


def _sample_tile(label: str, image: np.ndarray, mask: np.ndarray, foreground: np.ndarray | None) -> Image.Image:
    mask_rgb = np.repeat((mask[..., None] * 255).astype(np.uint8), 3, axis=2)
    strip = np.concatenate([image, mask_rgb, _outline_overlay(image, foreground, mask)], axis=1)
    tile = Image.new("RGB", (strip.shape[1], strip.shape[0] + LABEL_HEIGHT), "white")
    tile.paste(Image.fromarray(strip), (0, LABEL_HEIGHT))
    ImageDraw.Draw(tile).text((4, 3), label, fill="black")
    return tile


def render_grid(pool: TrainingPool, sources: dict[str, Callable], count: int, seed: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    names = list(sources)
    tiles = []
    for index in range(count):
        name = names[index % len(names)]
        base = pool.normals[int(rng.integers(len(pool.normals)))]
        image, mask = sources[name](base, rng)
        coverage = 100 * float((mask > 0).mean())
        tiles.append(_sample_tile(f"#{index} {name}  mask {coverage:.1f}%", image, mask, base.foreground))
    rows = (len(tiles) + SAMPLES_PER_ROW - 1) // SAMPLES_PER_ROW
    width, height = tiles[0].size
    grid = Image.new("RGB", (SAMPLES_PER_ROW * width + (SAMPLES_PER_ROW - 1) * 8, rows * height), "white")
    for index, tile in enumerate(tiles):
        grid.paste(tile, ((index % SAMPLES_PER_ROW) * (width + 8), (index // SAMPLES_PER_ROW) * height))
    return grid


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--root", required=True, help="dataset root in MVTec layout (<root>/<category>/train/good)")
    parser.add_argument("--category", required=True)
    parser.add_argument("--dtd", default=None, help="DTD dtd/images folder (needed unless --no-hea)")
    parser.add_argument("--n", type=int, default=16, help="number of samples")
    parser.add_argument("--k", type=int, default=10, help="number of seen anomalies")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--out", default="generation_preview.png")
    parser.add_argument("--cache-dir", default=str(Path(tempfile.gettempdir()) / "prn_foreground_cache"))
    for switch in ("ea", "hea", "hoa", "ta"):
        parser.add_argument(f"--no-{switch}", action="store_true", help=f"switch {switch.upper()} off")
    args = parser.parse_args(argv)
    if args.n < 1 or args.size < 8:
        parser.error("--n must be >= 1 and --size >= 8")
    return args


def main(argv: list[str] | None = None) -> Path:
    args = parse_args(argv)
    category_dir = Path(args.root) / args.category
    normals = load_normals(category_dir, args.size)
    seen_images, seen_masks = load_seen_anomalies(category_dir, args.size, args.k)
    foregrounds = ForegroundEstimator(cache_dir=args.cache_dir)(normals, args.category) if not args.no_ta else [None] * len(normals)
    pool = TrainingPool(
        normals=[NormalImage(image, foreground) for image, foreground in zip(normals, foregrounds)],
        seen_images=seen_images, seen_masks=seen_masks, image_size=(args.size, args.size), category=args.category,
    )
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    render_grid(pool, build_sources(pool, args), args.n, args.seed).save(out)
    print(f"wrote {out}")
    return out


if __name__ == "__main__":
    main()
