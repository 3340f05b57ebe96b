"""Scanner and datamodule for KolektorSDD2 (Božič et al., 2021).

Layout as distributed (``KolektorSDD2.zip``)::

    <root>/train/NNNNN.png   <root>/train/NNNNN_GT.png
    <root>/test/NNNNN.png    <root>/test/NNNNN_GT.png

Every image has a ground-truth mask; an image is defective when its mask has any
non-zero pixel (masks are binarised with ``> 0``, so 0/255 and graded masks both work).
KolektorSDD2 is one dataset, not a family of categories: its only category is ``ksdd2``.
Defects are labelled in both splits: the seen anomalies are drawn from the defective
training images (``seen_from="train"``), the rest of those are not used, and the test
split is evaluated whole.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prn.data.base import AnomalyDataModule
from prn.data.errors import DatasetError
from prn.data.image_io import mask_is_empty, require_same_size
from prn.data.records import DatasetSplit, Record, list_image_files, require_dataset_root, require_dir

CATEGORY = "ksdd2"
MASK_SUFFIX = "_GT"
NORMAL, DEFECT = "good", "defect"
LAYOUT = "KolektorSDD2 ({train,test}/NNNNN.png with NNNNN_GT.png)"
DOWNLOAD_HINT = "download the data with `python -m prn.data.download ksdd2`"


def scan_ksdd2(root: Path | str, category: str = CATEGORY) -> DatasetSplit:
    """List KolektorSDD2; reads every mask once to tell defective from defect-free images."""
    root = require_dataset_root(Path(root).expanduser(), DOWNLOAD_HINT)
    if str(category) != CATEGORY:
        raise DatasetError(
            f"dataset.category={category!r} not found: KolektorSDD2 has one category, {CATEGORY!r}. Set category={CATEGORY}."
        )
    train = _split_records(require_dir(root / "train", "training images with their _GT masks", LAYOUT))
    test = _split_records(require_dir(root / "test", "test images with their _GT masks", LAYOUT))
    return DatasetSplit.from_labelled_train(train, test, root / "train")


def _split_records(folder: Path) -> list[Record]:
    images = [path for path in list_image_files(folder) if not path.stem.endswith(MASK_SUFFIX)]
    return [_record(path) for path in images]


def _record(image_path: Path) -> Record:
    mask_path = image_path.with_name(f"{image_path.stem}{MASK_SUFFIX}.png")
    if not mask_path.is_file():
        raise DatasetError(
            f"image {image_path} has no ground-truth mask {mask_path}; KolektorSDD2 gives every image one "
            "(empty for defect-free images). Restore it or remove the image."
        )
    require_same_size(image_path, mask_path)
    if mask_is_empty(mask_path):
        return Record(image_path, 0, None, NORMAL)
    return Record(image_path, 1, mask_path, DEFECT)


class KolektorSDD2DataModule(AnomalyDataModule):
    """KolektorSDD2 (category ``ksdd2``); see :class:`AnomalyDataModule` for the options."""

    def __init__(self, root: str | Path, category: str = CATEGORY, seen_from: str = "train", **options: Any) -> None:
        super().__init__(root, category, scanner=scan_ksdd2, seen_from=seen_from, **options)
