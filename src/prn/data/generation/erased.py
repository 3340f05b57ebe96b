"""Erased anomalies: a piece of the part removed and filled with what surrounds it.

Pasted textures (HEA) and pasted normal content (HOA) only ever *add* something. Many real
defects are absences: a cut lead, a missing pin or screw, a broken-off corner. This source
erases a region of a normal image, mostly centred where the part has structure (drawn in
proportion to the local gradient: leads, pins, edges and corners, not flat areas that would
not change), and fills it by inpainting from its border (OpenCV's
Telea method), with grain as strong as the surroundings' so the fill is not unnaturally smooth.

The mask is the part of the region whose pixels actually changed: erasing plain background
changes nothing and teaches nothing, so such draws are retried, and a mask never labels
pixels that still look as they did.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import cv2
import numpy as np

from prn.data.generation.target_area import TARGET_SHAPES, draw_shape

DEFAULT_ERASE_SCALE = (0.08, 0.3)  # region diameter as a fraction of the object's (or image's) extent
STRUCTURE_FRACTION = 0.75  # draws centred in proportion to the gradient (the rest uniformly on the part)
MIN_CHANGE = 0.08  # a pixel counts as erased when it moved by this share of the image's range
MIN_ERASED_FRACTION = 0.0015  # of the image: smaller removals are redrawn (at 256 px, about 100 pixels)
MAX_ERASE_ATTEMPTS = 8
INPAINT_RADIUS = 5


def structure_weights(image: np.ndarray, allowed: np.ndarray) -> np.ndarray:
    """Smoothed gradient magnitude of ``image`` inside ``allowed``: where erasing removes something."""
    grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY).astype(np.float32)
    magnitude = cv2.magnitude(cv2.Sobel(grey, cv2.CV_32F, 1, 0), cv2.Sobel(grey, cv2.CV_32F, 0, 1))
    return cv2.GaussianBlur(magnitude, (0, 0), 3) * allowed


def value_range(image: np.ndarray) -> float:
    """The image's 1-99 % spread in grey levels, at least 32: what 'visibly changed' is measured against."""
    return max(float(np.percentile(image, 99) - np.percentile(image, 1)), 32.0)


def grain_spread(image: np.ndarray, near: np.ndarray) -> float:
    """Robust (MAD) spread of ``image``'s fine texture (5x5 high-pass) on the ``near`` pixels, 0 if none.

    The median ignores edges among ``near`` (a part's outline), which a plain std would count as texture.
    """
    high_pass = image.astype(np.float32) - cv2.GaussianBlur(image, (5, 5), 0).astype(np.float32)
    return 1.4826 * float(np.median(np.abs(high_pass[near]))) if near.any() else 0.0


