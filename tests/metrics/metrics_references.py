"""Deliberately naive reference implementations the fast metrics are checked against.

Not imported by the package: each one follows the textbook / official definition as
literally as possible (all pairs, every threshold, the MVTec AD evaluation script).
"""

from __future__ import annotations

from bisect import bisect

import numpy as np
from scipy.ndimage import label


def pairwise_auroc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Fraction of (positive, negative) pairs ranked correctly; ties count 1/2."""
    scores, labels = np.ravel(scores).astype(np.float64), np.ravel(labels).astype(bool)
    positives, negatives = scores[labels][:, None], scores[~labels][None, :]
    return float(np.mean((positives > negatives) + 0.5 * (positives == negatives)))


def stepwise_average_precision(scores: np.ndarray, labels: np.ndarray) -> float:
    """sum_t (R_t - R_{t-1}) * P_t over distinct thresholds, highest first (sklearn)."""
    scores, labels = np.ravel(scores).astype(np.float64), np.ravel(labels).astype(bool)
    positive_count = labels.sum()
    total, previous_recall = 0.0, 0.0
    for threshold in np.unique(scores)[::-1]:
        predicted = scores >= threshold
        true_positives = np.sum(predicted & labels)
        precision = true_positives / predicted.sum()
        recall = true_positives / positive_count
        total += (recall - previous_recall) * precision
        previous_recall = recall
    return float(total)


def mvtec_pro_curve(maps: np.ndarray, masks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Port of compute_pro from the MVTec AD evaluation code (float64 throughout)."""
    fp_changes = np.zeros(maps.shape, dtype=np.float64)
    pro_changes = np.zeros(maps.shape, dtype=np.float64)
    ok_pixel_count, region_count = 0, 0
    for index, mask in enumerate(masks):
        labeled, components = label(mask, np.ones((3, 3), dtype=int))
        region_count += components
        ok_mask = labeled == 0
        ok_pixel_count += ok_mask.sum()
        fp_changes[index, ok_mask] = 1
        for component in range(1, components + 1):
            region = labeled == component
            pro_changes[index, region] = 1.0 / region.sum()
    flat_scores = maps.ravel().astype(np.float64)
    order = np.argsort(flat_scores)[::-1]
    sorted_scores = flat_scores[order]
    fprs = np.cumsum(fp_changes.ravel()[order]) / ok_pixel_count
    pros = np.cumsum(pro_changes.ravel()[order]) / region_count
    keep = np.append(np.diff(sorted_scores) != 0, True)
    fprs, pros = np.clip(fprs[keep], None, 1.0), np.clip(pros[keep], None, 1.0)
    return np.concatenate(([0.0], fprs, [1.0])), np.concatenate(([0.0], pros, [1.0]))


def mvtec_trapezoid(x: np.ndarray, y: np.ndarray, x_max: float) -> float:
    """Port of generic_util.trapezoid: area up to x_max, interpolating at x_max."""
    correction = 0.0
    if x_max not in x:
        insert_at = bisect(x, x_max)
        y_interp = y[insert_at - 1] + (y[insert_at] - y[insert_at - 1]) * (x_max - x[insert_at - 1]) / (
            x[insert_at] - x[insert_at - 1]
        )
        correction = 0.5 * (y_interp + y[insert_at - 1]) * (x_max - x[insert_at - 1])
    keep = x <= x_max
    x, y = x[keep], y[keep]
    return float(np.sum(0.5 * (y[1:] + y[:-1]) * (x[1:] - x[:-1])) + correction)


def mvtec_aupro(maps: np.ndarray, masks: np.ndarray, fpr_limit: float = 0.3) -> float:
    fprs, pros = mvtec_pro_curve(maps, masks)
    return mvtec_trapezoid(fprs, pros, fpr_limit) / fpr_limit


def random_masks(rng: np.random.Generator, count: int, height: int, width: int) -> np.ndarray:
    """Masks with 0-3 random rectangles each (some touching, some images empty)."""
    masks = np.zeros((count, height, width), dtype=bool)
    for mask in masks:
        for _ in range(rng.integers(0, 4)):
            top, left = rng.integers(0, height), rng.integers(0, width)
            mask[top : top + rng.integers(1, 4), left : left + rng.integers(1, 4)] = True
    return masks


def random_maps(rng: np.random.Generator, masks: np.ndarray, levels: int | None) -> np.ndarray:
    """Noisy maps that are higher on anomalies; ``levels`` rounds them to force ties."""
    maps = rng.random(masks.shape) + 0.6 * masks * rng.random(masks.shape)
    if levels is not None:
        maps = np.round(maps * levels) / levels
    return maps
