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

from lightning.pytorch.loggers import WandbLogger

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
