"""``prn-predict backend=onnx|openvino``: score new images with an exported model instead of the checkpoint in PyTorch.

The files, their preprocessing, ``on_error`` and everything written (``scores.csv``, maps,
overlays, masks) are those of the PyTorch path (:mod:`prn.prediction.inputs`,
:class:`prn.prediction.writer.PredictionWriter`, driven here without Lightning); only the forward pass runs in
:class:`prn.deploy.Inferencer`. ``ckpt_path`` may name an exported file of that backend, or a
checkpoint, which is then exported into the run directory first.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from prn.deploy import Inferencer
from prn.deploy.runtimes import model_format
from prn.prediction.inputs import image_loader
from prn.prediction.writer import configured_writer
from prn.tools.export import FORMAT_SUFFIX, default_output, export_checkpoint
from prn.utils.instantiation import instantiate_group

log = logging.getLogger(__name__)
BACKENDS = ("torch", "onnx", "openvino")


def checked_backend(value: str) -> str:
    if value not in BACKENDS:
        raise ValueError(
            f"backend={value!r} is not one of {list(BACKENDS)}: torch runs the checkpoint in PyTorch, "
            "onnx / openvino an exported model (ckpt_path= a checkpoint to export, or a .onnx / .xml file)"
        )
    return value


def exported_model(source: Path, backend: str, output_dir: Path, trusted: bool = False) -> Path:
    """``source`` when it is already an export for ``backend``; otherwise ``source`` exported into ``output_dir``."""
    if source.suffix.lower() in FORMAT_SUFFIX.values():
        if model_format(source) != backend:
            raise ValueError(
                f"ckpt_path={source} is an export for backend={model_format(source)}, not backend={backend}: "
                f"pass backend={model_format(source)}, or the checkpoint to export it again"
            )
        return source
    out = default_output(output_dir, backend)
    start = time.perf_counter()
    export_checkpoint(source, out, format=backend, trusted=trusted)
    log.info(
        "Exported %s as %s in %.1f s: %s (pass it as ckpt_path= next time)",
        source,
        backend,
        time.perf_counter() - start,
        out,
    )
    return out


def predict_exported(cfg: DictConfig, source: Path, files: Sequence[Path], root: Path) -> dict[str, Any]:
    """Score ``files`` with the ``cfg.backend`` export of ``source``, batch by batch, through the configured writer."""
    backend = checked_backend(cfg.backend)
    writer = configured_writer(instantiate_group(cfg.get("callbacks")))
    model = exported_model(source, backend, Path(cfg.paths.output_dir), cfg.get("trust_checkpoint", False))
    inferencer = Inferencer(model, batch_size=cfg.batch_size)
    loader = image_loader(cfg, files, root, inferencer.image_size)
    start = time.perf_counter()
    writer.start(inferencer.calibration)
    try:
        for batch in loader:
            maps, scores = inferencer.run(batch["image"].numpy())
            writer.write_batch(batch, maps[:, 0], scores.tolist())
    finally:
        writer.close()
    seconds = time.perf_counter() - start
    return {
        **writer.summary(seconds, inferencer.path),
        "checkpoint": str(source),
        "backend": backend,
        "model": str(inferencer.path),
    }
