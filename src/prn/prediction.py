"""Run a trained checkpoint on new images: scores, anomaly maps and overlays on disk.

The engineer's loop after training: point ``src/predict.py`` at a file, a folder (searched
recursively) or a glob, and get one CSV row per image plus, per image, the anomaly map
as a 16-bit PNG and a heat-map overlay, both at the image's native size. Images are
resized to the checkpoint's training size exactly as training and testing resized them.
Lightning's predict loop runs the model (``PRNModule.predict_step``); :class:`PredictionWriter`
is the ``BasePredictionWriter`` that writes each batch as it arrives.
"""

from __future__ import annotations

import csv
import glob
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
from lightning.pytorch.callbacks import BasePredictionWriter
from PIL import Image
from torch.utils.data import Dataset

from prn.data.errors import DatasetError
from prn.data.image_io import image_size_of, load_image
from prn.data.records import IMAGE_SUFFIXES
from prn.data.training import image_tensor
from prn.utils.heatmap import overlay

CSV_FIELDS = ("path", "score", "anomalous", "map", "overlay")


def collect_images(source: str | Path) -> tuple[list[Path], Path]:
    """Image files named by ``source`` (file, folder searched recursively, or glob) and the root their output names are relative to."""
    text = str(source)
    if glob.has_magic(text):
        files = sorted(Path(p) for p in glob.glob(text, recursive=True) if Path(p).suffix.lower() in IMAGE_SUFFIXES)
        root = _glob_root(text)
    else:
        path = Path(text).expanduser()
        if not path.exists():
            raise DatasetError(f"input={path} does not exist: pass an image file, a folder of images or a glob like 'parts/*.png'")
        files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith("."))
        root = path.parent if path.is_file() else path
    if not files:
        raise DatasetError(f"input={text} names no image files ({', '.join(IMAGE_SUFFIXES)}): check the path or the glob")
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
    """

    def __init__(self, files: Sequence[Path], root: Path, size: tuple[int, int]) -> None:
        self.files = list(files)
        self.root = root.resolve()
        self.size = size

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> dict:
        path = self.files[index]
        return {"image": image_tensor(load_image(path, self.size)), "path": str(path), "relative": str(self._relative(path))}

    def _relative(self, path: Path) -> Path:
        try:
            return path.resolve().relative_to(self.root)
        except ValueError:
            return Path(path.name)


def resize_map(anomaly_map: np.ndarray, native_size: tuple[int, int]) -> np.ndarray:
    """The map resized bilinearly to an image's native ``(h, w)``."""
    resized = Image.fromarray(anomaly_map.astype(np.float32), mode="F").resize(native_size[::-1], Image.Resampling.BILINEAR)
    return np.asarray(resized)


def save_map(native_map: np.ndarray, path: Path) -> None:
    """A native-size map as a 16-bit PNG (value × 65535)."""
    values = np.clip(native_map * 65535.0 + 0.5, 0, 65535).astype(np.uint16)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(values).save(path)


def save_overlay(image: np.ndarray, native_map: np.ndarray, path: Path) -> None:
    """The decoded image with its native-size map blended in (:func:`prn.utils.heatmap.overlay`)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(overlay(image, native_map)).save(path)


class PredictionWriter(BasePredictionWriter):
    """Appends one ``scores.csv`` row per image as batches arrive, so an interrupted run keeps what it did.

    With ``save_maps``, also ``maps/<relative>.png`` and ``overlays/<relative>.png`` at the
    image's native size. ``threshold`` fills the ``anomalous`` column (score >= threshold).
    """

    def __init__(self, output_dir: str | Path, threshold: float | None = None, save_maps: bool = True) -> None:
        super().__init__(write_interval="batch")
        self.out_dir = Path(output_dir)
        self.threshold, self.save_maps = threshold, save_maps
        self.csv_path = self.out_dir / "scores.csv"
        self.count = 0
        self._handle = None
        self._rows: csv.DictWriter | None = None

    def on_predict_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self._handle = open(self.csv_path, "w", newline="")
        self._rows = csv.DictWriter(self._handle, fieldnames=CSV_FIELDS)
        self._rows.writeheader()
        self.count = 0

    def on_predict_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.close()

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        self.close()

    def write_on_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, prediction: dict[str, Any],
                           batch_indices: Sequence[int] | None, batch: dict[str, Any], batch_idx: int, dataloader_idx: int) -> None:
        maps = prediction["anomaly_map"][:, 0].float().numpy()
        for path, relative, anomaly_map, score in zip(batch["path"], batch["relative"], maps, prediction["score"].tolist()):
            self.write(Path(path), Path(relative), anomaly_map, float(score))

    def write(self, image_path: Path, relative: Path, anomaly_map: np.ndarray, score: float) -> None:
        """One image's row (and files), flushed at once."""
        row = {"path": str(image_path), "score": f"{score:.6f}", "anomalous": "", "map": "", "overlay": ""}
        if self.threshold is not None:
            row["anomalous"] = int(score >= self.threshold)
        if self.save_maps:
            map_path = self.out_dir / "maps" / relative.with_suffix(".png")
            overlay_path = self.out_dir / "overlays" / relative.with_suffix(".png")
            native_size = image_size_of(image_path)
            native_map = resize_map(anomaly_map, native_size)  # once, for both files
            save_map(native_map, map_path)
            save_overlay(load_image(image_path, native_size), native_map, overlay_path)
            row["map"], row["overlay"] = str(map_path), str(overlay_path)
        self._rows.writerow(row)
        self._handle.flush()
        self.count += 1

    def close(self) -> None:
        if self._handle is not None and not self._handle.closed:
            self._handle.close()
