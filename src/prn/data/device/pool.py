"""The training pool as uint8 tensors, decoded once and moved to the training device once.

The CPU path decodes every image at setup already (``TrainingPool``); here the same arrays are
stacked into ``[N, 3, H, W]`` uint8 tensors (a quarter of float32's memory: bottle's 209 normals at
256 px are 41 MB) and, for HEA, the DTD textures are decoded and resized once, in threads, instead
of per sample through an LRU cache. Moved to the device with the first batch, they stay there.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, fields, replace
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from prn.data.generation.simulated import decode_texture
from prn.data.types import TrainingPool

DECODE_THREADS = 8


def _stack_images(images: list[np.ndarray], shape: tuple[int, int]) -> Tensor:
    if not images:
        return torch.zeros(0, 3, *shape, dtype=torch.uint8)
    return torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).contiguous()


def _stack_masks(masks: list[np.ndarray], shape: tuple[int, int]) -> Tensor:
    if not masks:
        return torch.zeros(0, *shape, dtype=torch.bool)
    return torch.from_numpy(np.stack([np.asarray(mask, dtype=bool) for mask in masks]))


def decode_textures(files: list[Path], shape: tuple[int, int]) -> Tensor:
    """``[T, 3, H, W]`` uint8: every texture file decoded and resized to ``shape`` (as the CPU path's cache does)."""
    with ThreadPoolExecutor(DECODE_THREADS) as pool:
        textures = list(pool.map(lambda path: decode_texture(path, shape), files))
    return _stack_images(textures, shape)


@dataclass(frozen=True)
class PoolTensors:
    """Normals (with their foregrounds), seen anomalies and textures of a run, as stacked tensors.

    ``foregrounds`` is ``None`` when no image has one (textures, or target areas off); ``textures``
    is ``None`` when HEA is off.
    """

    normals: Tensor
    foregrounds: Tensor | None
    seen_images: Tensor
    seen_masks: Tensor
    textures: Tensor | None = None

    @classmethod
    def from_pool(cls, pool: TrainingPool, texture_files: list[Path] | None = None) -> PoolTensors:
        shape = tuple(pool.image_size)
        has_foreground = [normal.foreground is not None for normal in pool.normals]
        foregrounds = None
        if any(has_foreground):
            foregrounds = _stack_masks(
                [
                    normal.foreground if normal.foreground is not None else np.ones(shape, dtype=bool)
                    for normal in pool.normals
                ],
                shape,
            )
        return cls(
            normals=_stack_images([normal.image for normal in pool.normals], shape),
            foregrounds=foregrounds,
            seen_images=_stack_images(list(pool.seen_images), shape),
            seen_masks=_stack_masks(list(pool.seen_masks), shape),
            textures=decode_textures(texture_files, shape) if texture_files else None,
        )

    @property
    def image_size(self) -> tuple[int, int]:
        return tuple(self.normals.shape[2:])

    @property
    def device(self) -> torch.device:
        return self.normals.device

    def to(self, device: torch.device | str) -> PoolTensors:
        """A copy on ``device`` (the same object when it is there already)."""
        device = torch.device(device)
        if self.device == device:
            return self
        moved = {
            item.name: None if getattr(self, item.name) is None else getattr(self, item.name).to(device)
            for item in fields(self)
        }
        return replace(self, **moved)

    def allowed(self, bases: Tensor, use_target_area: bool = True) -> Tensor:
        """``[B, H, W]`` where anomalies may go on these normals: their foregrounds, or everywhere."""
        if use_target_area and self.foregrounds is not None:
            return self.foregrounds[bases]
        return torch.ones(len(bases), *self.image_size, dtype=torch.bool, device=self.device)

    def normal_images(self, bases: Tensor) -> Tensor:
        """``[B, 3, H, W]`` float in [0, 1]."""
        return as_float(self.normals[bases])

    def nbytes(self) -> int:
        return sum(
            getattr(self, item.name).numel() * getattr(self, item.name).element_size()
            for item in fields(self)
            if getattr(self, item.name) is not None
        )


def as_float(images: Tensor) -> Tensor:
    """uint8 ``[B, 3, H, W]`` to float32 in [0, 1], the model's input scale."""
    return images.float().div_(255.0)
