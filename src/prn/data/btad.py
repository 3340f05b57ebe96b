"""Scanner and datamodule for BTAD, the beanTech Anomaly Detection dataset (Mishra et al., 2021).

Layout as distributed (``btad.zip`` unpacks to ``BTech_Dataset_transformed/``)::

    <root>/{01,02,03}/train/ok/NNNN.bmp|png         normal training images
    <root>/{01,02,03}/test/ok/NNNN.bmp|png          normal test images
    <root>/{01,02,03}/test/ko/NNNN.bmp|png          anomalous test images
    <root>/{01,02,03}/ground_truth/ko/NNNN.png|bmp  their masks, same stem as the image

BTAD labels no training anomalies, so the seen anomalies are drawn from ``test/ko`` and
removed from the test set (``seen_from="test"``).
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
    find_by_stem,
    find_category_dir,
    has_train_or_test,
    list_image_files,
    require_dir,
)

CATEGORIES = ("01", "02", "03")
NORMAL, ANOMALOUS = "ok", "ko"
LAYOUT = "BTAD (<category>/train/ok, test/ok, test/ko, ground_truth/ko)"
DOWNLOAD_HINT = "download the data with `python -m prn.data.download btad`"


def scan_btad(root: Path | str, category: str) -> DatasetSplit:
    """List one BTAD product; every ``test/ko`` image must have a same-size mask in ``ground_truth/ko``."""
    category_dir = find_category_dir(
        Path(root).expanduser(), normalise_category(category), has_train_or_test, DOWNLOAD_HINT
    )
    train_normal = _normal_records(require_dir(category_dir / "train" / NORMAL, "normal training images", LAYOUT))
    if not train_normal:
        raise DatasetError(
            f"{category_dir / 'train' / NORMAL} holds no images ({', '.join(IMAGE_SUFFIXES)}); check dataset.root."
        )
    test_normal = _normal_records(require_dir(category_dir / "test" / NORMAL, "normal test images", LAYOUT))
    anomalous_dir = require_dir(category_dir / "test" / ANOMALOUS, "anomalous test images", LAYOUT)
    mask_dir = require_dir(category_dir / "ground_truth" / ANOMALOUS, "masks of the test/ko images", LAYOUT)
    test_anomalous = [Record(path, 1, _mask_of(path, mask_dir), ANOMALOUS) for path in list_image_files(anomalous_dir)]
    return DatasetSplit(train_normal=train_normal, train_anomalous=[], test=test_normal + test_anomalous)


def normalise_category(category: Any) -> str:
    """``1`` or ``"1"`` (what Hydra makes of ``category=01``) becomes ``"01"``."""
    text = str(category)
    return f"{int(text):02d}" if text.isdigit() else text


def _normal_records(folder: Path) -> list[Record]:
    return [Record(path, 0, None, NORMAL) for path in list_image_files(folder)]


def _mask_of(image_path: Path, mask_dir: Path) -> Path:
    mask_path = find_by_stem(mask_dir, [image_path.stem], (".png", ".bmp"))
    if mask_path is None:
        raise DatasetError(
            f"anomalous image {image_path} has no mask: expected {mask_dir / image_path.stem}.png (or .bmp). "
            "Restore the ground-truth mask or remove the image."
        )
    require_same_size(image_path, mask_path)
    return mask_path


class BTADDataModule(AnomalyDataModule):
    """BTAD product ``01``, ``02`` or ``03``; see :class:`AnomalyDataModule` for the options."""

    def __init__(self, root: str | Path, category: str, seen_from: str = "test", **options: Any) -> None:
        super().__init__(root, normalise_category(category), scanner=scan_btad, seen_from=seen_from, **options)
