"""``prn-predict`` (``backend=torch``, the default): the checkpoint in PyTorch, through Lightning's predict loop.

The loop runs ``PRNModule.predict_step`` on CPU or GPU as ``trainer=`` says; the configured
:class:`prn.prediction.writer.PredictionWriter` callback writes each batch as it arrives.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from prn.checkpoints import module_from_checkpoint, training_image_size
from prn.prediction.inputs import image_loader
from prn.prediction.writer import configured_writer
from prn.utils.instantiation import build_trainer, instantiate_group


def predict_with_checkpoint(cfg: DictConfig, ckpt: Path, files: Sequence[Path], root: Path) -> dict[str, Any]:
    """Score ``files`` with the checkpoint; the summary is the exported backend's, without the model file."""
    module = module_from_checkpoint(ckpt, cfg.get("trust_checkpoint", False))
    loader = image_loader(cfg, files, root, training_image_size(module, ckpt))
    callbacks = instantiate_group(cfg.get("callbacks"))
    writer = configured_writer(callbacks)
    trainer = build_trainer(cfg, callbacks)
    start = time.perf_counter()
    trainer.predict(module, dataloaders=loader, return_predictions=False)
    return {**writer.summary(time.perf_counter() - start), "checkpoint": str(ckpt)}
