"""Metrics per defect type: each type's anomalous images against every good image.

MVTec AD results are read per defect type (a model may find every ``broken_large`` and
miss half the ``contamination``), and one number over the whole test set hides that. A
type's metrics are those of the test set cut down to the good images plus that type's
images: image AUROC ranks the type's images against the good ones; the pixel metrics
take the type's anomalous pixels against the normal pixels of the good images and of
the type's own images, with AUPRO's regions those of the type alone.

The accumulator keeps pixels in image order (each image's normal pixels, then the next
image's), so a type's pixels are a handful of slices; the good images' normal pixels
are sorted once and merged with each type's.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from prn.metrics.pro import aupro_from_sorted
from prn.metrics.ranking import auroc, auroc_from_sorted, average_precision_from_sorted

#: Defect type names travel between processes as fixed-width UTF-8 (torchmetrics syncs tensors, not strings).
DEFECT_NAME_BYTES = 64


def encode_defect_types(names: Sequence[str], count: int) -> np.ndarray:
    """``count`` names as a flat uint8 array of ``count * DEFECT_NAME_BYTES`` zero-padded UTF-8 bytes."""
    if isinstance(names, str) or len(names) != count:
        raise ValueError(f"defect_types must hold one name per image: got {names!r} for a batch of {count}")
    codes = np.zeros((count, DEFECT_NAME_BYTES), dtype=np.uint8)
    for index, name in enumerate(names):
        encoded = str(name).encode("utf-8")
        if len(encoded) > DEFECT_NAME_BYTES or not encoded or b"\0" in encoded:
            raise ValueError(
                f"defect type {name!r} must be 1 to {DEFECT_NAME_BYTES} UTF-8 bytes without NUL; rename that folder"
            )
        codes[index, : len(encoded)] = np.frombuffer(encoded, dtype=np.uint8)
    return codes.reshape(-1)


def decode_defect_types(codes: np.ndarray) -> np.ndarray:
    """The names encoded by :func:`encode_defect_types`, as an array of ``str``, one per image."""
    rows = np.asarray(codes, dtype=np.uint8).reshape(-1, DEFECT_NAME_BYTES)
    return np.array([bytes(row).rstrip(b"\0").decode("utf-8") for row in rows], dtype=object)


@dataclass(frozen=True)
class PixelsInImageOrder:
    """Every image's normal pixel scores, then the next image's (likewise the anomalous ones with
    their region sizes), and how many of each every image has."""

    normals: np.ndarray
    anomalous: np.ndarray
    region_sizes: np.ndarray
    normal_counts: np.ndarray
    anomalous_counts: np.ndarray

    def __post_init__(self) -> None:
        if (
            int(self.normal_counts.sum()) != self.normals.size
            or int(self.anomalous_counts.sum()) != self.anomalous.size
        ):
            raise ValueError("per-image pixel counts do not add up to the stored pixels: the states are out of step")

    def normals_of(self, images: np.ndarray) -> np.ndarray:
        """Normal pixel scores of the selected images (a bool mask over images), as a new array."""
        return _gather(self.normals, self.normal_counts, images)

    def anomalous_of(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Anomalous pixel scores of the selected images and their region sizes, as new arrays."""
        return _gather(self.anomalous, self.anomalous_counts, images), _gather(
            self.region_sizes, self.anomalous_counts, images
        )


def _gather(values: np.ndarray, counts: np.ndarray, images: np.ndarray) -> np.ndarray:
    ends = np.cumsum(counts)
    starts = ends - counts
    parts = [values[start:end] for start, end in zip(starts[images], ends[images])]
    return np.concatenate(parts) if parts else values[:0].copy()


def per_defect_metrics(
    defect_types: np.ndarray,
    labels: np.ndarray,
    scores: np.ndarray,
    pixels: PixelsInImageOrder | None,
    fpr_limit: float = 0.3,
) -> dict[str, dict[str, Any]]:
    """``{type: {"images": n, "metrics": {...}, "skipped": {metric: reason}}}`` for every defect type
    among the anomalous images (label 1); ``skipped`` only where a metric is undefined.

    ``pixels`` None: image AUROC only (the test set has no masks).
    """
    labels = np.asarray(labels, dtype=bool)
    good = ~labels
    sorted_good_normals = None
    if pixels is not None:
        sorted_good_normals = pixels.normals_of(good)
        sorted_good_normals.sort()
    results: dict[str, dict[str, Any]] = {}
    for name in sorted(set(defect_types[labels])):
        members = labels & (defect_types == name)
        metrics: dict[str, float] = {}
        skipped: dict[str, str] = {}
        if good.any():
            metrics["image_auroc"] = auroc(scores[good | members], labels[good | members])
        else:
            skipped["image_auroc"] = "no good images in the test set"
        if pixels is not None and sorted_good_normals is not None:
            _pixel_metrics(pixels, members, sorted_good_normals, fpr_limit, metrics, skipped)
        entry: dict[str, Any] = {"images": int(members.sum()), "metrics": metrics}
        if skipped:
            entry["skipped"] = skipped
        results[str(name)] = entry
    return results


def _pixel_metrics(
    pixels: PixelsInImageOrder,
    members: np.ndarray,
    sorted_good_normals: np.ndarray,
    fpr_limit: float,
    metrics: dict[str, float],
    skipped: dict[str, str],
) -> None:
    anomalous, region_sizes = pixels.anomalous_of(members)
    if anomalous.size == 0:
        skipped.update(
            dict.fromkeys(("pixel_auroc", "pixel_aupro", "pixel_ap"), "the type's ground-truth masks are empty")
        )
        return
    normals = np.concatenate((sorted_good_normals, pixels.normals_of(members)))
    if normals.size == 0:
        skipped.update(
            dict.fromkeys(
                ("pixel_auroc", "pixel_aupro", "pixel_ap"), "no normal pixels in the good images or the type's"
            )
        )
        return
    normals.sort(kind="stable")  # the good images' part is one sorted run already: timsort sorts the rest and merges
    order = np.argsort(anomalous, kind="stable")
    anomalous, region_sizes = anomalous[order], region_sizes[order]
    metrics["pixel_auroc"] = auroc_from_sorted(normals, anomalous)
    metrics["pixel_aupro"] = aupro_from_sorted(normals, anomalous, 1.0 / region_sizes, fpr_limit)
    metrics["pixel_ap"] = average_precision_from_sorted(normals, anomalous)
