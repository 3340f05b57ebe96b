"""The one inferencer of an exported detector: files or arrays in, score, decision, map and defect mask out.

It needs numpy, Pillow and the runtime of the chosen format, nothing of training::

    from prn.deploy import Inferencer

    inferencer = Inferencer("prn.onnx")          # or prn.xml (OpenVINO), prn.pt2 (torch.export)
    for p in inferencer.predict("parts/"):       # a folder, files, arrays, PIL images
        print(p.source, p.score, p.is_anomalous, p.defect_mask.sum() if p.defect_mask is not None else "-")

Decisions and masks use the thresholds calibrated on held-out normal images and stored at
export; an export without them gives scores and maps only (``is_anomalous`` and
``defect_mask`` are None), and the inferencer says so once when it loads.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from itertools import islice
from pathlib import Path

import numpy as np

from prn.calibration import Calibration
from prn.deploy.images import ImageInput, PreparedImage, expand_inputs, native_size_map, prepare
from prn.deploy.metadata import ModelMetadata
from prn.deploy.runtimes import model_format, open_runtime

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Prediction:
    """One image's result; maps and masks have the input's native ``(h, w)``.

    ``score`` is the raw image score (mean of the top-k map pixels, as in evaluation);
    ``normalized_score`` puts the threshold at 0.5, ``is_anomalous`` is the NG decision and
    ``defect_mask`` the pixels at or above the pixel threshold: all three None without calibration.
    """

    source: str
    score: float
    anomaly_map: np.ndarray
    normalized_score: float | None
    is_anomalous: bool | None
    defect_mask: np.ndarray | None


class Inferencer:
    """An exported PRN model (``.onnx``, ``.xml`` or ``.pt2``) with its preprocessing and thresholds."""

    def __init__(self, model_path: str | Path, batch_size: int = 16) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size={batch_size} must be at least 1")
        self.path = Path(model_path)
        self.format = model_format(self.path)
        self.runtime = open_runtime(self.path)
        self.metadata = ModelMetadata.from_json(self.runtime.metadata_json, self.path)
        self.batch_size = batch_size
        if self.calibration is None:
            log.warning(
                "%s carries no calibration (its training run held out no normal images): predictions have a "
                "score and a map but no OK/NG decision or defect mask. Train with held-out normals "
                "(val_normals=) and export again to get them.",
                self.path,
            )

    @property
    def image_size(self) -> tuple[int, int]:
        """``(h, w)`` the model was trained at; every input is resized to it."""
        return self.metadata.image_size

    @property
    def calibration(self) -> Calibration | None:
        return self.metadata.calibration

    def run(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The raw model on prepared float32 ``[B, 3, H, W]`` images in ``[0, 1]``: maps ``[B, 1, H, W]`` and scores ``[B]``."""
        height, width = self.image_size
        if images.ndim != 4 or images.shape[1:] != (3, height, width):
            raise ValueError(
                f"{self.path} takes images [batch, 3, {height}, {width}], got {tuple(images.shape)}: "
                "use predict() to resize files and arrays of any size"
            )
        maps, scores = self.runtime.run(np.ascontiguousarray(images, dtype=np.float32))
        return np.asarray(maps, dtype=np.float32), np.asarray(scores, dtype=np.float32)

    def predict(self, inputs: ImageInput | Iterable[ImageInput]) -> list[Prediction]:
        """Predictions for a file, a folder, an array, a PIL image, or a sequence of them (all kept in memory)."""
        return list(self.iter_predict(inputs))

    def iter_predict(self, inputs: ImageInput | Iterable[ImageInput]) -> Iterator[Prediction]:
        """Predictions one by one, run ``batch_size`` images at a time: for folders too large to hold every map."""
        stream = enumerate(expand_inputs(inputs))
        while batch := [prepare(image, self.image_size, index) for index, image in islice(stream, self.batch_size)]:
            yield from self.predict_prepared(batch)

    def predict_prepared(self, batch: Sequence[PreparedImage]) -> list[Prediction]:
        """Predictions for images already at the model's size (:func:`prn.deploy.images.prepare`), run as one batch."""
        maps, scores = self.run(np.stack([item.pixels for item in batch]))
        return [
            self._result(item, anomaly_map[0], float(score)) for item, anomaly_map, score in zip(batch, maps, scores)
        ]

    def _result(self, item: PreparedImage, anomaly_map: np.ndarray, score: float) -> Prediction:
        native_map = native_size_map(anomaly_map, item.native_size)
        calibration = self.calibration
        if calibration is None:
            return Prediction(item.source, score, native_map, None, None, None)
        return Prediction(
            item.source,
            score,
            native_map,
            float(calibration.normalize(score)),
            bool(calibration.is_anomalous(score)),
            calibration.defect_mask(native_map),
        )