def inpaint_region(image: np.ndarray, region: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """``image`` with ``region`` inpainted from its border, plus grain as strong as the surroundings' fine texture.

    The grain's spread is the robust (MAD) spread of the high-pass image in a ring round the region,
    so edges in the ring (the part's outline) do not count as texture.
    """
    region_u8 = region.astype(np.uint8)
    filled = cv2.inpaint(image, region_u8, INPAINT_RADIUS, cv2.INPAINT_TELEA)
    ring = cv2.dilate(region_u8, np.ones((7, 7), np.uint8)).astype(bool) & ~region
    spread = grain_spread(image, ring)
    grain = rng.normal(0.0, spread, size=image.shape[:2])[..., None]
    return np.clip(filled.astype(np.float64) + grain * region[..., None], 0, 255).round().astype(np.uint8)


def changed_pixels(before: np.ndarray, after: np.ndarray, region: np.ndarray) -> np.ndarray:
    """``bool`` pixels of ``region`` where ``after`` differs visibly from ``before`` (opened, so specks drop)."""
    difference = np.abs(
        cv2.GaussianBlur(after, (5, 5), 0).astype(np.float32) - cv2.GaussianBlur(before, (5, 5), 0).astype(np.float32)
    )
    moved = (difference.max(axis=2) > MIN_CHANGE * value_range(before)) & region
    opened = cv2.morphologyEx(moved.astype(np.uint8), cv2.MORPH_OPEN, np.ones((3, 3), np.uint8))
    return opened.astype(bool)


def checked_erase_options(
    shapes: Sequence[str], scale: Sequence[float], structure_fraction: float
) -> tuple[tuple[str, ...], tuple[float, float], float]:
    """The erase options as stored, or the error naming the bad one (both the CPU and the device source)."""
    if not 0.0 < scale[0] <= scale[1] <= 1.0:
        raise ValueError(f"erase scale must satisfy 0 < low <= high <= 1, got {tuple(scale)}")
    if not 0.0 <= structure_fraction <= 1.0:
        raise ValueError(f"erase structure_fraction must lie in [0, 1], got {structure_fraction}")
    return tuple(shapes), (float(scale[0]), float(scale[1])), float(structure_fraction)


class ErasedAnomalySource:
    """``AnomalySource`` that removes structure: returns (image with a piece erased, erased-pixel mask)."""

    def __init__(
        self,
        shapes: Sequence[str] = TARGET_SHAPES,
        scale: Sequence[float] = DEFAULT_ERASE_SCALE,
        structure_fraction: float = STRUCTURE_FRACTION,
    ) -> None:
        self.shapes, self.scale, self.structure_fraction = checked_erase_options(shapes, scale, structure_fraction)

    def __call__(
        self, image: np.ndarray, foreground: np.ndarray | None, rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray]:
        """Erase a region of ``image`` on ``foreground`` (None: anywhere); retry until something visible went."""

        def erase_once() -> tuple[np.ndarray, np.ndarray]:
            region = self._region(image, foreground, rng)
            return inpaint_region(image, region, rng), region

        return visible_change(image, erase_once)

    def _region(self, image: np.ndarray, foreground: np.ndarray | None, rng: np.random.Generator) -> np.ndarray:
        return structure_region(image, foreground, rng, self.shapes, self.scale, self.structure_fraction)


def visible_change(
    image: np.ndarray, change: Callable[[], tuple[np.ndarray, np.ndarray]], attempts: int = MAX_ERASE_ATTEMPTS
) -> tuple[np.ndarray, np.ndarray]:
    """The first of ``attempts`` draws of ``change`` (a changed image and the region it may have changed) that
    visibly changed enough pixels, else the one that changed most: ``image`` changed only where the change is
    visible (no unlabelled fill noise), and that float32 mask."""
    best = (image, np.zeros(image.shape[:2], dtype=bool))
    for _ in range(attempts):
        changed, region = change()
        mask = changed_pixels(image, changed, region)
        kept = np.where(mask[..., None], changed, image)
        if mask.sum() >= max(16, MIN_ERASED_FRACTION * mask.size):
            return kept, mask.astype(np.float32)
        if mask.sum() > best[1].sum():
            best = (kept, mask)
    return best[0], best[1].astype(np.float32)


def part_and_extent(foreground: np.ndarray | None, shape: tuple[int, int]) -> tuple[np.ndarray, int]:
    """Where a piece may be drawn (the foreground, or the whole image without one) and the part's larger side."""
    allowed = np.ones(shape, dtype=bool) if foreground is None or not foreground.any() else foreground.astype(bool)
    rows, cols = np.nonzero(allowed)
    return allowed, int(max(rows.max() - rows.min(), cols.max() - cols.min()) + 1)


def structure_region(
    image: np.ndarray,
    foreground: np.ndarray | None,
    rng: np.random.Generator,
    shapes: Sequence[str] = TARGET_SHAPES,
    scale: Sequence[float] = DEFAULT_ERASE_SCALE,
    structure_fraction: float = STRUCTURE_FRACTION,
) -> np.ndarray:
    """A random shape on ``foreground`` (None: anywhere), its diameter ``scale`` of the part's extent, centred in
    proportion to the local gradient ``structure_fraction`` of the time: where changing the image changes the part."""
    shape = image.shape[:2]
    allowed, extent = part_and_extent(foreground, shape)
    rows, cols = np.nonzero(allowed)
    weights = structure_weights(image, allowed)[rows, cols].astype(np.float64)
    if rng.random() < structure_fraction and weights.sum() > 0:
        pick = int(rng.choice(len(rows), p=weights / weights.sum()))
    else:
        pick = int(rng.integers(len(rows)))
    size = float(rng.uniform(*scale)) * extent
    canvas = np.zeros(shape, dtype=np.uint8)
    draw_shape(canvas, shapes[int(rng.integers(len(shapes)))], (int(cols[pick]), int(rows[pick])), size, rng)
    return canvas.astype(bool)
