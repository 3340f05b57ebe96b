"""The seen-anomaly protocol of ``docs/design.md``: which anomalies training may see, and
which normal images are held out for calibration.

``k`` seen anomalies are drawn with a fixed seed, either from the test anomalies (and
then removed from the test set) or from labelled training anomalies (the test set stays
whole). ``val_normals`` normal training images (a fraction or a count) are drawn the same
way and held out: they never train and never build prototypes; the OK/NG thresholds are
fitted on them (``prn.calibration``). Everything here works on file records; nothing is decoded.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from prn.data.errors import DatasetError
from prn.data.records import DatasetSplit, Record

SEEN_FROM_CHOICES = ("test", "train")


@dataclass(frozen=True)
class ResolvedSplit:
    """The split actually used: seen anomalies already removed from wherever they came from.

    ``seen_candidates`` counts the anomalies the seen ones were drawn from; those not drawn
    stay in the test set (``seen_from="test"``) or go unused (``seen_from="train"``).
    """

    train_normal: list[Record]
    seen: list[Record]
    test: list[Record]
    seen_candidates: int = 0
    pixel_labels: bool = True
    val_normal: list[Record] = field(default_factory=list)


def resolve_split(
    found: DatasetSplit, seen_from: str, num_seen: int, seed: int, val_normals: float | int = 0
) -> ResolvedSplit:
    """Draw ``num_seen`` seen anomalies from ``found`` (``seen_from`` "test" or "train") and apply the protocol.

    Seen anomalies must have a ground-truth mask: training needs them. ``val_normals``
    normal training images (see :func:`held_out_count`) are held out for calibration.
    """
    option = "dataset.num_seen_anomalies"
    if seen_from == "test":
        candidates = [r for r in found.test if r.label == 1]
        seen, _ = draw_records(candidates, num_seen, seed, option)
        seen_paths = {record.image_path for record in seen}
        test = [record for record in found.test if record.image_path not in seen_paths]
    else:
        candidates = list(found.train_anomalous)
        seen, _ = draw_records(candidates, num_seen, seed, option)
        test = list(found.test)
    missing_masks = [str(record.image_path) for record in seen if record.mask_path is None]
    if missing_masks:
        raise DatasetError(
            f"seen anomalies without a ground-truth mask: {missing_masks}; training needs their masks. "
            "Add the masks, or draw the seen anomalies from a split that has them (dataset.seen_from)."
        )
    held_out = held_out_count(val_normals, len(found.train_normal))
    val_normal, train_normal = draw_records(found.train_normal, held_out, seed, "val_normals")
    return ResolvedSplit(
        train_normal=train_normal,
        val_normal=val_normal,
        seen=seen,
        test=test,
        seen_candidates=len(candidates),
        pixel_labels=found.pixel_labels,
    )


def draw_records(
    candidates: Sequence[Record], k: int, seed: int, option: str = "dataset.num_seen_anomalies"
) -> tuple[list[Record], list[Record]]:
    """Draw ``k`` records (seen anomalies, held-out normals) without replacement; return ``(drawn, rest)``, both path-sorted.

    The candidates are sorted by path first so that the draw depends only on the seed and
    the file names, never on the order the filesystem lists them in.
    """
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 0:
        raise DatasetError(f"{option}={k!r} must be an int >= 0 (the paper uses 10; 0 disables seen anomalies).")
    ordered = sorted(candidates, key=lambda record: record.image_path.as_posix())
    if k > len(ordered):
        raise DatasetError(
            f"{option}={k} but only {len(ordered)} images exist to draw from; lower {option} to at most {len(ordered)}."
        )
    chosen = set(np.random.default_rng(seed).choice(len(ordered), size=int(k), replace=False).tolist())
    seen = [record for index, record in enumerate(ordered) if index in chosen]
    rest = [record for index, record in enumerate(ordered) if index not in chosen]
    return seen, rest


def held_out_count(val_normals: float | int, num_normals: int) -> int:
    """How many of ``num_normals`` normal training images ``val_normals`` holds out.

    A float in ``(0, 1)`` is a fraction (rounded, at least 1); an int >= 0 is a count. At
    least one normal image must stay for training.
    """
    option = "val_normals"
    if (
        isinstance(val_normals, bool)
        or not isinstance(val_normals, (int, float, np.integer, np.floating))
        or val_normals < 0
    ):
        raise DatasetError(
            f"{option}={val_normals!r} must be a fraction in (0, 1) or a count >= 0 of normal training images to hold out."
        )
    if isinstance(val_normals, (float, np.floating)) and not float(val_normals).is_integer():
        if val_normals >= 1:
            raise DatasetError(
                f"{option}={val_normals!r}: a fraction must lie in (0, 1); a count must be a whole number."
            )
        count = max(1, int(round(val_normals * num_normals)))
    else:
        count = int(val_normals)
    if count >= num_normals:
        raise DatasetError(
            f"{option}={val_normals!r} holds out {count} of {num_normals} normal training images and leaves none to train on; "
            f"lower it (e.g. val_normals=0.1)."
        )
    return count
