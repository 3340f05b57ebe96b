"""The seen-anomaly protocol of ``docs/design.md``: which anomalies training may see.

``k`` seen anomalies are drawn with a fixed seed, either from the test anomalies (and
then removed from the test set) or from labelled training anomalies (the test set stays
whole). Everything here works on file records; nothing is decoded.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

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


def resolve_split(found: DatasetSplit, seen_from: str, num_seen: int, seed: int) -> ResolvedSplit:
    """Draw ``num_seen`` seen anomalies from ``found`` (``seen_from`` "test" or "train") and apply the protocol.

    Seen anomalies must have a ground-truth mask: training needs them.
    """
    option = "dataset.num_seen_anomalies"
    if seen_from == "test":
        candidates = [r for r in found.test if r.label == 1]
        seen, _ = draw_seen_anomalies(candidates, num_seen, seed, option)
        seen_paths = {record.image_path for record in seen}
        test = [record for record in found.test if record.image_path not in seen_paths]
    else:
        candidates = list(found.train_anomalous)
        seen, _ = draw_seen_anomalies(candidates, num_seen, seed, option)
        test = list(found.test)
    missing_masks = [str(record.image_path) for record in seen if record.mask_path is None]
    if missing_masks:
        raise DatasetError(
            f"seen anomalies without a ground-truth mask: {missing_masks}; training needs their masks. "
            "Add the masks, or draw the seen anomalies from a split that has them (dataset.seen_from)."
        )
    return ResolvedSplit(
        train_normal=list(found.train_normal),
        seen=seen,
        test=test,
        seen_candidates=len(candidates),
        pixel_labels=found.pixel_labels,
    )


def draw_seen_anomalies(
    candidates: Sequence[Record], k: int, seed: int, option: str = "dataset.num_seen_anomalies"
) -> tuple[list[Record], list[Record]]:
    """Draw ``k`` seen anomalies without replacement; return ``(seen, rest)``, both path-sorted.

    The candidates are sorted by path first so that the draw depends only on the seed and
    the file names, never on the order the filesystem lists them in.
    """
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 0:
        raise DatasetError(f"{option}={k!r} must be an int >= 0 (the paper uses 10; 0 disables seen anomalies).")
    ordered = sorted(candidates, key=lambda record: record.image_path.as_posix())
    if k > len(ordered):
        raise DatasetError(
            f"{option}={k} but only {len(ordered)} anomalous images exist to draw from; "
            f"lower {option} to at most {len(ordered)}."
        )
    chosen = set(np.random.default_rng(seed).choice(len(ordered), size=int(k), replace=False).tolist())
    seen = [record for index, record in enumerate(ordered) if index in chosen]
    rest = [record for index, record in enumerate(ordered) if index not in chosen]
    return seen, rest
