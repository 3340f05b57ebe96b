"""A long, narrow, machined metal strip with thin cracks, in the folder layout: a stand-in for the parts we lack.

Issue 20 reports a real part this repository does not have, a long narrow metal surface with thin
cracks, on which ``dataset=folder``'s defaults scored 40 image AUROC. ``../shared`` holds only MVTec
bottle and transistor (objects) and DTD, so this script draws a surface with that part's
difficulties, seeded, and writes it as ``<out>/strip/{train,test}/...`` for ``dataset=folder``:

* 4:1 strips (1024 x 256 px): squashing them to a square shrinks the long axis four times;
* brushed grain along the strip, mottling, a light gradient, a specular band at a random height
  and long faint scratches along the grain: normal images that differ where nothing is wrong;
* transverse machining grooves at a random phase and a jittered pitch: thin dark lines that are
  normal, so a position-bound comparison sees a different layout in every image;
* defects of one to three pixels: ``crack`` (a jagged transverse crack, dark with a lit rim) and
  ``hairline`` (a fainter one-pixel crack at any steep angle), masks dilated by one pixel.

It is a proxy, not that part: numbers on it show whether a default breaks on thin defects on a
moving surface, not what the real part scores. ``docs/own-parts.md`` reports them with this command::

    python benchmarks/surface_proxy.py --out data/surface_proxy
    python src/train.py dataset=folder root=data/surface_proxy category=strip ...
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import cv2
import numpy as np

HEIGHT, WIDTH = 256, 1024
DEFECT_TYPES = ("crack", "hairline")


def smooth_noise(rng: np.random.Generator, sigma_y: float, sigma_x: float) -> np.ndarray:
    """Zero-mean, unit-spread Gaussian noise blurred anisotropically (grain, mottling)."""
    noise = cv2.GaussianBlur(rng.standard_normal((HEIGHT, WIDTH)).astype(np.float32), (0, 0), sigma_x, sigmaY=sigma_y)
    return noise / max(float(noise.std()), 1e-6)


def grooves(rng: np.random.Generator) -> np.ndarray:
    """Transverse machining grooves at a random phase and a pitch that drifts along the strip."""
    pitch = rng.uniform(56, 72)
    x = np.arange(WIDTH, dtype=np.float32)
    drift = np.cumsum(1 + 0.04 * smooth_noise(rng, 1, 30)[0])  # a slightly uneven pitch
    phase = 2 * np.pi * (drift / pitch + rng.random())
    profile = np.clip(np.cos(phase), 0, None) ** 24  # narrow dips, about 3 px wide
    tilt = rng.uniform(-0.03, 0.03) * (np.arange(HEIGHT, dtype=np.float32)[:, None] - HEIGHT / 2)
    columns = np.clip(x[None, :] + tilt, 0, WIDTH - 1).astype(np.int64)
    return profile[columns]


def normal_surface(rng: np.random.Generator) -> np.ndarray:
    """One defect-free strip, ``float32`` grey levels in [0, 1]."""
    y = np.linspace(-1, 1, HEIGHT, dtype=np.float32)[:, None]
    x = np.linspace(-1, 1, WIDTH, dtype=np.float32)[None, :]
    base = rng.uniform(0.38, 0.55) + rng.uniform(-0.06, 0.06) * x + 0.03 * smooth_noise(rng, 24, 60)
    band_centre, band_width = rng.uniform(-0.7, 0.7), rng.uniform(0.12, 0.3)
    highlight = rng.uniform(0.08, 0.22) * np.exp(-(((y - band_centre) / band_width) ** 2))
    surface = base + highlight * (1 + 0.3 * smooth_noise(rng, 8, 40))
    surface += 0.035 * smooth_noise(rng, 0.6, 30)  # brushed grain along the strip
    surface -= rng.uniform(0.07, 0.12) * grooves(rng)
    for _ in range(rng.integers(0, 4)):  # long faint scratches along the grain: normal
        start = (int(rng.integers(0, WIDTH)), int(rng.integers(10, HEIGHT - 10)))
        length, angle = rng.uniform(150, 450), np.deg2rad(rng.uniform(-3, 3))
        end = (int(start[0] + length * np.cos(angle)), int(start[1] + length * np.sin(angle)))
        canvas = np.zeros((HEIGHT, WIDTH), np.float32)
        cv2.line(canvas, start, end, 1.0, 1, cv2.LINE_AA)
        surface += rng.uniform(0.04, 0.08) * canvas
    return surface


def crack_path(rng: np.random.Generator, steep_within: float, length: tuple[float, float]) -> np.ndarray:
    """A jagged random walk heading across the strip (within ``steep_within`` degrees of vertical)."""
    heading = np.deg2rad(90 + rng.uniform(-steep_within, steep_within))
    point = np.array([rng.uniform(80, WIDTH - 80), rng.uniform(40, HEIGHT - 40)])
    points, remaining = [point.copy()], rng.uniform(*length)
    while remaining > 0:
        step = rng.uniform(3, 7)
        heading += rng.normal(0, 0.35)
        heading = np.clip(heading, np.deg2rad(90 - steep_within - 15), np.deg2rad(90 + steep_within + 15))
        point = point + step * np.array([np.cos(heading), np.sin(heading)])
        if not (2 <= point[0] < WIDTH - 2 and 2 <= point[1] < HEIGHT - 2):
            break
        points.append(point.copy())
        remaining -= step
    return np.round(np.array(points)).astype(np.int32)


def add_defect(surface: np.ndarray, defect_type: str, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """``surface`` with one thin crack drawn on it, and its mask (the crack dilated by one pixel)."""
    if defect_type == "crack":
        path, width, depth = crack_path(rng, 35, (50, 170)), int(rng.integers(2, 4)), rng.uniform(0.16, 0.32)
    else:
        path, width, depth = crack_path(rng, 60, (70, 220)), 1, rng.uniform(0.1, 0.18)
    core = np.zeros((HEIGHT, WIDTH), np.float32)
    cv2.polylines(core, [path], False, 1.0, width, cv2.LINE_AA)
    rim = np.zeros_like(core)
    cv2.polylines(rim, [path + np.array([1, -1], np.int32)], False, 1.0, 1, cv2.LINE_AA)
    cracked = surface - depth * core + 0.5 * depth * rim * (1 - core)
    mask = cv2.dilate((np.maximum(core, rim) > 0.25).astype(np.uint8), np.ones((3, 3), np.uint8))
    return cracked, mask.astype(bool)


def to_rgb(surface: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A slightly warm grey, with sensor noise, as ``uint8`` RGB."""
    grey = surface + rng.normal(0, 0.008, surface.shape).astype(np.float32)
    tint = np.array([1.0, 0.99, 0.96], np.float32)
    return np.clip(grey[..., None] * tint * 255, 0, 255).round().astype(np.uint8)


