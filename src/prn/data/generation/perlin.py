"""2-D Perlin noise and the thresholded blob masks of DRAEM's simulated anomalies.

DRAEM (Zavrtanik et al., ICCV 2021) draws the lattice resolution per axis as a random
power of two in ``[1, 32]``, rotates the noise by up to ±90° and thresholds it at 0.5;
PRN reuses those masks for its simulated anomalies (Sec. 3.4). The noise is computed in
one vectorised pass over the pixel grid rather than per lattice cell.
"""

from __future__ import annotations

import cv2
import numpy as np

MAX_SCALE_EXPONENT = 5
"""Lattice resolutions are ``2**0 .. 2**5`` cells per axis, as DRAEM's ``perlin_scale=6``."""

MAX_MASK_ATTEMPTS = 100


def _fade(t: np.ndarray) -> np.ndarray:
    """Perlin's quintic ease curve, which keeps the noise C2-continuous across cells."""
    return t * t * t * (t * (t * 6.0 - 15.0) + 10.0)


def perlin_noise(shape: tuple[int, int], resolution: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """Gradient noise of ``shape`` with ``resolution`` lattice cells per axis, values ≈ [-0.7, 0.7].

    Any ``shape`` works: the lattice is laid over the image, so sizes need not divide
    evenly by the resolution (DRAEM's version requires that).
    """
    height, width = shape
    cells_y, cells_x = resolution
    if height < 1 or width < 1 or cells_y < 1 or cells_x < 1:
        raise ValueError(
            f"perlin_noise needs positive shape and resolution, got shape={shape}, resolution={resolution}"
        )
    angles = rng.uniform(0.0, 2.0 * np.pi, size=(cells_y + 1, cells_x + 1))
    gradient_x, gradient_y = np.cos(angles).astype(np.float32), np.sin(angles).astype(np.float32)

    coord_y = np.arange(height, dtype=np.float32) * cells_y / height
    coord_x = np.arange(width, dtype=np.float32) * cells_x / width
    cell_y, cell_x = coord_y.astype(int)[:, None], coord_x.astype(int)[None, :]
    frac_y, frac_x = coord_y[:, None] - cell_y, coord_x[None, :] - cell_x

    def corner_dot(offset_y: int, offset_x: int) -> np.ndarray:
        rows, cols = cell_y + offset_y, cell_x + offset_x
        return gradient_x[rows, cols] * (frac_x - offset_x) + gradient_y[rows, cols] * (frac_y - offset_y)

    weight_y, weight_x = _fade(frac_y), _fade(frac_x)
    top_left, top_right = corner_dot(0, 0), corner_dot(0, 1)
    bottom_left, bottom_right = corner_dot(1, 0), corner_dot(1, 1)
    top = top_left + weight_x * (top_right - top_left)
    bottom = bottom_left + weight_x * (bottom_right - bottom_left)
    return (np.float32(np.sqrt(2.0)) * (top + weight_y * (bottom - top))).astype(np.float32)


def random_perlin_resolution(rng: np.random.Generator) -> tuple[int, int]:
    """DRAEM's scale draw: an independent power of two per axis."""
    exponents = rng.integers(0, MAX_SCALE_EXPONENT + 1, size=2)
    return int(2 ** exponents[0]), int(2 ** exponents[1])


def _rotate(noise: np.ndarray, angle_degrees: float) -> np.ndarray:
    """Rotate about the centre; the uncovered corners become 0, i.e. below any positive threshold."""
    height, width = noise.shape
    matrix = cv2.getRotationMatrix2D((width / 2.0, height / 2.0), angle_degrees, 1.0)
    return cv2.warpAffine(
        noise, matrix, (width, height), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0.0
    )


def perlin_field(shape: tuple[int, int], rng: np.random.Generator, rotate: bool = True) -> np.ndarray:
    """DRAEM's noise before thresholding: random power-of-two resolution, optionally ±90°-rotated."""
    noise = perlin_noise(shape, random_perlin_resolution(rng), rng)
    return _rotate(noise, float(rng.uniform(-90.0, 90.0))) if rotate else noise


def perlin_mask(
    shape: tuple[int, int],
    rng: np.random.Generator,
    threshold: float = 0.5,
    rotate: bool = True,
) -> np.ndarray:
    """A non-empty ``bool`` blob mask: thresholded, optionally ±90°-rotated Perlin noise.

    Redraws the noise until some pixel passes ``threshold`` (DRAEM's draw is empty now
    and then, which would make an "anomaly" without any anomalous pixel).
    """
    if not 0.0 <= threshold < 1.0:
        raise ValueError(f"perlin_mask threshold must lie in [0, 1), got {threshold}")
    for _ in range(MAX_MASK_ATTEMPTS):
        mask = perlin_field(shape, rng, rotate) > threshold
        if mask.any():
            return mask
    raise RuntimeError(
        f"perlin_mask found no pixel above threshold={threshold} in {MAX_MASK_ATTEMPTS} draws; lower the threshold"
    )


def perlin_mask_within(
    region: np.ndarray,
    rng: np.random.Generator,
    threshold: float = 0.5,
    min_fraction: float = 0.3,
    rotate: bool = True,
) -> np.ndarray:
    """Perlin blobs inside ``region`` covering at least ``min_fraction`` of it, from one noise draw.

    Clipping DRAEM's blobs to a small region usually leaves slivers or nothing, and
    redrawing until they fit costs many noise draws. Instead the threshold is lowered,
    only as far as needed, to the noise quantile inside ``region`` that keeps
    ``min_fraction`` of it: the blobs keep their Perlin shape and just grow.
    """
    if not region.any():
        raise ValueError("perlin_mask_within needs a non-empty region")
    if not 0.0 < min_fraction <= 1.0:
        raise ValueError(f"perlin_mask_within min_fraction must lie in (0, 1], got {min_fraction}")
    noise = perlin_field(region.shape, rng, rotate)
    inside = noise[region]
    level = min(threshold, float(np.quantile(inside, 1.0 - min_fraction)))
    mask = (noise >= level) & region
    return mask if mask.any() else region.copy()
