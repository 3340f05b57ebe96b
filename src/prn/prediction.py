"""Run a trained checkpoint on new images: scores, anomaly maps and overlays on disk.

The engineer's loop after training: point ``src/predict.py`` at a file, a folder (searched
recursively) or a glob, and get one CSV row per image plus, per image, the anomaly map
as a 16-bit PNG and a heat-map overlay, both at the image's native size. Images are
resized to the checkpoint's training size exactly as training and testing resized them.
"""

from __future__ import annotations

import csv
import glob
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from prn.data.errors import DatasetError
from prn.data.image_io import image_size_of, load_image
from prn.data.records import IMAGE_SUFFIXES
from prn.data.training import image_tensor

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
    """The model's input for each file, plus what is needed to map results back to it."""

    def __init__(self, files: Sequence[Path], size: tuple[int, int]) -> None:
        self.files = list(files)
        self.size = size

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> dict:
        path = self.files[index]
        return {"image": image_tensor(load_image(path, self.size)), "index": index}


def predict_batches(module: torch.nn.Module, files: Sequence[Path], size: tuple[int, int], batch_size: int,
                    num_workers: int, device: torch.device) -> Iterator[tuple[list[Path], np.ndarray, np.ndarray]]:
    """``(files, maps [B, h, w] float32, scores [B])`` per batch, at the model's input size."""
    loader = DataLoader(ImageFileSet(files, size), batch_size=batch_size, num_workers=num_workers, shuffle=False)
    module.eval().to(device)
    with torch.no_grad():
        for batch in loader:
            maps, scores = module.predict_maps_and_scores(batch["image"].to(device))
            yield [files[i] for i in batch["index"].tolist()], maps[:, 0].cpu().numpy(), scores.cpu().numpy()


def resize_map(anomaly_map: np.ndarray, native_size: tuple[int, int]) -> np.ndarray:
    """The map resized bilinearly to an image's native ``(h, w)``."""
    resized = Image.fromarray(anomaly_map.astype(np.float32), mode="F").resize(native_size[::-1], Image.Resampling.BILINEAR)
    return np.asarray(resized)


def save_map(native_map: np.ndarray, path: Path) -> None:
    """A native-size map as a 16-bit PNG (value × 65535)."""
    values = np.clip(native_map * 65535.0 + 0.5, 0, 65535).astype(np.uint16)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(values).save(path)


def save_overlay(image: np.ndarray, native_map: np.ndarray, path: Path, alpha: float = 0.6) -> None:
    """The decoded image with its native-size map blended in as a heat map.

    The blend weight grows with the score (``alpha * sqrt(map)``), so normal regions keep
    their own colours and only suspicious ones are tinted.
    """
    values = np.clip(native_map, 0.0, 1.0)
    weight = alpha * np.sqrt(values)[..., None]
    blended = (1 - weight) * image.astype(np.float32) + weight * heat_colours(values)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.clip(blended + 0.5, 0, 255).astype(np.uint8)).save(path)


def heat_colours(values: np.ndarray) -> np.ndarray:
    """``[0, 1]`` values to RGB ``float`` in ``[0, 255]``: blue (0) through green to red (1), absolute, not per-image rescaled."""
    v = np.clip(values, 0.0, 1.0)[..., None]
    anchors = np.array([[0, 0, 255], [0, 255, 0], [255, 0, 0]], dtype=np.float32)
    low = anchors[0] + (anchors[1] - anchors[0]) * np.clip(2 * v, 0, 1)
    return np.where(v < 0.5, low, anchors[1] + (anchors[2] - anchors[1]) * np.clip(2 * v - 1, 0, 1))


class PredictionWriter:
    """Appends one CSV row per image as results arrive, so an interrupted run keeps what it did."""

    def __init__(self, out_dir: Path, root: Path, threshold: float | None, save_maps: bool) -> None:
        self.out_dir, self.root, self.threshold, self.save_maps = out_dir, root, threshold, save_maps
        out_dir.mkdir(parents=True, exist_ok=True)
        self.csv_path = out_dir / "scores.csv"
        self._handle = open(self.csv_path, "w", newline="")
        self._rows = csv.DictWriter(self._handle, fieldnames=CSV_FIELDS)
        self._rows.writeheader()
        self.count = 0

    def write(self, image_path: Path, anomaly_map: np.ndarray, score: float) -> None:
        relative = self._relative(image_path)
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
        self._handle.close()

    def _relative(self, image_path: Path) -> Path:
        """Output name mirroring the input tree, so ``a/000.png`` and ``b/000.png`` do not collide."""
        try:
            return image_path.resolve().relative_to(self.root.resolve())
        except ValueError:
            return Path(image_path.name)
