"""Scanner for the MVTec AD folder layout.

``<root>/<category>/train/good``, ``<root>/<category>/test/<defect_type>`` and
``<root>/<category>/ground_truth/<defect_type>/<stem>_mask.png``. Scanning touches only
file names and image headers, so every layout problem is reported before any decoding.
"""

from __future__ import annotations

from pathlib import Path

from prn.data.errors import DatasetError
from prn.data.image_io import image_size_of
from prn.data.records import DatasetSplit, Record

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")
GOOD = "good"


def scan_mvtec(root: Path | str, category: str) -> DatasetSplit:
    """List the images of one MVTec-style category; MVTec has no training anomalies."""
    category_dir = _category_dir(Path(root).expanduser(), category)
    train_good = _required_dir(category_dir / "train" / GOOD, "normal training images")
    test_dir = _required_dir(category_dir / "test", "test images, one folder per defect type plus 'good'")
    train_normal = [Record(path, 0, None, GOOD) for path in list_image_files(train_good)]
    if not train_normal:
        raise DatasetError(f"{train_good} holds no images ({', '.join(IMAGE_SUFFIXES)}); check dataset.root.")
    test = [record for type_dir in _subdirs(test_dir) for record in _test_records(type_dir, category_dir)]
    return DatasetSplit(train_normal=train_normal, train_anomalous=[], test=test)


def _category_dir(root: Path, category: str) -> Path:
    if not root.is_dir():
        raise DatasetError(
            f"dataset.root={root} does not exist. Set dataset.root=<folder that holds the category folders> "
            "or download the data with `python -m prn.data.download mvtec`."
        )
    category_dir = root / category
    if not category or not category_dir.is_dir():
        found = [path.name for path in _subdirs(root) if (path / "train").is_dir() or (path / "test").is_dir()]
        raise DatasetError(
            f"dataset.category={category!r} not found under {root}; categories found: {found or 'none'}. "
            "Set dataset.category to one of them."
        )
    return category_dir


def _required_dir(path: Path, what: str) -> Path:
    if not path.is_dir():
        raise DatasetError(f"missing folder {path} ({what}); the category does not follow the MVTec AD layout.")
    return path


def _subdirs(folder: Path) -> list[Path]:
    return sorted(path for path in folder.iterdir() if path.is_dir() and not path.name.startswith("."))


def list_image_files(folder: Path) -> list[Path]:
    """Image files directly inside ``folder``, sorted by name (hidden files ignored)."""
    return sorted(
        path
        for path in folder.iterdir()
        if path.is_file() and not path.name.startswith(".") and path.suffix.lower() in IMAGE_SUFFIXES
    )


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
    image_size, mask_size = image_size_of(image_path), image_size_of(mask_path)
    if image_size != mask_size:
        raise DatasetError(
            f"mask {mask_path} is {mask_size[0]}x{mask_size[1]} (h x w) but its image {image_path} is "
            f"{image_size[0]}x{image_size[1]}; masks must have their image's native size, fix or replace one of them."
        )
    return mask_path
