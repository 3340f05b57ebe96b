"""Every object of a run built from its config: datamodule, module, trainer, and groups of callbacks and loggers.

The jobs (:mod:`prn.pipeline`, :mod:`prn.prediction.job`) and the benchmarks build through these
functions, so a run and a benchmark of the same config get the same objects.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import hydra
import lightning as L
from omegaconf import DictConfig, OmegaConf

from prn.utils.hardware import training_precision

if TYPE_CHECKING:
    from prn.training import PRNModule

CallbackT = TypeVar("CallbackT", bound=L.Callback)


def instantiate_group(config: DictConfig | None) -> list[Any]:
    """Every entry of a group of named objects (``callbacks``, ``logger``) with a ``_target_``; null entries are switched off."""
    return [
        hydra.utils.instantiate(entry) for entry in (config or {}).values() if entry is not None and "_target_" in entry
    ]


def find_callback(trainer: L.Trainer, kind: type[CallbackT]) -> CallbackT | None:
    """The trainer's callback of type ``kind``, or None when the config switched it off."""
    return next((callback for callback in trainer.callbacks if isinstance(callback, kind)), None)


def build_datamodule(config: DictConfig | dict[str, Any], run_dir: Path) -> L.LightningDataModule:
    """The configured datamodule, writing its split file into the run directory."""
    return hydra.utils.instantiate(config, output_dir=str(run_dir), _convert_="partial")


def build_module(cfg: DictConfig, image_size: Sequence[int] | None = None) -> PRNModule:
    """``cfg.model`` instantiated (network, loss, optimiser partial), remembering the data config for evaluation.

    ``image_size``: the ``(h, w)`` the datamodule resolved (``keep_aspect``), recorded in place of the
    configured side so that evaluation, prediction and export resize to what training saw.
    """
    data_config = {"name": cfg.dataset.name, **OmegaConf.to_container(cfg.dataset.datamodule, resolve=True)}
    if image_size is not None:
        data_config.update(image_size=list(image_size), keep_aspect=False)
    module_factory = hydra.utils.instantiate(cfg.model, _partial_=True, _convert_="partial")
    return module_factory(data_config=data_config)  # passed after instantiation: Hydra would build its _target_s


def build_trainer(cfg: DictConfig, callbacks: list[L.Callback]) -> L.Trainer:
    """The configured Lightning trainer with these callbacks and the configured loggers (none: no logger)."""
    loggers = instantiate_group(cfg.get("logger"))
    print_lightning_messages_once()
    precision = training_precision(cfg.trainer.precision, cfg.trainer.accelerator)
    return hydra.utils.instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False, precision=precision)


def print_lightning_messages_once() -> None:
    """Leave Lightning's messages to the root handlers where they exist (Hydra's console and log file).

    ``import lightning`` adds its own console handler to the ``lightning`` logger, so under Hydra
    every Lightning line was printed twice; without root handlers (a notebook) it stays.
    """
    if logging.getLogger().hasHandlers():
        logging.getLogger("lightning").handlers.clear()
