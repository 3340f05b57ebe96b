"""Synthetic object category for the generation tests: textured discs on a plain backdrop."""

from __future__ import annotations

import cv2
import numpy as np

from prn.data.types import NormalImage, TrainingPool

SIZE = 64
BACKGROUND = (225, 225, 225)


def disc_mask(size: int = SIZE, centre: tuple[int, int] = (32, 32), radius: int = 18) -> np.ndarray:
    """The ground-truth object of the synthetic images."""
    canvas = np.zeros((size, size), dtype=np.uint8)
    cv2.circle(canvas, centre, radius, 1, thickness=-1)
    return canvas.astype(bool)


def disc_image(rng: np.random.Generator, mask: np.ndarray) -> np.ndarray:
    """A dark noisy disc on a light, slightly noisy background."""
    image = np.empty(mask.shape + (3,), dtype=np.float32)
    image[:] = BACKGROUND
    image += rng.normal(0, 3, image.shape)
    object_pixels = rng.normal((60, 70, 90), 12, (int(mask.sum()), 3))
    image[mask] = object_pixels
    return np.clip(image, 0, 255).astype(np.uint8)


def make_pool(num_normals: int = 6, num_seen: int = 3, seed: int = 0) -> TrainingPool:
    rng = np.random.default_rng(seed)
    foreground = disc_mask()
    normals = [NormalImage(disc_image(rng, foreground), foreground) for _ in range(num_normals)]
    seen_images, seen_masks = [], []
    for index in range(num_seen):
        image = disc_image(rng, foreground)
        mask = np.zeros((SIZE, SIZE), dtype=bool)
        mask[20 + index : 30 + index, 24:40] = True
        image[mask] = (250, 40, 40)
        seen_images.append(image)
        seen_masks.append(mask)
    return TrainingPool(normals, seen_images, seen_masks, image_size=(SIZE, SIZE), category="disc")
