"""Time and peak memory of AnomalyMetrics on a synthetic MVTec-AD-sized test set.

The full MVTec AD test set is 1725 images (about 73% anomalous); at 256x256 that is
113 M pixels, so the exact pixel metrics must run on a few bytes per pixel. Maps and
masks are generated batch by batch from a seeded generator (never held all at once);
anomalies are 1-3 elliptical regions covering ~0.2-10% of an anomalous image.

Usage: python benchmarks/metrics_memory.py [--images N] [--size S] [--batch-size B]
"""

from __future__ import annotations

import argparse
import resource
import time
from collections.abc import Iterator

import numpy as np
import torch

from prn.metrics import AnomalyMetrics, top_k_mean

ANOMALOUS_IMAGE_FRACTION = 1258 / 1725  # MVTec AD test set


def peak_rss_mib() -> float:
    """Peak resident set size of this process (Linux reports ru_maxrss in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def synthetic_masks(rng: np.random.Generator, batch: int, size: int) -> np.ndarray:
    """Elliptical defects on ~73% of images; radii give 0.2-10% area per anomalous image."""
    rows, cols = np.mgrid[0:size, 0:size]
    masks = np.zeros((batch, size, size), dtype=bool)
    for mask in masks:
        if rng.random() >= ANOMALOUS_IMAGE_FRACTION:
            continue
        for _ in range(rng.integers(1, 4)):
            centre_row, centre_col = rng.integers(0, size, 2)
            radius_row, radius_col = rng.uniform(0.02, 0.12, 2) * size
            mask |= ((rows - centre_row) / radius_row) ** 2 + ((cols - centre_col) / radius_col) ** 2 <= 1
    return masks


def synthetic_batches(images: int, size: int, batch_size: int, seed: int) -> Iterator[tuple[torch.Tensor, ...]]:
    """Yield (maps [B,1,H,W], masks [B,1,H,W], labels [B]) with maps higher on defects."""
    rng = np.random.default_rng(seed)
    for start in range(0, images, batch_size):
        batch = min(batch_size, images - start)
        masks = synthetic_masks(rng, batch, size)
        maps = rng.random((batch, size, size), dtype=np.float32) * 0.7 + masks * rng.random(dtype=np.float32) * 0.5
        labels = masks.any(axis=(1, 2)).astype(np.int64)
        yield torch.from_numpy(maps)[:, None], torch.from_numpy(masks)[:, None], torch.from_numpy(labels)


def run(images: int, size: int, batch_size: int, seed: int) -> None:
    metrics = AnomalyMetrics()
    rss_before = peak_rss_mib()
    update_seconds = 0.0
    anomalous_pixels = 0
    for maps, masks, labels in synthetic_batches(images, size, batch_size, seed):
        anomalous_pixels += int(masks.sum())
        started = time.perf_counter()
        metrics.update(maps, masks, top_k_mean(maps, k=100), labels)
        update_seconds += time.perf_counter() - started
    rss_after_update = peak_rss_mib()
    started = time.perf_counter()
    results = metrics.compute()
    compute_seconds = time.perf_counter() - started
    pixels = images * size * size
    print(f"images={images} size={size} pixels={pixels / 1e6:.1f}M anomalous={anomalous_pixels / pixels:.2%}")
    print(f"update:  {update_seconds:.1f} s total ({1e3 * update_seconds / images:.2f} ms/image)")
    print(f"compute: {compute_seconds:.1f} s")
    print(
        f"peak RSS: before={rss_before:.0f} MiB after_update={rss_after_update:.0f} MiB "
        f"after_compute={peak_rss_mib():.0f} MiB (float32 pixels alone: {4 * pixels / 2**20:.0f} MiB)"
    )
    print({name: round(value, 6) for name, value in results.items()}, "skipped:", metrics.skipped)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=1725, help="number of test images (default: MVTec AD's 1725)")
    parser.add_argument("--size", type=int, default=256, help="map side in pixels (default 256)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.images < 1 or args.size < 1 or args.batch_size < 1:
        parser.error("--images, --size and --batch-size must be positive")
    run(args.images, args.size, args.batch_size, args.seed)


if __name__ == "__main__":
    main()