def write_strip(out: Path, seed: int, counts: dict[str, int]) -> Path:
    """Write the category ``strip`` under ``out``; returns its folder."""
    rng = np.random.default_rng(seed)
    category = out / "strip"
    if category.exists():
        shutil.rmtree(category)
    for split, good in (("train", counts["train_good"]), ("test", counts["test_good"])):
        folder = category / split / "good"
        folder.mkdir(parents=True)
        for index in range(good):
            cv2.imwrite(str(folder / f"{index:03d}.png"), to_rgb(normal_surface(rng), rng)[..., ::-1])
        per_type = counts["train_per_defect"] if split == "train" else counts["test_per_defect"]
        for defect_type in DEFECT_TYPES:
            images, masks = (
                category / split / "anomalous" / defect_type,
                category / split / "anomalous_masks" / defect_type,
            )
            images.mkdir(parents=True)
            masks.mkdir(parents=True)
            for index in range(per_type):
                cracked, mask = add_defect(normal_surface(rng), defect_type, rng)
                cv2.imwrite(str(images / f"{index:03d}.png"), to_rgb(cracked, rng)[..., ::-1])
                cv2.imwrite(str(masks / f"{index:03d}.png"), mask.astype(np.uint8) * 255)
    (category / "surface_proxy.json").write_text(json.dumps({"seed": seed, **counts}, indent=2) + "\n")
    return category


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("data/surface_proxy"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--train-good", type=int, default=200)
    parser.add_argument("--train-per-defect", type=int, default=5, help="labelled defects per type (seen)")
    parser.add_argument("--test-good", type=int, default=60)
    parser.add_argument("--test-per-defect", type=int, default=25)
    args = parser.parse_args()
    counts = {
        "train_good": args.train_good,
        "train_per_defect": args.train_per_defect,
        "test_good": args.test_good,
        "test_per_defect": args.test_per_defect,
    }
    print(write_strip(args.out, args.seed, counts))


if __name__ == "__main__":
    main()
