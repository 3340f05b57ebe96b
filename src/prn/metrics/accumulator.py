"""Test-set metric accumulator that keeps ~4 bytes per pixel.

Kept as a plain class rather than a torchmetrics ``Metric``: torchmetrics would keep
whole maps and masks (or all-pixel float tensors) as state. Here each ``update`` keeps
only what the exact metrics need: normal-pixel scores (float32), anomalous-pixel scores
(float32) with the size of their ground-truth region (int32, computed at update time
while the mask is at hand), and the image scores and labels.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from prn.metrics.pro import anomalous_pixel_region_sizes, as_binary_masks, as_image_stack, aupro_from_sorted
from prn.metrics.ranking import (
    as_binary_labels,
    as_score_array,
    auroc,
    auroc_from_sorted,
    average_precision_from_sorted,
)

PIXEL_METRICS = ("pixel_auroc", "pixel_aupro", "pixel_ap")


def _to_numpy(tensor: Tensor, dtype: torch.dtype) -> np.ndarray:
    """Detach to a CPU numpy array; casting in torch first also handles bfloat16."""
    return tensor.detach().to(device="cpu", dtype=dtype).numpy()


class _SlabBuffer:
    """Append-only 1-D array kept in large slabs, consolidated into one array on demand.

    Why slabs: per-batch arrays of a few MB land on the malloc heap, and freeing them
    while building one contiguous array does not give the memory back, so a plain
    concatenate peaks at twice the data. Slabs are far above glibc's mmap threshold
    (at most 32 MiB), so each one is returned to the OS as soon as it has been copied,
    and their unwritten tail pages are never touched (no resident cost).
    """

    SLAB_BYTES = 64 << 20

    def __init__(self, dtype: type[np.generic]) -> None:
        self._dtype = np.dtype(dtype)
        self._slab_elements = self.SLAB_BYTES // self._dtype.itemsize
        self._slabs: list[np.ndarray] = []
        self._last_fill = 0

    @property
    def size(self) -> int:
        full = sum(slab.size for slab in self._slabs[:-1])
        return full + self._last_fill

    def append(self, values: np.ndarray) -> None:
        values = values.reshape(-1)
        offset = 0
        while offset < values.size:
            if not self._slabs or self._last_fill == self._slabs[-1].size:
                self._slabs.append(np.empty(self._slab_elements, dtype=self._dtype))
                self._last_fill = 0
            slab = self._slabs[-1]
            count = min(values.size - offset, slab.size - self._last_fill)
            slab[self._last_fill : self._last_fill + count] = values[offset : offset + count]
            self._last_fill += count
            offset += count

    def consolidate(self) -> np.ndarray:
        """Return all values as one contiguous array that stays the buffer's storage.

        Callers may reorder it in place (e.g. sort); the order of values carries no meaning.
        """
        if len(self._slabs) <= 1:
            return self._slabs[0][: self._last_fill] if self._slabs else np.empty(0, dtype=self._dtype)
        merged = np.empty(self.size, dtype=self._dtype)
        offset = 0
        last_fill = self._last_fill
        self._slabs.reverse()
        while self._slabs:
            slab = self._slabs.pop()
            count = slab.size if self._slabs else last_fill
            merged[offset : offset + count] = slab[:count]
            offset += count
            del slab
        self._slabs, self._last_fill = [merged], merged.size
        return merged


def _validated_masks(maps: np.ndarray, masks: Tensor) -> np.ndarray:
    """Masks as (B, H, W) bool matching the maps; rejects NaN maps, which have no rank."""
    binary_masks = as_binary_masks(_to_numpy(masks, torch.float32), "masks")
    if maps.shape != binary_masks.shape:
        raise ValueError(
            f"anomaly_maps shape {maps.shape} differs from masks shape {binary_masks.shape}; "
            "resize the maps to the mask resolution before update()"
        )
    if np.isnan(maps).any():
        raise ValueError("anomaly_maps contain NaN; the model produced invalid scores")
    return binary_masks


class AnomalyMetrics:
    """Accumulates a test set and computes image AUROC and pixel AUROC / AUPRO / AP exactly.

    ``skipped`` lists metrics that ``compute`` left out and ``skip_reasons`` says why
    (missing masks, or a single class present).
    """

    def __init__(self, fpr_limit: float = 0.3) -> None:
        if not 0.0 < fpr_limit <= 1.0:
            raise ValueError(f"fpr_limit must be in (0, 1]; got {fpr_limit}")
        self.fpr_limit = fpr_limit
        self.reset()

    def reset(self) -> None:
        """Drop everything accumulated so far."""
        self._image_scores: list[np.ndarray] = []
        self._image_labels: list[np.ndarray] = []
        self._normal_scores = _SlabBuffer(np.float32)
        self._anomalous_scores = _SlabBuffer(np.float32)
        self._region_sizes = _SlabBuffer(np.int32)
        self._batch_count = 0
        self._batches_without_masks = 0
        self.skipped: list[str] = []
        self.skip_reasons: dict[str, str] = {}

    def update(self, anomaly_maps: Tensor, masks: Tensor | None, image_scores: Tensor, labels: Tensor) -> None:
        """Add one batch: maps (B, 1, H, W) or (B, H, W), masks of the same shape in {0, 1}
        or None (pixel metrics are then skipped), image scores (B,) and labels (B,) in {0, 1}.

        Everything is validated before anything is stored, so a rejected batch leaves
        the state untouched.
        """
        maps = as_image_stack(_to_numpy(anomaly_maps, torch.float32), "anomaly_maps")
        batch_size = maps.shape[0]
        scores = as_score_array(_to_numpy(image_scores, torch.float64), "image_scores")
        if scores.size != batch_size:
            raise ValueError(f"image_scores has {scores.size} values for a batch of {batch_size} anomaly maps")
        binary_labels = as_binary_labels(_to_numpy(labels, torch.float64), batch_size, "labels")
        binary_masks = None if masks is None else _validated_masks(maps, masks)
        self._image_scores.append(scores.copy())
        self._image_labels.append(binary_labels.copy())
        self._batch_count += 1
        if binary_masks is None:
            self._batches_without_masks += 1
            return
        self._normal_scores.append(maps[~binary_masks])
        self._anomalous_scores.append(maps[binary_masks])
        self._region_sizes.append(anomalous_pixel_region_sizes(binary_masks).astype(np.int32))

    def compute(self) -> dict[str, float]:
        """Return the metrics that are defined for the data seen; see ``skipped``."""
        self.skipped, self.skip_reasons = [], {}
        results: dict[str, float] = {}
        self._compute_image_metrics(results)
        self._compute_pixel_metrics(results)
        return results

    def _skip(self, metrics: tuple[str, ...], reason: str) -> None:
        for metric in metrics:
            self.skipped.append(metric)
            self.skip_reasons[metric] = reason

    def _compute_image_metrics(self, results: dict[str, float]) -> None:
        if self._batch_count == 0:
            self._skip(("image_auroc",) + PIXEL_METRICS, "no batches were passed to update()")
            return
        labels = np.concatenate(self._image_labels)
        if labels.all() or not labels.any():
            self._skip(("image_auroc",), "only one image class (all normal or all anomalous) in the test set")
            return
        results["image_auroc"] = auroc(np.concatenate(self._image_scores), labels)

    def _compute_pixel_metrics(self, results: dict[str, float]) -> None:
        if self._batch_count == 0:
            return
        if self._batches_without_masks:
            reason = f"masks were None for {self._batches_without_masks} of {self._batch_count} batches"
            self._skip(PIXEL_METRICS, reason)
            return
        normals = self._normal_scores.consolidate()
        anomalous = self._anomalous_scores.consolidate()
        if normals.size == 0 or anomalous.size == 0:
            self._skip(PIXEL_METRICS, "ground-truth masks contain only one pixel class")
            return
        region_sizes = self._region_sizes.consolidate()
        normals.sort()
        self._sort_anomalous_with_regions(anomalous, region_sizes)
        results["pixel_auroc"] = auroc_from_sorted(normals, anomalous)
        results["pixel_aupro"] = aupro_from_sorted(normals, anomalous, 1.0 / region_sizes, self.fpr_limit)
        results["pixel_ap"] = average_precision_from_sorted(normals, anomalous)

    @staticmethod
    def _sort_anomalous_with_regions(anomalous: np.ndarray, region_sizes: np.ndarray) -> None:
        """Sort anomalous scores in place, carrying each pixel's region size along."""
        order = np.argsort(anomalous, kind="stable")
        anomalous[:] = anomalous[order]
        region_sizes[:] = region_sizes[order]
