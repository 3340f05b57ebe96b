"""The run's test results on its W&B dashboard: the resolved config, the metrics table and a few test heat maps.

The W&B side of reporting (``report.html`` is :mod:`prn.reporting.report`); the logger itself,
offline without a key or network, is built by :func:`prn.utils.wandb.build_wandb_logger`.
"""

from __future__ import annotations

from pathlib import Path

import lightning as L
import numpy as np
import torch
import yaml
from lightning.pytorch.loggers import WandbLogger
from lightning.pytorch.utilities.rank_zero import rank_zero_only

from prn.utils.heatmap import overlay


def _as_uint8_images(images: torch.Tensor) -> np.ndarray:
    """(B, 3, H, W) model inputs in [0, 1] as (B, H, W, 3) uint8, unstretched (as predict draws them)."""
    array = images.detach().float().cpu().clamp(0, 1).permute(0, 2, 3, 1).numpy()
    return (array * 255 + 0.5).astype(np.uint8)


class WandbReportCallback(L.Callback):
    """Logs the resolved config, a few test heat maps and the metrics table to W&B.

    Always in the callback list (``conf/callbacks/wandb_images.yaml``); it acts only when
    the trainer has a :class:`WandbLogger` (``logger=wandb``).
    """

    def __init__(self, num_images: int = 4) -> None:
        self.num_images = num_images

    @staticmethod
    def _wandb_logger(trainer: L.Trainer) -> WandbLogger | None:
        return next((logger for logger in trainer.loggers if isinstance(logger, WandbLogger)), None)

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        logger = self._wandb_logger(trainer)
        config_file = Path(trainer.default_root_dir) / "config.yaml"
        if logger is not None and config_file.is_file():
            logger.experiment.config.update(yaml.safe_load(config_file.read_text()), allow_val_change=True)

    @rank_zero_only
    def on_test_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        logger = self._wandb_logger(trainer)
        if logger is None:
            return
        import wandb

        results = getattr(pl_module, "test_results", {})
        if results:
            logger.experiment.log({"test/results": wandb.Table(columns=list(results), data=[list(results.values())])})
        batch = next(iter(trainer.datamodule.test_dataloader()), None)
        if batch is None:
            return
        images = batch["image"][: self.num_images].to(pl_module.device)
        with torch.no_grad():
            maps, scores = pl_module.predict_maps_and_scores(images)
        pictures = [
            wandb.Image(overlay(image, anomaly_map[0]), caption=f"score {float(score):.3f} label {int(label)}")
            for image, anomaly_map, score, label in zip(
                _as_uint8_images(images), maps.float().cpu().numpy(), scores.cpu(), batch["label"][: self.num_images]
            )
        ]
        logger.experiment.log({"test/heatmaps": pictures})
