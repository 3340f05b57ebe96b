"""Scanner and datamodule for a user's own data in a plain folder layout.

::

    <root>/<category>/train/good/*                  normal training images (required)
    <root>/<category>/train/anomalous/*             labelled anomalies to train on (the seen ones)
    <root>/<category>/train/anomalous_masks/<stem>.png   one mask per train/anomalous image
    <root>/<category>/test/good/*                   normal test images
    <root>/<category>/test/anomalous/*              anomalous test images
    <root>/<category>/test/anomalous/<type>/*       ... or sorted by defect type (one sub-folder each)
    <root>/<category>/test/anomalous_masks/<stem>.png    optional: all test masks, or none
    <root>/<category>/test/anomalous_masks/<type>/<stem>.png  (masks of typed images mirror their folder)

Images may be ``.png``, ``.jpg``, ``.jpeg`` or ``.bmp``; a mask is ``<stem>.<ext>`` or
``<stem>_mask.<ext>`` with any of those extensions, non-zero = anomalous, at the image's
native size. Images in a sub-folder of ``anomalous/`` get its name as their defect type (per-type
metrics and recall at the threshold); images directly in it are of type ``anomalous``. The same
holds in ``train/anomalous``. Without ``test/anomalous_masks`` only image-level metrics are computed (the
test loader yields no ``mask``). The seen anomalies are ``num_seen_anomalies`` images drawn
with the seed from ``train/anomalous`` (``seen_from="train"``); with ``seen_from="test"``
they are drawn from ``test/anomalous`` instead (which then needs its masks).
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
    subdirs,
)

GOOD, ANOMALOUS, MASKS = "good", "anomalous", "anomalous_masks"
LAYOUT = "folder (<category>/{train,test}/{good,anomalous,anomalous_masks})"
LAYOUT_HINT = "arrange your images as described in docs/datasets.md (section 'Your own data')"


def scan_folder(root: Path | str, category: str) -> DatasetSplit:
    """List one category of a user's folder; test masks are all-or-nothing."""
    category_dir = find_category_dir(Path(root).expanduser(), str(category), has_train_or_test, LAYOUT_HINT)
    train_dir = category_dir / "train"
    train_normal = _normal_records(require_dir(train_dir / GOOD, "normal training images", LAYOUT))
    if not train_normal:
        raise DatasetError(
            f"{train_dir / GOOD} holds no images ({', '.join(IMAGE_SUFFIXES)}); add normal training images."
        )
    train_anomalous = _anomalous_records(train_dir, masks_required=True)
    test_dir = require_dir(category_dir / "test", "test images in good/ and anomalous/", LAYOUT)
    pixel_labels = (test_dir / MASKS).is_dir()
    test = _normal_records(test_dir / GOOD) + _anomalous_records(test_dir, masks_required=pixel_labels)
    if not test:
        raise DatasetError(f"{test_dir} holds no images in {GOOD}/ or {ANOMALOUS}/; add test images.")
    return DatasetSplit(
        train_normal=train_normal, train_anomalous=train_anomalous, test=test, pixel_labels=pixel_labels
    )


def _images_in(folder: Path) -> list[Path]:
    return list_image_files(folder) if folder.is_dir() else []


def _normal_records(folder: Path) -> list[Record]:
    return [Record(path, 0, None, GOOD) for path in _images_in(folder)]


def _anomalous_records(split_dir: Path, masks_required: bool) -> list[Record]:
    """Anomalies of one split, typed by sub-folder; with ``masks_required`` each needs a mask in
    ``anomalous_masks/`` (in the sub-folder of the same name for typed images)."""
    folders = [(ANOMALOUS, split_dir / ANOMALOUS, split_dir / MASKS)]
    if (split_dir / ANOMALOUS).is_dir():
        folders += [(folder.name, folder, split_dir / MASKS / folder.name) for folder in subdirs(split_dir / ANOMALOUS)]
    return [
        Record(path, 1, _mask_of(path, mask_dir) if masks_required else None, defect_type)
        for defect_type, folder, mask_dir in folders
        for path in _images_in(folder)
    ]


def _mask_of(image_path: Path, mask_dir: Path) -> Path:
    mask_path = (
        find_by_stem(mask_dir, [image_path.stem, f"{image_path.stem}_mask"], IMAGE_SUFFIXES)
        if mask_dir.is_dir()
        else None
    )
    if mask_path is None:
        raise DatasetError(
            f"anomalous image {image_path} has no mask: expected {mask_dir / image_path.stem}.png "
            f"(or <stem>_mask.png; .jpg/.bmp also work). Add the mask or remove the image.{_all_or_nothing(mask_dir)}"
        )
    require_same_size(image_path, mask_path)
    return mask_path


def _all_or_nothing(mask_dir: Path) -> str:
    masks_root = mask_dir if mask_dir.name == MASKS else mask_dir.parent  # typed masks sit one level down
    if masks_root.parent.name != "test":
        return ""
    return f" Test masks are all or nothing: without {masks_root} only image-level metrics are computed."


class FolderDataModule(AnomalyDataModule):
    """A user's own data in the folder layout above; see :class:`AnomalyDataModule` for the options."""

    def __init__(self, root: str | Path, category: str, seen_from: str = "train", **options: Any) -> None:
        super().__init__(root, category, scanner=scan_folder, seen_from=seen_from, **options)
