"""What the service does with one batch of uploads, apart from HTTP: score, decide, keep the record.

:class:`InspectionService` holds the model (:class:`prn.deploy.Inferencer`, any exported format
or a checkpoint), the decision log and where NG images are copied. :meth:`score_batch` runs in
the batcher's thread: one forward pass for the batch, then every decision committed to the log
before any of them is answered.
"""

from __future__ import annotations

import base64
import hashlib
import io
import os
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from prn.deploy import Inferencer, Prediction
from prn.deploy.images import PreparedImage, prepare
from prn.serve.decisions import Decision, DecisionLog
from prn.serve.uploads import Upload

MAX_PART_ID = 200


@dataclass(frozen=True)
class Job:
    """One request in a batch: its decoded upload, prepared for the model, and the part it names."""

    upload: Upload
    prepared: PreparedImage
    part_id: str | None


@dataclass(frozen=True)
class Outcome:
    """A logged decision and the prediction behind it (for the map and mask)."""

    id: int
    decision: Decision
    prediction: Prediction


def model_sha256(path: Path) -> str:
    """SHA-256 over the model's files (an OpenVINO ``.xml`` with its ``.bin``): the log's model id."""
    digest = hashlib.sha256()
    files = [path, path.with_suffix(".bin")] if path.suffix.lower() == ".xml" else [path]
    for file in files:
        with open(file, "rb") as handle:
            for block in iter(lambda: handle.read(2**20), b""):
                digest.update(block)
    return digest.hexdigest()


class InspectionService:
    """A model, its decision log and (optionally) a folder that keeps a copy of every NG image."""

    def __init__(self, inferencer: Inferencer, log: DecisionLog, keep_ng: Path | None = None) -> None:
        self.inferencer = inferencer
        self.log = log
        self.keep_ng = keep_ng
        self.model_sha256 = model_sha256(inferencer.path)

    @property
    def threshold(self) -> float | None:
        calibration = self.inferencer.calibration
        return None if calibration is None else float(calibration.image_threshold)

    def prepare(self, upload: Upload, part_id: str | None) -> Job:
        """The upload at the model's size, converted as training converted its images."""
        prepared = prepare(upload.image, self.inferencer.image_size, 0)
        return Job(upload, replace(prepared, source=part_id or upload.sha256[:12]), part_id)

    def score_batch(self, jobs: Sequence[Job]) -> list[Outcome]:
        """One forward pass, then the batch's decisions committed to the log (the answers wait for that)."""
        predictions = self.inferencer.predict_prepared([job.prepared for job in jobs])
        now = datetime.now(timezone.utc).isoformat(timespec="milliseconds")
        decisions = [self._decision(job, prediction, now) for job, prediction in zip(jobs, predictions, strict=True)]
        ids = self.log.append(decisions)
        return [Outcome(*row) for row in zip(ids, decisions, predictions, strict=True)]

    def metadata(self) -> dict[str, Any]:
        """What ``GET /v1/model`` answers: the export's own metadata and this service's model id."""
        return {
            "path": str(self.inferencer.path),
            "format": self.inferencer.format,
            "sha256": self.model_sha256,
            "image_size": list(self.inferencer.image_size),
            "threshold": self.threshold,
            "metadata": self.inferencer.metadata.values,
        }

    def _decision(self, job: Job, prediction: Prediction, now: str) -> Decision:
        decided = prediction.is_anomalous is not None
        decision = ("NG" if prediction.is_anomalous else "OK") if decided else None
        copy = self._keep(job.upload, now) if decision == "NG" and self.keep_ng is not None else None
        return Decision(
            time=now,
            part_id=job.part_id,
            image_sha256=job.upload.sha256,
            image_width=job.upload.image.width,
            image_height=job.upload.image.height,
            score=prediction.score,
            normalized_score=prediction.normalized_score,
            decision=decision,
            threshold=self.threshold,
            defect_pixels=None if prediction.defect_mask is None else int(prediction.defect_mask.sum()),
            model_sha256=self.model_sha256,
            image_copy=copy,
        )

    def _keep(self, upload: Upload, now: str) -> str:
        """The NG image's bytes as sent, under ``keep_ng/<day>/<sha256>.<format>`` (written and synced first)."""
        assert self.keep_ng is not None
        folder = self.keep_ng / now[:10]
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{upload.sha256}.{upload.image_format}"
        if not path.exists():
            partial = path.with_suffix(path.suffix + ".partial")
            with open(partial, "wb") as handle:
                handle.write(upload.data)
                handle.flush()
                os.fsync(handle.fileno())
            partial.replace(path)
        return str(path)


def png_base64(values: np.ndarray) -> str:
    """A map in [0, 1] or a boolean mask as an 8-bit gray PNG, base64 (for JSON answers and the page)."""
    scaled = np.asarray(values, dtype=np.float32) * 255.0
    buffer = io.BytesIO()
    Image.fromarray(np.clip(scaled + 0.5, 0, 255).astype(np.uint8)).save(buffer, format="PNG", compress_level=1)
    return base64.b64encode(buffer.getvalue()).decode("ascii")
