"""DRAEM's Perlin noise and blob masks as batched torch operations, on whatever device the batch lives on.

The same distributions as :mod:`prn.data.generation.perlin` (the CPU path, numpy): lattice
resolution an independent power of two in ``[1, 32]`` per axis, quintic fade, gradient angles
uniform, the field rotated by up to ±90° about the centre (uncovered corners 0), thresholded at
0.5, redrawn where a mask came out empty. Every image of the batch draws its own resolution,
angles and rotation; one pass per distinct resolution pair, so a batch of 64 costs a few kernels,
not 64 Python loops. ``tests/data/device`` compares mask areas and field statistics with the numpy path.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

MAX_SCALE_EXPONENT = 5  # as the CPU path: 2**0 .. 2**5 cells per axis
MAX_REDRAWS = 100


def _fade(t: Tensor) -> Tensor:
    return t * t * t * (t * (t * 6.0 - 15.0) + 10.0)


def perlin_noise(
    count: int, shape: tuple[int, int], resolution: tuple[int, int], generator: torch.Generator, device: torch.device
) -> Tensor:
    """``[count, h, w]`` gradient noise with ``resolution`` lattice cells per axis, angles drawn uniformly."""
    cells_y, cells_x = resolution
    angles = torch.rand(count, cells_y + 1, cells_x + 1, generator=generator, device=device) * (2.0 * math.pi)
    return noise_from_angles(angles, shape)


def noise_from_angles(angles: Tensor, shape: tuple[int, int]) -> Tensor:
    """``[count, h, w]`` noise from ``[count, cells_y + 1, cells_x + 1]`` lattice gradient angles (the numpy path's formula)."""
    height, width = shape
    cells_y, cells_x = angles.shape[1] - 1, angles.shape[2] - 1
    device = angles.device
    gradient_x, gradient_y = torch.cos(angles), torch.sin(angles)
    coord_y = torch.arange(height, device=device, dtype=torch.float32) * cells_y / height
    coord_x = torch.arange(width, device=device, dtype=torch.float32) * cells_x / width
    cell_y, cell_x = coord_y.long()[:, None], coord_x.long()[None, :]
    frac_y, frac_x = coord_y[:, None] - cell_y, coord_x[None, :] - cell_x

    def corner_dot(offset_y: int, offset_x: int) -> Tensor:
        rows, cols = (cell_y + offset_y).expand(height, width), (cell_x + offset_x).expand(height, width)
        gx, gy = gradient_x[:, rows, cols], gradient_y[:, rows, cols]
        return gx * (frac_x - offset_x) + gy * (frac_y - offset_y)

    weight_y, weight_x = _fade(frac_y), _fade(frac_x)
    top_left, top_right = corner_dot(0, 0), corner_dot(0, 1)
    bottom_left, bottom_right = corner_dot(1, 0), corner_dot(1, 1)
    top = top_left + weight_x * (top_right - top_left)
    bottom = bottom_left + weight_x * (bottom_right - bottom_left)
    return math.sqrt(2.0) * (top + weight_y * (bottom - top))


def rotate_fields(fields: Tensor, degrees: Tensor) -> Tensor:
    """``[B, h, w]`` fields rotated about their centres by ``degrees`` each, bilinear, zeros outside (as cv2.warpAffine)."""
    batch, height, width = fields.shape
    radians = degrees.to(fields) * (math.pi / 180.0)
    cos, sin = torch.cos(radians), torch.sin(radians)
    # affine_grid maps output to input in normalised coordinates; the aspect ratio keeps the rotation rigid
    aspect = width / height
    theta = torch.zeros(batch, 2, 3, device=fields.device, dtype=fields.dtype)
    theta[:, 0, 0], theta[:, 0, 1] = cos, sin / aspect
    theta[:, 1, 0], theta[:, 1, 1] = -sin * aspect, cos
    grid = F.affine_grid(theta, [batch, 1, height, width], align_corners=False)
    return F.grid_sample(fields[:, None], grid, mode="bilinear", padding_mode="zeros", align_corners=False)[:, 0]


def perlin_fields(
    count: int, shape: tuple[int, int], generator: torch.Generator, device: torch.device, rotate: bool = True
) -> Tensor:
    """``[count, h, w]`` DRAEM fields: each its own power-of-two resolution and, with ``rotate``, its own ±90° turn."""
    exponents = torch.randint(0, MAX_SCALE_EXPONENT + 1, (count, 2), generator=generator, device=device).cpu()
    fields = torch.empty(count, *shape, device=device)
    for pair in torch.unique(exponents, dim=0):
        members = (exponents == pair).all(dim=1).nonzero()[:, 0].to(device)
        resolution = (2 ** int(pair[0]), 2 ** int(pair[1]))
        fields[members] = perlin_noise(len(members), shape, resolution, generator, device)
    if rotate:
        degrees = torch.rand(count, generator=generator, device=device) * 180.0 - 90.0
        fields = rotate_fields(fields, degrees)
    return fields


def perlin_masks(
    count: int,
    shape: tuple[int, int],
    generator: torch.Generator,
    device: torch.device,
    threshold: float = 0.5,
    rotate: bool = True,
) -> Tensor:
    """``[count, h, w]`` non-empty boolean blob masks; empty draws are redrawn, as the CPU path does."""
    if not 0.0 <= threshold < 1.0:
        raise ValueError(f"perlin_masks threshold must lie in [0, 1), got {threshold}")
    masks = perlin_fields(count, shape, generator, device, rotate) > threshold
    for _ in range(MAX_REDRAWS):
        empty = (~masks.flatten(1).any(dim=1)).nonzero()[:, 0]
        if len(empty) == 0:
            return masks
        masks[empty] = perlin_fields(len(empty), shape, generator, device, rotate) > threshold
    raise RuntimeError(f"perlin_masks found no pixel above threshold={threshold} in {MAX_REDRAWS} draws")
