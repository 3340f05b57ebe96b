"""Weights & Biases logging that never blocks a run: offline without a key or network.

``logger=wandb`` adds a :class:`~lightning.pytorch.loggers.WandbLogger` beside the CSV
logger. Jobs of one sweep share a W&B group (the sweep folder) so a table's jobs appear
together; offline runs are kept under the run folder and uploaded later with
``wandb sync <run_dir>/wandb/offline-run-*``.
"""

from __future__ import annotations

import logging
import netrc
import os
import socket
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
import yaml
from lightning.pytorch.loggers import WandbLogger
from lightning.pytorch.utilities.rank_zero import rank_zero_only

from prn.utils.heatmap import overlay

log = logging.getLogger(__name__)
WANDB_HOST = "api.wandb.ai"
MODES = ("online", "offline", "disabled")


def has_api_key() -> bool:
    """A key in ``WANDB_API_KEY`` or a ``~/.netrc`` entry for api.wandb.ai (what ``wandb login`` writes)."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    try:
        return netrc.netrc().authenticators(WANDB_HOST) is not None
    except (FileNotFoundError, netrc.NetrcParseError, OSError):
        return False


def has_network(host: str = WANDB_HOST, timeout: float = 1.0) -> bool:
    """Whether W&B's API host answers on 443 within ``timeout`` seconds."""
    try:
        with socket.create_connection((host, 443), timeout=timeout):
            return True
    except OSError:
        return False


def resolve_mode(mode: str | None = None) -> str:
    """``mode`` if given, else ``WANDB_MODE``, else online only with both a key and network."""
    chosen = mode or os.environ.get("WANDB_MODE")
    if chosen:
        if chosen not in MODES:
            raise ValueError(f"logger.wandb.mode={chosen!r} (or WANDB_MODE) must be one of {MODES}")
        return chosen
    if has_api_key() and has_network():
        return "online"
    log.info("W&B: no API key or no network, logging offline; upload later with `wandb sync`")
    return "offline"


def sweep_group() -> str | None:
    """``<parent>/<sweep folder>`` of a Hydra multirun (e.g. ``paper/table4``), else None."""
    try:
        from hydra.core.hydra_config import HydraConfig
        from hydra.types import RunMode

        hydra_cfg = HydraConfig.get()
    except (ImportError, ValueError):
        return None
    if hydra_cfg.mode != RunMode.MULTIRUN:
        return None
    return "/".join(Path(hydra_cfg.sweep.dir).parts[-2:])


def build_wandb_logger(
    project: str,
    save_dir: str,
    name: str | None = None,
    group: str | None = None,
    tags: Sequence[str] = (),
    mode: str | None = None,
    **kwargs: Any,
) -> WandbLogger:
    """The W&B logger in the right mode, grouped by sweep unless ``group`` is given."""
    Path(save_dir).mkdir(parents=True, exist_ok=True)
    return WandbLogger(
        project=project,
        save_dir=save_dir,
        name=name,
        group=group or sweep_group(),
        tags=list(tags),
        mode=resolve_mode(mode),
        **kwargs,
    )


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
