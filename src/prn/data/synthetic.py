"""A small, seeded, procedurally drawn dataset in MVTec layout, for tests and CPU smoke runs.

Two categories: ``tiles`` (a texture: colour field, tile grid, diagonal grain) and
``discs`` (an object: a ringed disc on a plain background, so target areas matter).
Three defect types with exact binary masks: ``scratch`` (a thick line), ``stain`` (a
dark blob) and ``patch`` (a colour-inverted patch on tiles, a missing piece on discs).
Defects are strong on purpose: a short CPU training must be able to separate them.

The dataset is written into a temporary sibling folder and renamed into place, with a
marker file written last, so a crash never leaves something that looks complete.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from prn.data.errors import DatasetError
from prn.data.mvtec import MVTecDataModule

CATEGORIES = ("tiles", "discs")
DEFECT_TYPES = ("scratch", "stain", "patch")
MARKER = ".prn-synthetic-complete.json"
_PARTIAL = ".partial-"
_BACKGROUND = np.array([0.16, 0.16, 0.17], dtype=np.float32)


def ensure_synthetic_dataset(
    root: str | Path,
    category: str = "tiles",
    seed: int = 0,
    image_size: int = 256,
    num_train: int = 60,
    num_test_good: int = 20,
    num_test_per_defect: int = 10,
) -> Path:
    """Return ``root/category``, generating it first unless a complete copy with these parameters exists."""
    params = _checked_params(category, seed, image_size, num_train, num_test_good, num_test_per_defect)
    root = Path(root).expanduser()
    root.mkdir(parents=True, exist_ok=True)
    target = root / category
    _remove_abandoned_partials(root, category)
    if target.exists():
        return _reuse(target, params)
    temp = Path(tempfile.mkdtemp(dir=root, prefix=f".{category}{_PARTIAL}{os.getpid()}-"))
    try:
        _write_dataset(temp, params)
        (temp / MARKER).write_text(json.dumps(params, sort_keys=True) + "\n", encoding="utf-8")
        os.rename(temp, target)
    except OSError:
        shutil.rmtree(temp, ignore_errors=True)
        if target.exists():  # another process finished first
            return _reuse(target, params)
        raise
    except BaseException:
        shutil.rmtree(temp, ignore_errors=True)
        raise
    return target


class SyntheticDataModule(MVTecDataModule):
    """:class:`MVTecDataModule` over a generated dataset; ``tiles`` counts as a texture by default."""

    def __init__(
        self,
        root: str | Path,
        category: str = "tiles",
        *,
        generation_seed: int = 0,
        source_size: int = 256,
        num_train: int = 60,
        num_test_good: int = 20,
        num_test_per_defect: int = 10,
        **options: Any,
    ) -> None:
        options.setdefault("texture_categories", ["tiles"])
        super().__init__(root, category, **options)
        self.generation = _checked_params(
            category, generation_seed, source_size, num_train, num_test_good, num_test_per_defect
        )

    def prepare_data(self) -> None:
        generation = {key: value for key, value in self.generation.items() if key != "category"}
        ensure_synthetic_dataset(self.root, self.category, **generation)

    def _resolve_split(self):
        """Generate on demand too: ``prepare_data`` is skipped when the module is used outside a Trainer."""
        self.prepare_data()
        return super()._resolve_split()


def _checked_params(
    category: str, seed: int, image_size: int, num_train: int, num_test_good: int, num_test_per_defect: int
) -> dict[str, Any]:
    if category not in CATEGORIES:
        raise DatasetError(
            f"dataset.category={category!r} has no synthetic generator; choose one of {list(CATEGORIES)}."
        )
    minimums = {
        "seed": (seed, 0),
        "image_size": (image_size, 32),
        "num_train": (num_train, 1),
        "num_test_good": (num_test_good, 0),
        "num_test_per_defect": (num_test_per_defect, 1),
    }
    for name, (value, minimum) in minimums.items():
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
            raise DatasetError(f"synthetic option {name}={value!r} must be an int >= {minimum}.")
    return {"category": category, **{name: int(value) for name, (value, _) in minimums.items()}}


def _reuse(target: Path, params: dict[str, Any]) -> Path:
    marker = target / MARKER
    if not marker.is_file():
        raise DatasetError(
            f"{target} exists but is not a complete synthetic dataset (no {MARKER}); "
            "delete it or point dataset.root at another folder."
        )
    existing = json.loads(marker.read_text(encoding="utf-8"))
    if existing != params:
        raise DatasetError(
            f"{target} was generated with {existing}, not {params}; delete it or use another dataset.root."
        )
    return target


def _remove_abandoned_partials(root: Path, category: str) -> None:
    """Delete temp folders of crashed runs (their writer process is gone)."""
    for leftover in root.glob(f".{category}{_PARTIAL}*"):
        pid_text = leftover.name[len(f".{category}{_PARTIAL}") :].split("-", 1)[0]
        if not pid_text.isdigit() or not _process_alive(int(pid_text)):
            shutil.rmtree(leftover, ignore_errors=True)


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _write_dataset(folder: Path, params: dict[str, Any]) -> None:
    category, size = params["category"], params["image_size"]
    for index in range(params["num_train"]):
        image, _ = _normal_image(category, size, _rng(params, "train", 0, index))
        _save_image(folder / "train" / "good" / f"{index:03d}.png", image)
    for index in range(params["num_test_good"]):
        image, _ = _normal_image(category, size, _rng(params, "test", 0, index))
        _save_image(folder / "test" / "good" / f"{index:03d}.png", image)
    for type_index, defect_type in enumerate(DEFECT_TYPES, start=1):
        for index in range(params["num_test_per_defect"]):
            rng = _rng(params, "test", type_index, index)
            image, allowed = _normal_image(category, size, rng)
            defective, mask = _add_defect(category, defect_type, image, allowed, rng)
            _save_image(folder / "test" / defect_type / f"{index:03d}.png", defective)
            _save_image(folder / "ground_truth" / defect_type / f"{index:03d}_mask.png", mask.astype(np.uint8) * 255)


def _rng(params: dict[str, Any], split: str, type_index: int, index: int) -> np.random.Generator:
    """One independent stream per file, so files do not depend on how many others exist."""
    keys = [params["seed"], zlib.crc32(params["category"].encode()), zlib.crc32(split.encode()), type_index, index]
    return np.random.default_rng(np.random.SeedSequence(keys))


def _save_image(path: Path, pixels: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path, format="PNG", compress_level=1)


def _normal_image(category: str, size: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Return a normal image (uint8) and the region where defects may go."""
    draw = _draw_tiles if category == "tiles" else _draw_disc
    pixels, allowed = draw(size, rng)
    pixels = pixels + rng.normal(0.0, 0.015, pixels.shape).astype(np.float32)
    return _to_uint8(pixels), allowed


