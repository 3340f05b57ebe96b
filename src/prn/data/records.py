"""File-level description of a dataset split, before any pixel is decoded."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from prn.data.errors import DatasetError


@dataclass(frozen=True)
class Record:
    """One image on disk: ``label`` 0 normal / 1 anomalous; ``mask_path`` None means empty mask."""

    image_path: Path
    label: int
    mask_path: Path | None
    defect_type: str


@dataclass(frozen=True)
class DatasetSplit:
    """What a scanner finds: normal training images, labelled training anomalies (most
    benchmarks have none) and the test set."""

    train_normal: list[Record]
    train_anomalous: list[Record]
    test: list[Record]


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
