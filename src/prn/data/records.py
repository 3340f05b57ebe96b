"""File-level description of a dataset split, before any pixel is decoded."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from prn.data.errors import DatasetError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")


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
    benchmarks have none) and the test set.

    ``pixel_labels`` is False when the test anomalies come without masks (a user's own
    folder): the test loader then yields no ``mask`` and only image metrics are computed.
    """

    train_normal: list[Record]
    train_anomalous: list[Record]
    test: list[Record]
    pixel_labels: bool = True

    @classmethod
    def from_labelled_train(cls, train: list[Record], test: list[Record], train_dir: Path) -> DatasetSplit:
        """Split a training folder whose images carry labels (DAGM, KolektorSDD2) by label."""
        normal = [record for record in train if record.label == 0]
        if not normal:
            raise DatasetError(
                f"{train_dir} holds no defect-free images (all labelled defective, or none); check dataset.root."
            )
        return cls(train_normal=normal, train_anomalous=[record for record in train if record.label == 1], test=test)


# Helpers shared by the folder-layout scanners (MVTec, BTAD, DAGM, KolektorSDD2, folder).


def require_dataset_root(root: Path, hint: str) -> Path:
    """``root`` if it is a folder; otherwise an error that says how to get the data (``hint``)."""
    if not root.is_dir():
        raise DatasetError(f"dataset.root={root} does not exist. Set dataset.root=<the dataset folder> or {hint}.")
    return root


def find_category_dir(root: Path, category: str, is_category: Callable[[Path], bool], hint: str) -> Path:
    """``root/category``, or an error listing the categories that do exist under ``root``."""
    require_dataset_root(root, hint)
    category_dir = root / category
    if not category or not category_dir.is_dir() or not is_category(category_dir):
        found = [path.name for path in subdirs(root) if is_category(path)]
        raise DatasetError(
            f"dataset.category={category!r} not found under {root}; categories found: {found or 'none'}. "
            "Set dataset.category to one of them."
        )
    return category_dir


def require_dir(path: Path, what: str, layout: str) -> Path:
    """``path`` if it is a folder; otherwise an error naming it, what belongs in it and the layout."""
    if not path.is_dir():
        raise DatasetError(f"missing folder {path} ({what}); the data does not follow the {layout} layout.")
    return path


def has_train_or_test(path: Path) -> bool:
    """Whether ``path`` looks like a category folder of the MVTec-like layouts (BTAD, folder, MVTec)."""
    return (path / "train").is_dir() or (path / "test").is_dir()


def list_image_files(folder: Path, recursive: bool = False) -> list[Path]:
    """Image files inside ``folder`` (and its sub-folders with ``recursive``), sorted (hidden files ignored)."""
    return sorted(
        path
        for path in (folder.rglob("*") if recursive else folder.iterdir())
        if path.is_file() and not path.name.startswith(".") and path.suffix.lower() in IMAGE_SUFFIXES
    )


def subdirs(folder: Path) -> list[Path]:
    """Visible sub-folders of ``folder``, sorted by name."""
    return sorted(path for path in folder.iterdir() if path.is_dir() and not path.name.startswith("."))


def find_by_stem(folder: Path, stems: Sequence[str], suffixes: Sequence[str]) -> Path | None:
    """The first existing ``folder/<stem><suffix>`` (stems in order, suffixes in either case), or None."""
    for stem in stems:
        for suffix in suffixes:
            for candidate in (folder / f"{stem}{suffix}", folder / f"{stem}{suffix.upper()}"):
                if candidate.is_file():
                    return candidate
    return None
