"""What a prediction scores: the image files named by ``input=``, loaded as the model's input.

A file, a folder (searched recursively) or a glob; each image is resized to the model's training
size exactly as training and testing resized it. A production folder may hold a broken file: by
default that stops the run naming the file (``on_error=fail``) before any work is done;
``on_error=skip`` lets the writer list it in ``skipped.csv`` with the reason and goes on.
"""

from __future__ import annotations

import glob
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from omegaconf import DictConfig
from torch.utils.data import DataLoader, Dataset

from prn.data.errors import DatasetError
from prn.data.image_io import image_size_of, load_image
from prn.data.records import IMAGE_SUFFIXES, list_image_files
from prn.data.training import image_tensor

ON_ERROR_CHOICES = ("fail", "skip")


def checked_on_error(value: str) -> str:
    if value not in ON_ERROR_CHOICES:
        raise ValueError(
            f"on_error={value!r} is not one of {list(ON_ERROR_CHOICES)}: fail stops at a broken file, skip lists it in skipped.csv"
        )
    return value


def collect_images(source: str | Path, on_error: str = "fail") -> tuple[list[Path], Path]:
    """Image files named by ``source`` (file, folder searched recursively, or glob) and the root their output names are relative to.

    With ``on_error="fail"`` every header is read first, so a broken file stops the run, by name,
    before any work is done; with ``"skip"`` broken files are found while scoring.
    """
    text = str(source)
    if glob.has_magic(text):
        files = sorted(Path(p) for p in glob.glob(text, recursive=True) if Path(p).suffix.lower() in IMAGE_SUFFIXES)
        root = _glob_root(text)
    else:
        path = Path(text).expanduser()
        if not path.exists():
            raise DatasetError(
                f"input={path} does not exist: pass an image file, a folder of images or a glob like 'parts/*.png'"
            )
        files = [path] if path.is_file() else list_image_files(path, recursive=True)
        root = path.parent if path.is_file() else path
    if not files:
        raise DatasetError(
            f"input={text} names no image files ({', '.join(IMAGE_SUFFIXES)}): check the path or the glob"
        )
    if checked_on_error(on_error) == "fail":
        for file in files:
            image_size_of(file)  # header check: a broken file fails here, by name, before any work is done
    return files, root


def _glob_root(pattern: str) -> Path:
    """The folder part of a glob before its first wildcard (``parts/**/*.png`` -> ``parts``)."""
    fixed = []
    for part in Path(pattern).parts:
        if glob.has_magic(part):
            break
        fixed.append(part)
    return Path(*fixed) if fixed else Path(".")


class ImageFileSet(Dataset):
    """The model's input for each file, its path, and its output name relative to ``root``.

    The relative name mirrors the input tree, so ``a/000.png`` and ``b/000.png`` do not collide.
    With ``on_error="skip"`` an unreadable file yields a blank image and its ``error`` (else ``""``),
    which the writer lists in ``skipped.csv`` instead of scoring.
    """

    def __init__(self, files: Sequence[Path], root: Path, size: tuple[int, int], on_error: str = "fail") -> None:
        self.files = list(files)
        self.root = root.resolve()
        self.size = size
        self.on_error = checked_on_error(on_error)

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> dict:
        path = self.files[index]
        item = {"path": str(path), "relative": str(self._relative(path)), "error": ""}
        try:
            image = load_image(path, self.size)
        except DatasetError as error:
            if self.on_error == "fail":
                raise
            image, item["error"] = np.zeros((*self.size, 3), dtype=np.uint8), str(error)
        return {"image": image_tensor(image), **item}

    def _relative(self, path: Path) -> Path:
        try:
            return path.resolve().relative_to(self.root)
        except ValueError:
            return Path(path.name)


def image_loader(cfg: DictConfig, files: Sequence[Path], root: Path, size: tuple[int, int]) -> DataLoader:
    """``files`` in order, at the model's ``size``, batched as ``batch_size=`` / ``num_workers=`` say."""
    dataset = ImageFileSet(files, root, size, cfg.on_error)
    return DataLoader(dataset, batch_size=cfg.batch_size, num_workers=cfg.num_workers, shuffle=False)
