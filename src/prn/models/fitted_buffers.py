"""Buffers filled at setup (prototypes, patch memory, pose template) start empty; a checkpoint gives their size."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import Tensor, nn


def resize_to_incoming(module: nn.Module, state_dict: dict[str, Any], prefix: str, names: Iterable[str]) -> None:
    """Give each named buffer of ``module`` the shape it has in ``state_dict`` (same device and dtype), so loading copies it."""
    for name in names:
        incoming, current = state_dict.get(prefix + name), getattr(module, name)
        if isinstance(incoming, Tensor) and incoming.shape != current.shape:
            setattr(module, name, torch.empty_like(incoming, device=current.device, dtype=current.dtype))
