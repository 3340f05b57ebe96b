"""Objects built from config groups, and finding them again on the trainer."""

from __future__ import annotations

from typing import Any, TypeVar

import hydra
import lightning as L
from omegaconf import DictConfig

CallbackT = TypeVar("CallbackT", bound=L.Callback)


def instantiate_group(config: DictConfig | None) -> list[Any]:
    """Every entry of a group of named objects (``callbacks``, ``logger``) with a ``_target_``; null entries are switched off."""
    return [
        hydra.utils.instantiate(entry) for entry in (config or {}).values() if entry is not None and "_target_" in entry
    ]


def find_callback(trainer: L.Trainer, kind: type[CallbackT]) -> CallbackT | None:
    """The trainer's callback of type ``kind``, or None when the config switched it off."""
    return next((callback for callback in trainer.callbacks if isinstance(callback, kind)), None)
