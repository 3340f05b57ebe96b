"""Shared data contracts between the datamodules and the anomaly generators.

Images travel as ``uint8`` arrays of shape ``(H, W, 3)`` (RGB) and masks as arrays of
shape ``(H, W)``: ``bool`` for ground truth, ``float32`` in ``[0, 1]`` for generated
masks. Tensors are made only at the very end, in the torch ``Dataset``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np


@dataclass(frozen=True)
class NormalImage:
    """A decoded normal training image and where anomalies may be placed on it.

    ``foreground`` is the target-area constraint: ``None`` means anywhere (textures,
    or target areas switched off); otherwise a ``bool`` mask of the object.
    """

    image: np.ndarray
    foreground: np.ndarray | None = None


@dataclass(frozen=True)
class TrainingPool:
    """Everything a generator may draw from: decoded once per run, shared read-only."""

    normals: list[NormalImage]
    seen_images: list[np.ndarray]
    seen_masks: list[np.ndarray]
    image_size: tuple[int, int]
    category: str = ""
    is_texture: bool = False
    extras: dict = field(default_factory=dict)


class AnomalySource(Protocol):
    """Makes one training sample from a normal base image.

    Returns ``(image uint8 HxWx3, mask float32 HxW in [0, 1])``. Must draw every
    random choice from ``rng`` so that a batch is reproducible from its seed.
    """

    def __call__(self, base: NormalImage, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]: ...


SourceFactory = Callable[[TrainingPool], AnomalySource]
"""Builds a source once the pool is decoded (Hydra: ``_target_`` with ``_partial_: true``)."""

ForegroundFn = Callable[[list[np.ndarray], str], list[np.ndarray]]
"""Maps the normal training images of a category to one ``bool`` foreground mask each."""
