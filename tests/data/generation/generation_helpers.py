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


def dark_part_on_dark_background(
    count: int = 12, size: int = 256, seed: int = 0
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """A dark tread-striped part (phase and angle differ per image) on a dark blotchy table, and its true masks.

    Part and table share their mean colour and spread, so only texture tells them apart:
    the case where colour distance to the border fails (issue 11: a tyre on a dark bench).
    """
    rng = np.random.default_rng(seed)
    rows, cols = np.mgrid[:size, :size].astype(np.float32)
    images, masks = [], []
    for _ in range(count):
        blotches = cv2.GaussianBlur(rng.normal(0, 1, (size, size)).astype(np.float32), (0, 0), 4.0)
        table = 40 + 14 * np.sign(blotches)[..., None] + rng.normal(0, 4, (size, size, 3))
        centre_row, centre_col = size / 2 + rng.uniform(-15, 15, 2)
        radius_row, radius_col = size * rng.uniform(0.30, 0.36, 2)
        mask = ((rows - centre_row) / radius_row) ** 2 + ((cols - centre_col) / radius_col) ** 2 <= 1
        angle, phase = rng.uniform(0, np.pi), rng.uniform(0, 2 * np.pi)
        tread = 40 + 14 * np.sign(np.sin((cols * np.cos(angle) + rows * np.sin(angle)) * 2 * np.pi / 12 + phase))
        part = tread[..., None] + rng.normal(0, 4, (size, size, 3))
        images.append(np.where(mask[..., None], part, table).clip(0, 255).astype(np.uint8))
        masks.append(mask)
    return images, masks


def frame_filling_texture(count: int = 12, size: int = 256, seed: int = 1) -> list[np.ndarray]:
    """A machined-metal-like texture that fills the whole frame: its foreground is the whole image."""
    rng = np.random.default_rng(seed)
    cols = np.mgrid[:size, :size][1]
    images = []
    for _ in range(count):
        grain = cv2.resize(
            rng.normal(128, 30, (size // 4, size // 4, 3)).clip(0, 255).astype(np.uint8),
            (size, size),
            interpolation=cv2.INTER_CUBIC,
        )
        marks = (np.sin(cols * 0.7 + rng.uniform(0, 6)) * 20)[..., None]
        images.append((grain + marks + rng.normal(0, 8, grain.shape)).clip(0, 255).astype(np.uint8))
    return images


def part_with_leads(size: int = 96) -> tuple[np.ndarray, np.ndarray]:
    """A grey board with a bright body and three thin bright leads (the transistor's shape, drawn)."""
    image = np.full((size, size, 3), 60, dtype=np.uint8)
    foreground = np.zeros((size, size), dtype=bool)
    foreground[20:50, 25:70] = True
    for column in (32, 46, 60):
        foreground[50:85, column - 2 : column + 2] = True
    image[foreground] = 220
    return image, foreground
