"""What a prediction writes: one ``scores.csv`` row per image, its map, overlay and defect mask at native size.

:class:`PredictionWriter` has an API of its own (``start``, ``write_batch``, ``close``,
``summary``) that both backends drive: Lightning's predict loop through the
``BasePredictionWriter`` hooks (the checkpoint in PyTorch), and the exported backend directly.
Decisions use the model's calibrated thresholds (:mod:`prn.calibration`) unless a number
overrides the image threshold.
"""

from __future__ import annotations

import csv
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
from lightning.pytorch.callbacks import BasePredictionWriter
from PIL import Image

from prn.calibration import Calibration, parse_threshold
from prn.data.image_io import image_size_of, load_image
from prn.deploy.images import native_size_map
from prn.utils.heatmap import overlay

log = logging.getLogger(__name__)
CSV_FIELDS = ("path", "score", "normalized_score", "decision", "anomalous", "map", "overlay", "mask")
SKIPPED_FIELDS = ("path", "error")


def save_map(native_map: np.ndarray, path: Path) -> None:
    """A native-size map as a 16-bit PNG (value × 65535)."""
    values = np.clip(native_map * 65535.0 + 0.5, 0, 65535).astype(np.uint16)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(values).save(path)


def save_mask(defect_mask: np.ndarray, path: Path) -> None:
    """A native-size binary defect mask as an 8-bit PNG (255 = defect)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.where(defect_mask, 255, 0).astype(np.uint8)).save(path)


def save_overlay(image: np.ndarray, native_map: np.ndarray, path: Path) -> None:
    """The decoded image with its native-size map blended in (:func:`prn.utils.heatmap.overlay`)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(overlay(image, native_map)).save(path)


