"""Scanner and datamodule for the MVTec AD folder layout.

``<root>/<category>/train/good``, ``<root>/<category>/test/<defect_type>`` and
``<root>/<category>/ground_truth/<defect_type>/<stem>_mask.png``. Scanning touches only
file names and image headers, so every layout problem is reported before any decoding.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prn.data.base import AnomalyDataModule
from prn.data.errors import DatasetError
from prn.data.image_io import require_same_size
from prn.data.records import (
    IMAGE_SUFFIXES,
    DatasetSplit,
    Record,
    find_category_dir,
    has_train_or_test,
    list_image_files,
    require_dir,
    subdirs,
)

GOOD = "good"
LAYOUT = "MVTec AD (<category>/train/good, test/<defect_type>, ground_truth/<defect_type>/<stem>_mask.png)"
DOWNLOAD_HINT = "download the data with `python -m prn.data.download mvtec`"


def scan_mvtec(root: Path | str, category: str) -> DatasetSplit:
    """List the images of one MVTec-style category; MVTec has no training anomalies."""
    category_dir = find_category_dir(Path(root).expanduser(), category, has_train_or_test, DOWNLOAD_HINT)
    train_good = require_dir(category_dir / "train" / GOOD, "normal training images", LAYOUT)
    test_dir = require_dir(category_dir / "test", "test images, one folder per defect type plus 'good'", LAYOUT)
    train_normal = [Record(path, 0, None, GOOD) for path in list_image_files(train_good)]
    if not train_normal:
        raise DatasetError(f"{train_good} holds no images ({', '.join(IMAGE_SUFFIXES)}); check dataset.root.")
    test = [record for type_dir in subdirs(test_dir) for record in _test_records(type_dir, category_dir)]
    return DatasetSplit(train_normal=train_normal, train_anomalous=[], test=test)


def _test_records(type_dir: Path, category_dir: Path) -> list[Record]:
    defect_type = type_dir.name
    if defect_type == GOOD:
        return [Record(path, 0, None, GOOD) for path in list_image_files(type_dir)]
    mask_dir = category_dir / "ground_truth" / defect_type
    return [Record(path, 1, _matching_mask(path, mask_dir), defect_type) for path in list_image_files(type_dir)]


def _matching_mask(image_path: Path, mask_dir: Path) -> Path:
    """Find ``<stem>_mask.<ext>`` and check it has the image's native size."""
    candidates = [mask_dir / f"{image_path.stem}_mask{suffix}" for suffix in IMAGE_SUFFIXES]
    mask_path = next((path for path in candidates if path.is_file()), None)
    if mask_path is None:
        raise DatasetError(
            f"anomalous image {image_path} has no mask: expected {candidates[0]}. "
            "Restore the ground-truth mask or remove the image."
        )
    require_same_size(image_path, mask_path)
    return mask_path


class MVTecDataModule(AnomalyDataModule):
    """MVTec AD (and anything in its layout); see :class:`AnomalyDataModule` for the options."""

    def __init__(self, root: str | Path, category: str, **options: Any) -> None:
        super().__init__(root, category, scanner=scan_mvtec, **options)