def _draw_tiles(size: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    colour = np.array([0.78, 0.66, 0.50], dtype=np.float32) + rng.uniform(-0.03, 0.03, 3).astype(np.float32)
    field = _smooth_field(size, rng, amplitude=0.06)
    grain = 0.04 * np.sin(2 * np.pi * (xx + yy) * 24 + rng.uniform(0, 2 * np.pi))
    period = 0.25
    offset_y, offset_x = rng.uniform(0, period, 2)
    grout = (((yy + offset_y) % period) < 0.02) | (((xx + offset_x) % period) < 0.02)
    pixels = colour + field + grain[..., None]
    pixels[grout] *= 0.6
    return pixels, np.ones((size, size), dtype=bool)


def _draw_disc(size: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    centre = size / 2 + rng.uniform(-0.03, 0.03, 2) * size
    radius = size * (0.32 + rng.uniform(-0.01, 0.01))
    distance = np.hypot(yy - centre[0], xx - centre[1])
    disc = distance <= radius
    rings = 0.05 * np.sin(distance / size * 2 * np.pi * 12 + rng.uniform(0, 2 * np.pi))
    shading = 0.12 * (1 - distance / radius)
    surface = np.array([0.45, 0.55, 0.70], dtype=np.float32) + (rings + shading)[..., None]
    pixels = np.where(disc[..., None], surface, _BACKGROUND + _smooth_field(size, rng, amplitude=0.02))
    allowed = distance <= radius * 0.85
    return pixels.astype(np.float32), allowed


def _smooth_field(size: int, rng: np.random.Generator, amplitude: float) -> np.ndarray:
    """Low-frequency colour variation: a 5x5 random grid upsampled bicubically."""
    channels = []
    for _ in range(3):
        coarse = Image.fromarray(rng.uniform(-amplitude, amplitude, (5, 5)).astype(np.float32), mode="F")
        channels.append(np.asarray(coarse.resize((size, size), Image.Resampling.BICUBIC)))
    return np.stack(channels, axis=-1)


def _add_defect(
    category: str, defect_type: str, image: np.ndarray, allowed: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Paint one defect; the returned mask is exactly the set of pixels that were changed."""
    mask = _defect_region(defect_type, allowed, rng)
    pixels = image.astype(np.float32) / 255.0
    pixels[mask] = _DEFECT_PAINTERS[(category, defect_type)](pixels[mask], rng)
    return _to_uint8(pixels), mask


def _defect_region(defect_type: str, allowed: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Draw a shape inside ``allowed`` that is large enough to see; retry small ones."""
    size = allowed.shape[0]
    minimum_area = max(12, int((0.04 * size) ** 2))
    candidates = np.argwhere(allowed)
    for _ in range(50):
        centre = candidates[rng.integers(len(candidates))][::-1]  # (x, y)
        canvas = Image.new("L", (size, size), 0)
        _SHAPES[defect_type](ImageDraw.Draw(canvas), centre, size, rng)
        mask = (np.asarray(canvas) > 0) & allowed
        if mask.sum() >= minimum_area:
            return mask
    raise DatasetError(f"could not place a {defect_type} defect of at least {minimum_area} pixels; raise image_size.")


def _scratch_shape(draw: ImageDraw.ImageDraw, centre: np.ndarray, size: int, rng: np.random.Generator) -> None:
    angle, half_length = rng.uniform(0, np.pi), size * rng.uniform(0.1, 0.2)
    offset = half_length * np.array([np.cos(angle), np.sin(angle)])
    ends = [tuple(centre - offset), tuple(centre + offset)]
    draw.line(ends, fill=255, width=max(2, round(size / 64)))


def _stain_shape(draw: ImageDraw.ImageDraw, centre: np.ndarray, size: int, rng: np.random.Generator) -> None:
    for _ in range(int(rng.integers(3, 6))):
        cx, cy = centre + rng.normal(0, size * 0.03, 2)
        rx, ry = size * rng.uniform(0.03, 0.07, 2)
        draw.ellipse([cx - rx, cy - ry, cx + rx, cy + ry], fill=255)


def _patch_shape(draw: ImageDraw.ImageDraw, centre: np.ndarray, size: int, rng: np.random.Generator) -> None:
    angles = np.sort(rng.uniform(0, 2 * np.pi, int(rng.integers(4, 7))))
    radii = size * rng.uniform(0.07, 0.13, len(angles))
    points = [(centre[0] + r * np.cos(a), centre[1] + r * np.sin(a)) for a, r in zip(angles, radii)]
    draw.polygon(points, fill=255)


def _bright_or_dark(values: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Scratches are near-white on dark surfaces and near-black on bright ones."""
    tone = 0.05 if values.mean() > 0.5 else 0.95
    return np.full_like(values, tone) + rng.normal(0, 0.01, values.shape).astype(np.float32)


def _dark_stain(values: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    stain = np.array([0.30, 0.16, 0.06], dtype=np.float32)
    return 0.15 * values + 0.85 * stain


def _inverted(values: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return (1.0 - values)[:, ::-1]  # invert and swap R/B: far from the beige tile colour


def _missing(values: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return np.broadcast_to(_BACKGROUND, values.shape) + rng.normal(0, 0.01, values.shape).astype(np.float32)


_SHAPES: dict[str, Callable[..., None]] = {"scratch": _scratch_shape, "stain": _stain_shape, "patch": _patch_shape}
_DEFECT_PAINTERS: dict[tuple[str, str], Callable[[np.ndarray, np.random.Generator], np.ndarray]] = {
    ("tiles", "scratch"): _bright_or_dark,
    ("tiles", "stain"): _dark_stain,
    ("tiles", "patch"): _inverted,
    ("discs", "scratch"): _bright_or_dark,
    ("discs", "stain"): _dark_stain,
    ("discs", "patch"): _missing,
}


def _to_uint8(pixels: np.ndarray) -> np.ndarray:
    return (np.clip(pixels, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