class PredictionWriter(BasePredictionWriter):
    """Appends one ``scores.csv`` row per image as batches arrive, so an interrupted run keeps what it did.

    ``threshold`` is parsed by :func:`prn.calibration.parse_threshold`: ``"auto"`` takes the image
    and pixel thresholds the checkpoint was calibrated with (``pl_module.calibration``); a number
    sets the image threshold (pixel masks then still come from the calibration, if any); ``None``
    decides nothing. With ``save_maps``, also ``maps/<relative>.png``, ``overlays/<relative>.png``
    and, with a pixel threshold, ``masks/<relative>.png`` (255 = defect) at the image's native size.
    """

    def __init__(self, output_dir: str | Path, threshold: float | str | None = "auto", save_maps: bool = True) -> None:
        super().__init__(write_interval="batch")
        self.threshold = parse_threshold(threshold)
        self.out_dir = Path(output_dir)
        self.save_maps = save_maps
        self.csv_path = self.out_dir / "scores.csv"
        self.skipped_path = self.out_dir / "skipped.csv"
        self.count = 0
        self.skipped = 0
        self.calibration: Calibration | None = None
        self._handle = None
        self._rows: csv.DictWriter | None = None

    def on_predict_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.start(getattr(pl_module, "calibration", None))

    def start(self, calibration: Calibration | None) -> None:
        """Open ``scores.csv`` with the thresholds of the model being run: a checkpoint's, or an exported model's (``backend=``)."""
        self.use_calibration(calibration)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self._handle = open(self.csv_path, "w", newline="")
        self._rows = csv.DictWriter(self._handle, fieldnames=CSV_FIELDS)
        self._rows.writeheader()
        self.count = self.skipped = 0

    def use_calibration(self, calibration: Calibration | None) -> None:
        """Thresholds of the checkpoint being run; ``threshold=auto`` without one decides nothing, with a warning."""
        self.calibration = calibration
        if self.threshold.mode == "auto" and calibration is None:
            log.warning(
                "threshold=auto but the checkpoint holds no calibration (trained with val_normals=0): "
                "scores and maps only, no OK/NG decision. Retrain with val_normals=0.1 or pass threshold=<number>."
            )

    @property
    def image_threshold(self) -> float | None:
        """The OK/NG image threshold in force: from ``threshold=`` and the model's calibration."""
        return self.threshold.image_threshold(self.calibration)

    def summary(self, seconds: float, model: str | Path | None = None) -> dict[str, Any]:
        """Log what was scored (``model``: an exported file) and return the run's summary, the same for every backend."""
        if self.skipped:
            log.warning("Skipped %d unreadable files (on_error=skip): %s", self.skipped, self.skipped_path)
        with_model = "" if model is None else f" with {model}"
        log.info(
            "Scored %d images%s in %.1f s (%.3f s/image incl. decoding and writing): %s",
            self.count,
            with_model,
            seconds,
            seconds / max(self.count, 1),
            self.csv_path,
        )
        return {
            "images": self.count,
            "skipped": self.skipped,
            "scores_csv": str(self.csv_path),
            "seconds": round(seconds, 2),
            "image_threshold": self.image_threshold,
            "threshold_source": self.threshold.source(self.calibration),
        }

    def on_predict_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.close()

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        self.close()

    def write_on_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        prediction: dict[str, Any],
        batch_indices: Sequence[int] | None,
        batch: dict[str, Any],
        batch_idx: int,
        dataloader_idx: int,
    ) -> None:
        self.write_batch(batch, prediction["anomaly_map"][:, 0].float().numpy(), prediction["score"].tolist())

    def write_batch(self, batch: dict[str, Any], maps: np.ndarray, scores: Sequence[float]) -> None:
        """A batch of :class:`prn.prediction.inputs.ImageFileSet` with its model-size maps ``[B, H, W]`` and scores."""
        errors = batch.get("error") or [""] * len(maps)
        for path, relative, anomaly_map, score, error in zip(batch["path"], batch["relative"], maps, scores, errors):
            if error:
                self.skip(Path(path), error)
            else:
                self.write(Path(path), Path(relative), anomaly_map, float(score))

    def write(self, image_path: Path, relative: Path, anomaly_map: np.ndarray, score: float) -> None:
        """One image's row (and files), flushed at once."""
        row = dict.fromkeys(CSV_FIELDS, "") | {"path": str(image_path), "score": f"{score:.6f}"}
        if self.calibration is not None:
            row["normalized_score"] = f"{float(self.calibration.normalize(score)):.4f}"
        if self.image_threshold is not None:
            anomalous = score >= self.image_threshold
            row["anomalous"], row["decision"] = int(anomalous), "NG" if anomalous else "OK"
        if self.save_maps:
            map_path, overlay_path, mask_path = (
                self.out_dir / folder / relative.with_suffix(".png") for folder in ("maps", "overlays", "masks")
            )
            native_size = image_size_of(image_path)
            native_map = native_size_map(anomaly_map, native_size)  # once, for every file
            save_map(native_map, map_path)
            save_overlay(load_image(image_path, native_size), native_map, overlay_path)
            row["map"], row["overlay"] = str(map_path), str(overlay_path)
            if self.calibration is not None:
                save_mask(self.calibration.defect_mask(native_map), mask_path)
                row["mask"] = str(mask_path)
        self._rows.writerow(row)
        self._handle.flush()
        self.count += 1

    def skip(self, image_path: Path, error: str) -> None:
        """An unreadable file (``on_error=skip``): one ``skipped.csv`` row with the reason, no score."""
        new_file = not self.skipped_path.exists() or self.skipped == 0
        with open(self.skipped_path, "w" if new_file else "a", newline="") as handle:
            rows = csv.DictWriter(handle, fieldnames=SKIPPED_FIELDS)
            if new_file:
                rows.writeheader()
            rows.writerow({"path": str(image_path), "error": error})
        self.skipped += 1
        log.warning("Skipped %s: %s", image_path, error)

    def close(self) -> None:
        if self._handle is not None and not self._handle.closed:
            self._handle.close()


def configured_writer(callbacks: Sequence[L.Callback]) -> PredictionWriter:
    """The writer among the configured callbacks (``conf/callbacks/predict.yaml``), or an error: without it nothing is written."""
    writer = next((callback for callback in callbacks if isinstance(callback, PredictionWriter)), None)
    if writer is None:
        raise ValueError(
            "callbacks.prediction_writer is switched off: predict would write nothing (see conf/callbacks/predict.yaml)"
        )
    return writer
