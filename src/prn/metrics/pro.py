"""Exact, memory-bounded AUPRO (area under the per-region-overlap curve up to an FPR limit).

Definition (MVTec AD official evaluation): regions are the 8-connected components of
each ground-truth mask; at a threshold t the per-region overlap PRO(t) is the mean
over all regions of the fraction of the region's pixels scoring >= t, and FPR(t) is
the fraction of all normal pixels (of all images) scoring >= t. The curve over all
distinct thresholds (ties grouped) is integrated with the trapezoidal rule up to
``fpr_limit`` (linear interpolation at the limit) and divided by ``fpr_limit``.

Why not the straightforward way: it argsorts every pixel with three float64/uint32
companion arrays (~20 bytes per pixel). Here only the normal scores are sorted (in
place) and the anomalous pixels carry a region weight, so PRO is a weighted tail sum:
each region's pixels weigh 1/(n_regions * region_size), and PRO(>= t) is the weight of
the anomalous pixels scoring >= t. FPR only moves at thresholds equal to a normal
score, so the area is the sum, over distinct normal scores t, of
dFPR(t) * (PRO(> t) + PRO(>= t)) / 2, processed in chunks of the sorted normals.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from prn.metrics.ranking import CHUNK_SIZE, as_score_array

#: 8-connectivity, as in the official MVTec AD evaluation script.
EIGHT_CONNECTED = np.ones((3, 3), dtype=bool)


def anomalous_pixel_region_sizes(masks: np.ndarray) -> np.ndarray:
    """Size of the 8-connected region each anomalous pixel belongs to.

    ``masks`` is one (H, W) bool mask or a stack (N, H, W); regions never cross images.
    Returned in the order of ``masks[masks]`` (image-major, row-major), as int64.
    """
    if masks.ndim == 2:
        structure = EIGHT_CONNECTED
    elif masks.ndim == 3:
        # A 3-D structure whose only non-zero plane is the middle one labels each
        # image separately in a single call.
        structure = np.zeros((3, 3, 3), dtype=bool)
        structure[1] = EIGHT_CONNECTED
    else:
        raise ValueError(f"ground-truth masks must be (H, W) or (N, H, W); got shape {masks.shape}")
    region_ids, _ = ndimage.label(masks, structure=structure)
    region_sizes = np.bincount(region_ids.ravel())
    return region_sizes[region_ids[region_ids > 0]]


def as_image_stack(array: np.ndarray, name: str) -> np.ndarray:
    """Accept (H, W), (N, H, W) or (N, 1, H, W) and return (N, H, W)."""
    stack = np.asarray(array)
    if stack.ndim == 4 and stack.shape[1] == 1:
        stack = stack[:, 0]
    if stack.ndim == 2:
        stack = stack[None]
    if stack.ndim != 3:
        raise ValueError(f"{name} must have shape (H, W), (N, H, W) or (N, 1, H, W); got {np.asarray(array).shape}")
    return stack


def as_binary_masks(gt_masks: np.ndarray, name: str = "gt_masks") -> np.ndarray:
    """Stack masks as (N, H, W) bool, rejecting values other than 0 and 1."""
    masks = as_image_stack(gt_masks, name)
    if masks.dtype != np.bool_:
        if not np.all((masks == 0) | (masks == 1)):
            raise ValueError(f"{name} must contain only 0 and 1 (or bool); binarise the masks first")
        masks = masks.astype(np.bool_)
    return masks


def aupro(score_maps: np.ndarray, gt_masks: np.ndarray, fpr_limit: float = 0.3) -> float:
    """Exact AUPRO of ``score_maps`` against binary ``gt_masks``, normalised by ``fpr_limit``.

    Shapes: (H, W), (N, H, W) or (N, 1, H, W), identical for both. Images without
    anomalies contribute only normal pixels. Returns a value in [0, 1].
    """
    scores = as_image_stack(score_maps, "score_maps")
    masks = as_binary_masks(gt_masks)
    if scores.shape != masks.shape:
        raise ValueError(f"score_maps shape {scores.shape} differs from gt_masks shape {masks.shape}")
    region_sizes = anomalous_pixel_region_sizes(masks)
    return aupro_from_split(scores[~masks], scores[masks], 1.0 / region_sizes, fpr_limit)


def aupro_from_split(
    normal_scores: np.ndarray,
    anomalous_scores: np.ndarray,
    anomalous_weights: np.ndarray,
    fpr_limit: float = 0.3,
    *,
    normal_sorted: bool = False,
) -> float:
    """AUPRO from pre-split pixels: all normal scores, anomalous scores and their weights.

    ``anomalous_weights`` are proportional to 1/region_size for each anomalous pixel
    (they are normalised to sum to 1 here, which supplies the 1/n_regions factor).
    ``normal_scores`` are sorted in place unless ``normal_sorted`` says they already are.
    """
    normals = as_score_array(normal_scores, "normal_scores")
    if not normal_sorted:
        normals.sort()
    anomalous = as_score_array(anomalous_scores, "anomalous_scores")
    weights = np.asarray(anomalous_weights, dtype=np.float64).reshape(-1)
    if weights.size != anomalous.size:
        raise ValueError(f"anomalous_weights has {weights.size} values for {anomalous.size} anomalous scores")
    order = np.argsort(anomalous, kind="stable")
    return aupro_from_sorted(normals, anomalous[order], weights[order], fpr_limit)


def _check_inputs(normals: np.ndarray, anomalous: np.ndarray, weights: np.ndarray, fpr_limit: float) -> None:
    if not 0.0 < fpr_limit <= 1.0:
        raise ValueError(f"fpr_limit must be in (0, 1]; got {fpr_limit}")
    if normals.size == 0:
        raise ValueError("AUPRO is undefined without normal pixels: every ground-truth pixel is anomalous")
    if anomalous.size == 0:
        raise ValueError("AUPRO is undefined without anomalous pixels: every ground-truth mask is empty")
    if weights.size != anomalous.size:
        raise ValueError(f"{weights.size} region weights given for {anomalous.size} anomalous scores")
    if not (np.all(np.isfinite(weights)) and np.all(weights > 0)):
        raise ValueError("region weights must be finite and positive (1 / region_size per anomalous pixel)")


def _tail_weight_sums(weights_sorted: np.ndarray) -> np.ndarray:
    """tail[i] = sum of weights_sorted[i:], with tail[-1] = 0; monotone by construction."""
    tail = np.zeros(weights_sorted.size + 1, dtype=np.float64)
    np.cumsum(weights_sorted[::-1], out=tail[-2::-1])
    return tail


def _distinct_values(normals_sorted: np.ndarray, start: int, stop: int, range_start: int) -> np.ndarray:
    """Distinct values of normals_sorted[start:stop], skipping a value begun before ``start``."""
    chunk = normals_sorted[start:stop]
    is_first = np.empty(chunk.size, dtype=np.bool_)
    is_first[1:] = chunk[1:] != chunk[:-1]
    is_first[0] = start == range_start or chunk[0] != normals_sorted[start - 1]
    return chunk[is_first]


def aupro_from_sorted(
    normals_sorted: np.ndarray,
    anomalous_sorted: np.ndarray,
    weights_sorted: np.ndarray,
    fpr_limit: float = 0.3,
) -> float:
    """AUPRO from ascending-sorted normal scores and anomalous scores (weights in the same order).

    The area is divided by the summed FPR widths (mathematically ``fpr_limit``), which
    makes the result a weighted mean of PRO values in [0, 1]: it cannot exceed 1 even
    under floating-point rounding.
    """
    _check_inputs(normals_sorted, anomalous_sorted, weights_sorted, fpr_limit)
    normal_count = normals_sorted.size
    limit_count = fpr_limit * normal_count
    tail = _tail_weight_sums(weights_sorted)
    total_weight = tail[0]
    # A distinct value t starts a segment only if FPR(> t) < fpr_limit, i.e. its group's
    # highest index exceeds normal_count - 1 - limit_count.
    range_start = max(0, int(np.floor(normal_count - 1 - limit_count)))
    area = 0.0
    width_total = 0.0
    for start in range(range_start, normal_count, CHUNK_SIZE):
        thresholds = _distinct_values(normals_sorted, start, min(start + CHUNK_SIZE, normal_count), range_start)
        count_at_or_above = normal_count - np.searchsorted(normals_sorted, thresholds, side="left")
        count_above = normal_count - np.searchsorted(normals_sorted, thresholds, side="right")
        width = np.clip(np.minimum(count_at_or_above, limit_count) - count_above, 0.0, None)
        pro_above = tail[np.searchsorted(anomalous_sorted, thresholds, side="right")] / total_weight
        pro_at_or_above = tail[np.searchsorted(anomalous_sorted, thresholds, side="left")] / total_weight
        covered = width / (count_at_or_above - count_above)
        pro_end = np.minimum(pro_above + (pro_at_or_above - pro_above) * covered, pro_at_or_above)
        area += float(np.sum(width * ((pro_above + pro_end) / 2.0)))
        width_total += float(np.sum(width))
    return area / width_total
