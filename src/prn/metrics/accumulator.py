"""Test-set metrics as a torchmetrics ``Metric`` that keeps ~4 bytes per pixel.

``AnomalyMetrics`` computes image AUROC and pixel AUROC / AUPRO / AP exactly. Each
``update`` keeps only what those need: normal-pixel scores (float32), anomalous-pixel
scores (float32) with the size of their ground-truth region (int32, computed while the
mask is at hand; regions never cross images, so shards can simply be concatenated),
and the image scores and labels. Not whole maps and masks. Given each image's defect
type (``defect_types``), it also keeps the name (64 bytes) and its pixel counts, which
is enough to compute every metric per defect type (``per_defect``, see
:mod:`prn.metrics.per_defect`).

Design, in torchmetrics terms:

* Every state is a list state with ``dist_reduce_fx="cat"`` (plus two batch counters
  summed), so ``compute()`` under DDP gathers all ranks' shards, uneven ones included,
  and every rank returns the metrics of the whole test set. Sync happens once per
  ``compute()``; the local state is restored afterwards (torchmetrics' unsync), so
  later updates extend it.
* Values are written in place into large slabs (``_SlabBuffer``), not kept as
  per-batch tensors, so memory is returned to the OS as it is consolidated. Full
  slabs join the list state; the partly filled one is appended trimmed just before
  sync/compute, which merge each state into one tensor.
* States always stay on the CPU (inputs are turned into numpy anyway): moving the
  owning LightningModule to a GPU or another dtype leaves them alone. NCCL cannot
  gather CPU tensors, so the default ``dist_sync_fn`` (``gather_cpu_tensors``) sends
  each state through the current GPU there and brings it back.

Memory: a single process peaks at about the data plus one slab. Under DDP a rank
briefly holds the gathered shards plus their concatenation (about twice the whole
test set) plus its own shard. With defect types, ``compute`` sorts a copy of the normal
pixels (the states must keep their image order for the next ``compute``): 4 bytes more
per normal pixel while it runs.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor
from torchmetrics import Metric
from torchmetrics.utilities.distributed import gather_all_tensors

from prn.metrics.per_defect import PixelsInImageOrder, decode_defect_types, encode_defect_types, per_defect_metrics
from prn.metrics.pro import anomalous_pixel_region_sizes, as_binary_masks, as_image_stack, aupro_from_sorted
from prn.metrics.ranking import (
    as_binary_labels,
    as_score_array,
    auroc,
    auroc_from_sorted,
    average_precision_from_sorted,
)

PIXEL_METRICS = ("pixel_auroc", "pixel_aupro", "pixel_ap")

#: List states and their dtypes, all of which gloo and NCCL can gather.
LIST_STATES = {
    "image_scores": torch.float64,
    "image_labels": torch.int64,
    "normal_scores": torch.float32,
    "anomalous_scores": torch.float32,
    "region_sizes": torch.int32,
    # per image, only when update() is given defect types (names) and masks (pixel counts)
    "image_defect_types": torch.uint8,
    "image_normal_pixels": torch.int64,
    "image_anomalous_pixels": torch.int64,
}


def _to_numpy(tensor: Tensor, dtype: torch.dtype) -> np.ndarray:
    """Detach to a CPU numpy array; casting in torch first also handles bfloat16."""
    return tensor.detach().to(device="cpu", dtype=dtype).numpy()


def gather_cpu_tensors(tensor: Tensor, group: Any = None) -> list[Tensor]:
    """torchmetrics' ``gather_all_tensors`` for CPU states, whatever the backend.

    NCCL only moves CUDA tensors, so with it each state goes to this rank's current GPU
    for the gather and every rank's part comes back to the CPU; gloo gathers in place.
    """
    if dist.get_backend(group) != dist.Backend.NCCL:
        return gather_all_tensors(tensor, group)
    gathered = gather_all_tensors(tensor.to(torch.device("cuda", torch.cuda.current_device())), group)
    return [part.cpu() for part in gathered]


class _SlabBuffer:
    """Writes an append-only stream of values into large slabs held by a list state.

    Why slabs: per-batch arrays of a few MB land on the malloc heap, and freeing them
    while building one contiguous array does not give the memory back, so a plain
    concatenate peaks at twice the data. Slabs are far above glibc's mmap threshold
    (at most 32 MiB), so each one is returned to the OS as soon as it has been copied,
    and their unwritten tail pages are never touched (no resident cost).

    The buffer owns only the slab being filled (the tail); ``flush`` hands what was
    written since the last flush to the list state as a view, without copying.
    """

    SLAB_BYTES = 64 << 20

    def __init__(self, dtype: torch.dtype) -> None:
        self.dtype = dtype
        self._tail: Tensor | None = None
        self._tail_array = np.empty(0)
        self._fill = 0
        self._flushed = 0

    def append(self, state: list[Tensor], values: np.ndarray) -> None:
        values = values.reshape(-1)
        offset = 0
        while offset < values.size:
            if self._fill == self._tail_array.size:
                self._start_slab(state)
            count = min(values.size - offset, self._tail_array.size - self._fill)
            self._tail_array[self._fill : self._fill + count] = values[offset : offset + count]
            self._fill += count
            offset += count

    def _start_slab(self, state: list[Tensor]) -> None:
        self.flush(state)
        elements = max(1, self.SLAB_BYTES // self.dtype.itemsize)
        self._tail = torch.empty(elements, dtype=self.dtype)
        self._tail_array = self._tail.numpy()
        self._fill = self._flushed = 0

    def flush(self, state: list[Tensor]) -> None:
        """Append the values written since the last flush to ``state`` (a view of the tail)."""
        if self._tail is not None and self._fill > self._flushed:
            state.append(self._tail[self._flushed : self._fill])
            self._flushed = self._fill

    def consolidate(self, state: list[Tensor]) -> Tensor:
        """Flush, then merge ``state`` in place into one tensor, which is returned.

        Each part is dropped as soon as it is copied, so the peak is the data plus one
        slab. Callers may reorder the result in place (e.g. sort) unless they need the
        image order again (per-defect metrics: ``AnomalyMetrics._keeps_image_order``).
        """
        self.flush(state)
        if len(state) <= 1:
            if not state:
                state.append(torch.empty(0, dtype=self.dtype))
            return state[0]
        merged = torch.empty(sum(part.numel() for part in state), dtype=self.dtype)
        offset = 0
        state.reverse()
        while state:
            part = state.pop()
            merged[offset : offset + part.numel()] = part
            offset += part.numel()
            del part
        self._tail, self._tail_array, self._fill, self._flushed = None, np.empty(0), 0, 0
        state.append(merged)
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


def _validated_batch(
    anomaly_maps: Tensor, masks: Tensor | None, image_scores: Tensor, labels: Tensor
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray, np.ndarray]:
    """(maps (B, H, W), masks (B, H, W) bool or None, scores (B,), labels (B,) bool), or ValueError."""
    maps = as_image_stack(_to_numpy(anomaly_maps, torch.float32), "anomaly_maps")
    batch_size = maps.shape[0]
    scores = as_score_array(_to_numpy(image_scores, torch.float64), "image_scores")
    if scores.size != batch_size:
        raise ValueError(f"image_scores has {scores.size} values for a batch of {batch_size} anomaly maps")
    binary_labels = as_binary_labels(_to_numpy(labels, torch.float64), batch_size, "labels")
    binary_masks = None if masks is None else _validated_masks(maps, masks)
    return maps, binary_masks, scores, binary_labels


class AnomalyMetrics(Metric):
    """Accumulates a test set and computes image AUROC and pixel AUROC / AUPRO / AP exactly.

    Use ``update`` per batch and ``compute`` at the end (under DDP on every rank, with
    each rank's own shard): it returns the metrics that are defined for the whole test
    set. ``skipped`` lists those it left out and ``skip_reasons`` says why (missing
    masks, or a single class present). ``local_images`` counts this rank's images.
    ``per_defect`` holds, after ``compute``, the metrics of every defect type (its images
    against all good images) when every batch came with ``defect_types``.
    Extra keyword arguments go to ``torchmetrics.Metric`` (e.g. ``process_group``).
    """

    full_state_update = False
    higher_is_better = True
    is_differentiable = False

    def __init__(self, fpr_limit: float = 0.3, **kwargs: Any) -> None:
        if not 0.0 < fpr_limit <= 1.0:
            raise ValueError(f"fpr_limit must be in (0, 1]; got {fpr_limit}")
        kwargs.setdefault("dist_sync_fn", gather_cpu_tensors)
        super().__init__(**kwargs)
        self.fpr_limit = fpr_limit
        for name in LIST_STATES:
            self.add_state(name, default=[], dist_reduce_fx="cat")
        self.add_state("batches", default=torch.tensor(0), dist_reduce_fx="sum")
        self.add_state("batches_without_masks", default=torch.tensor(0), dist_reduce_fx="sum")
        self.add_state("batches_with_defect_types", default=torch.tensor(0), dist_reduce_fx="sum")
        self._reset_local()

    def _reset_local(self) -> None:
        self._slabs = {name: _SlabBuffer(dtype) for name, dtype in LIST_STATES.items()}
        self._local_images = 0
        self.skipped: list[str] = []
        self.skip_reasons: dict[str, str] = {}
        self.per_defect: dict[str, dict[str, Any]] = {}

    def reset(self) -> None:
        """Drop everything accumulated so far."""
        super().reset()
        self._reset_local()

    @property
    def local_images(self) -> int:
        """Images this process passed to ``update`` (its shard under DDP) since the last reset."""
        return self._local_images

    def update(
        self,
        anomaly_maps: Tensor,
        masks: Tensor | None,
        image_scores: Tensor,
        labels: Tensor,
        defect_types: Sequence[str] | None = None,
    ) -> None:
        """Add one batch: maps (B, 1, H, W) or (B, H, W), masks of the same shape in {0, 1}
        or None (pixel metrics are then skipped), image scores (B,), labels (B,) in {0, 1}
        and, for ``per_defect``, each image's defect type (any name for good images).

        Everything is validated before anything is stored, so a rejected batch leaves
        the state untouched.
        """
        maps, binary_masks, scores, binary_labels = _validated_batch(anomaly_maps, masks, image_scores, labels)
        type_codes = None if defect_types is None else encode_defect_types(defect_types, scores.size)
        self._append("image_scores", scores)
        self._append("image_labels", binary_labels)
        self.batches += 1
        self._local_images += scores.size
        if type_codes is not None:
            self._append("image_defect_types", type_codes)
            self.batches_with_defect_types += 1
        if binary_masks is None:
            self.batches_without_masks += 1
            return
        self._append("normal_scores", maps[~binary_masks])
        self._append("anomalous_scores", maps[binary_masks])
        self._append("region_sizes", anomalous_pixel_region_sizes(binary_masks))
        anomalous_counts = binary_masks.sum(axis=(1, 2), dtype=np.int64)
        self._append("image_anomalous_pixels", anomalous_counts)
        self._append("image_normal_pixels", binary_masks[0].size - anomalous_counts)

    def _append(self, name: str, values: np.ndarray) -> None:
        """Write into the state's slab. Even the image states: a small tensor kept per
        batch lands between the batches' freed arrays on the heap and keeps them resident."""
        self._slabs[name].append(getattr(self, name), values)

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        """Not supported: per-batch values of these metrics mean little; use update/compute."""
        raise NotImplementedError("AnomalyMetrics accumulates a test set: call update() per batch, then compute()")

    def sync(self, *args: Any, **kwargs: Any) -> None:
        """torchmetrics' sync (used by ``compute``), on consolidated states."""
        self._consolidate_states()
        super().sync(*args, **kwargs)

    def merge_state(self, incoming_state: dict[str, Any] | Metric) -> None:
        """torchmetrics' merge, on consolidated states (another metric's included)."""
        self._consolidate_states()
        if isinstance(incoming_state, AnomalyMetrics):
            incoming_state._consolidate_states()
        super().merge_state(incoming_state)

    def _consolidate_states(self) -> None:
        """Put each list state in one tensor of its dtype, slabs' tails included; also when
        empty, where torchmetrics would gather an empty float32 tensor."""
        for name, slabs in self._slabs.items():
            state = getattr(self, name)
            if isinstance(state, list):  # a tensor once synced
                slabs.consolidate(state)

    def compute(self) -> dict[str, float]:
        """Return the metrics that are defined for the data seen; see ``skipped``."""
        self.skipped, self.skip_reasons = [], {}
        results: dict[str, float] = {}
        self.per_defect = self._compute_per_defect()  # first: the pixel metrics below sort the pixels in place
        self._compute_image_metrics(results)
        self._compute_pixel_metrics(results)
        return results

    def _skip(self, metrics: tuple[str, ...], reason: str) -> None:
        for metric in metrics:
            self.skipped.append(metric)
            self.skip_reasons[metric] = reason

    def _compute_image_metrics(self, results: dict[str, float]) -> None:
        if int(self.batches) == 0:
            self._skip(("image_auroc",) + PIXEL_METRICS, "no batches were passed to update()")
            return
        labels = self._values("image_labels").astype(bool)
        if labels.all() or not labels.any():
            self._skip(("image_auroc",), "only one image class (all normal or all anomalous) in the test set")
            return
        results["image_auroc"] = auroc(self._values("image_scores"), labels)

    def _keeps_image_order(self) -> bool:
        """Whether the pixel states must stay in image order: per-defect metrics read them so at every compute()."""
        return int(self.batches) > 0 and int(self.batches_with_defect_types) == int(self.batches)

    def _compute_per_defect(self) -> dict[str, dict[str, Any]]:
        """Metrics of each defect type; empty unless every batch came with defect types."""
        batches = int(self.batches)
        if not self._keeps_image_order():
            if int(self.batches_with_defect_types):
                self.skip_reasons["per_defect"] = (
                    f"defect types were given for {int(self.batches_with_defect_types)} of {batches} batches"
                )
            return {}
        labels = self._values("image_labels").astype(bool)
        pixels = None
        if int(self.batches_without_masks) == 0:
            pixels = PixelsInImageOrder(
                self._values("normal_scores"),
                self._values("anomalous_scores"),
                self._values("region_sizes"),
                self._values("image_normal_pixels"),
                self._values("image_anomalous_pixels"),
            )
        defect_types = decode_defect_types(self._values("image_defect_types"))
        return per_defect_metrics(defect_types, labels, self._values("image_scores"), pixels, self.fpr_limit)

    def _compute_pixel_metrics(self, results: dict[str, float]) -> None:
        batches, batches_without_masks = int(self.batches), int(self.batches_without_masks)
        if batches == 0:
            return
        if batches_without_masks:
            self._skip(PIXEL_METRICS, f"masks were None for {batches_without_masks} of {batches} batches")
            return
        normals = self._values("normal_scores")
        anomalous = self._values("anomalous_scores")
        if normals.size == 0 or anomalous.size == 0:
            self._skip(PIXEL_METRICS, "ground-truth masks contain only one pixel class")
            return
        region_sizes = self._values("region_sizes")
        if self._keeps_image_order():  # sorting a copy costs 4 bytes per normal pixel for the length of compute()
            normals, anomalous, region_sizes = normals.copy(), anomalous.copy(), region_sizes.copy()
        normals.sort()
        self._sort_anomalous_with_regions(anomalous, region_sizes)
        results["pixel_auroc"] = auroc_from_sorted(normals, anomalous)
        results["pixel_aupro"] = aupro_from_sorted(normals, anomalous, 1.0 / region_sizes, self.fpr_limit)
        results["pixel_ap"] = average_precision_from_sorted(normals, anomalous)

    def _values(self, name: str) -> np.ndarray:
        """One array of a state, which ``compute`` may reorder in place: after a sync
        it is the fresh concatenation of all ranks, otherwise this process's slabs merged."""
        state = getattr(self, name)
        values = state if isinstance(state, Tensor) else self._slabs[name].consolidate(state)
        return values.numpy()

    @staticmethod
    def _sort_anomalous_with_regions(anomalous: np.ndarray, region_sizes: np.ndarray) -> None:
        """Sort anomalous scores in place, carrying each pixel's region size along."""
        order = np.argsort(anomalous, kind="stable")
        anomalous[:] = anomalous[order]
        region_sizes[:] = region_sizes[order]

    def _copy_state_dict(self) -> dict[str, Tensor | list[Tensor]]:
        """The local state kept aside during a sync, by reference rather than cloned (which
        would double this rank's shard): a sync replaces the states, never mutates them."""
        return {name: list(value) if isinstance(value, list) else value for name, value in self.metric_state.items()}

    def _apply(self, fn: Callable, exclude_state: Any = ()) -> Metric:
        """Module moves (``.to(cuda)``, ``.to(dtype)`` of the owning LightningModule) leave
        the states on the CPU: they hold a test set that need not fit on the GPU."""
        this = super()._apply(fn, exclude_state=tuple(self._defaults))
        this._device = torch.device("cpu")
        return this

    def _wrap_compute(self, compute: Callable) -> Callable:
        """torchmetrics' wrapper (sync, unsync, cache) without its warning for compute()
        before update(): no batches is an outcome reported in ``skip_reasons`` (e.g. a
        rank that got no test images)."""
        wrapped = super()._wrap_compute(compute)

        @functools.wraps(compute)
        def quiet(*args: Any, **kwargs: Any) -> Any:
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message="The ``compute`` method of metric", category=UserWarning)
                return wrapped(*args, **kwargs)

        return quiet
