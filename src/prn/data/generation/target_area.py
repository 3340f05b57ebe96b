"""Random target areas (TA, Sec. 3.4): where a generated anomaly may land.

A target area is a circle, rectangle or random polygon centred on a random *allowed*
pixel (the object's foreground for object categories, the whole image for textures)
and intersected with the allowed region, so anomalies stay "part of the foreground".
Its size is ``scale`` times the extent of the allowed region (the larger side of its
bounding box), so small objects get proportionally small target areas.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import cv2
import numpy as np

logger = logging.getLogger(__name__)

TARGET_SHAPES = ("circle", "rectangle", "polygon")
DEFAULT_TARGET_SCALE = (0.25, 1.0)
MAX_AREA_ATTEMPTS = 50
POLYGON_VERTICES = (3, 9)


def _extent(allowed: np.ndarray) -> int:
    """Larger side of the allowed region's bounding box, in pixels."""
    rows, cols = np.nonzero(allowed)
    return int(max(rows.max() - rows.min(), cols.max() - cols.min()) + 1)


def _draw_circle(canvas: np.ndarray, centre: tuple[int, int], size: float, rng: np.random.Generator) -> None:
    cv2.circle(canvas, centre, max(1, int(round(size / 2))), 1, thickness=-1)


def _draw_rectangle(canvas: np.ndarray, centre: tuple[int, int], size: float, rng: np.random.Generator) -> None:
    """An axis-aligned rectangle of random aspect ratio whose longer side is ``size``."""
    half_w, half_h = size / 2 * rng.uniform(0.4, 1.0, size=2)
    x, y = centre
    top_left = (int(round(x - half_w)), int(round(y - half_h)))
    bottom_right = (int(round(x + half_w)), int(round(y + half_h)))
    cv2.rectangle(canvas, top_left, bottom_right, 1, thickness=-1)


def _draw_polygon(canvas: np.ndarray, centre: tuple[int, int], size: float, rng: np.random.Generator) -> None:
    """A star-shaped polygon: vertices at sorted random angles and random radii around ``centre``."""
    count = int(rng.integers(POLYGON_VERTICES[0], POLYGON_VERTICES[1] + 1))
    angles = np.sort(rng.uniform(0.0, 2.0 * np.pi, size=count))
    radii = size / 2 * rng.uniform(0.5, 1.0, size=count)
    points = np.stack([centre[0] + radii * np.cos(angles), centre[1] + radii * np.sin(angles)], axis=1)
    cv2.fillPoly(canvas, [np.round(points).astype(np.int32)], 1)


_DRAWERS = {"circle": _draw_circle, "rectangle": _draw_rectangle, "polygon": _draw_polygon}


def draw_shape(canvas: np.ndarray, name: str, centre: tuple[int, int], size: float, rng: np.random.Generator) -> None:
    """Fill one of :data:`TARGET_SHAPES` of diameter / longer side ``size`` around ``centre`` (x, y) with 1s."""
    if name not in _DRAWERS:
        raise ValueError(f"shape {name!r} must be one of {TARGET_SHAPES}")
    _DRAWERS[name](canvas, centre, size, rng)


def _validate(
    shape: tuple[int, int], allowed: np.ndarray | None, shapes: Sequence[str], scale: tuple[float, float]
) -> None:
    unknown = [name for name in shapes if name not in _DRAWERS]
    if not shapes or unknown:
        raise ValueError(f"target area shapes must be a non-empty subset of {TARGET_SHAPES}, got {tuple(shapes)}")
    if not 0.0 < scale[0] <= scale[1]:
        raise ValueError(f"target area scale must satisfy 0 < low <= high, got {scale}")
    if allowed is not None:
        if allowed.shape != tuple(shape):
            raise ValueError(f"target area: allowed mask has shape {allowed.shape}, image shape is {tuple(shape)}")
        if not allowed.any():
            raise ValueError(
                "target area: the allowed (foreground) mask is empty; fix the foreground masks or turn target areas off"
            )


def random_target_area(
    shape: tuple[int, int],
    rng: np.random.Generator,
    allowed: np.ndarray | None = None,
    shapes: Sequence[str] = TARGET_SHAPES,
    scale: tuple[float, float] = DEFAULT_TARGET_SCALE,
) -> np.ndarray:
    """A non-empty ``bool`` mask: a random shape from ``shapes`` clipped to ``allowed`` (None = whole image).

    ``scale`` bounds the shape's diameter / longer side as a fraction of the allowed
    region's extent. Redraws when the clipped shape is empty; after
    ``MAX_AREA_ATTEMPTS`` misses it returns ``allowed`` itself (logged).
    """
    _validate(shape, allowed, shapes, scale)
    region = np.ones(shape, dtype=bool) if allowed is None else allowed.astype(bool)
    rows, cols = np.nonzero(region)
    extent = _extent(region)
    for _ in range(MAX_AREA_ATTEMPTS):
        pick = int(rng.integers(len(rows)))
        centre = (int(cols[pick]), int(rows[pick]))
        size = float(rng.uniform(*scale)) * extent
        canvas = np.zeros(shape, dtype=np.uint8)
        draw_shape(canvas, shapes[int(rng.integers(len(shapes)))], centre, size, rng)
        area = canvas.astype(bool) & region
        if area.any():
            return area
    logger.warning("random_target_area: %d empty draws; using the whole allowed region", MAX_AREA_ATTEMPTS)
    return region.copy()
