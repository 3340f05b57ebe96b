"""Target areas, shapes and Perlin blobs inside them, batched on the training device.

The device twin of :mod:`prn.data.generation.target_area` and ``perlin_mask_within``: a circle,
rectangle or star-shaped polygon of diameter ``U(scale) x extent`` centred on a random allowed
pixel, clipped to the allowed region (an object's foreground, or the whole image); Perlin blobs
inside it whose threshold drops only as far as needed to cover ``min_fraction`` of it. Every image
of a batch draws its own shape, centre and size; shapes are rasterised for the whole batch at once
(distance tests for circles and rectangles, an even-odd crossing test for polygons).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

from prn.data.device.perlin import perlin_fields

TARGET_SHAPES = ("circle", "rectangle", "polygon")  # as the CPU path, same order
DEFAULT_TARGET_SCALE = (0.25, 1.0)
POLYGON_VERTICES = (3, 9)
MAX_AREA_ATTEMPTS = 50
EDGE_REACH = 0.5  # pixels: cv2's outline is one pixel wide


def _uniform(count: int, low: float, high: float, generator: torch.Generator, device: torch.device) -> Tensor:
    return low + (high - low) * torch.rand(count, generator=generator, device=device)


def random_pixels(weights: Tensor, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """One ``(row, col)`` per image of ``[B, H, W]`` non-negative ``weights``, drawn in proportion to them.

    A ``bool`` mask draws uniformly among its ``True`` pixels. Every image needs some positive weight.
    """
    batch, _, width = weights.shape
    flat = weights.reshape(batch, -1).float()
    if (flat.sum(dim=1) <= 0).any():
        raise ValueError("random_pixels: an image has no pixel with positive weight (an empty region)")
    index = torch.multinomial(flat, 1, generator=generator)[:, 0]
    return index // width, index % width


def extents(regions: Tensor) -> Tensor:
    """``[B]`` larger side, in pixels, of each ``[B, H, W]`` region's bounding box (CPU path: ``_extent``)."""

    def span(occupied: Tensor) -> Tensor:  # [B, L] bool -> last - first + 1
        length = occupied.shape[1]
        first = occupied.float().argmax(dim=1)
        last = length - 1 - occupied.flip(1).float().argmax(dim=1)
        return last - first + 1

    return torch.maximum(span(regions.any(dim=2)), span(regions.any(dim=1))).float()


def _grid(shape: tuple[int, int], device: torch.device) -> tuple[Tensor, Tensor]:
    rows = torch.arange(shape[0], device=device, dtype=torch.float32)[None, :, None]
    cols = torch.arange(shape[1], device=device, dtype=torch.float32)[None, None, :]
    return rows, cols


def _circles(shape: tuple[int, int], centres: Tensor, sizes: Tensor) -> Tensor:
    """cv2.circle filled: radius ``max(1, round(size / 2))`` about integer centres."""
    rows, cols = _grid(shape, centres.device)
    radius = torch.clamp(torch.round(sizes / 2), min=1.0)[:, None, None]
    distance = (rows - centres[:, 0, None, None]) ** 2 + (cols - centres[:, 1, None, None]) ** 2
    return distance <= radius**2


def _rectangles(shape: tuple[int, int], centres: Tensor, sizes: Tensor, generator: torch.Generator) -> Tensor:
    """Axis-aligned, half sides ``size/2 x U(0.4, 1)`` each, corners rounded to pixels as the CPU path."""
    rows, cols = _grid(shape, centres.device)
    count = len(sizes)
    half_w = sizes / 2 * _uniform(count, 0.4, 1.0, generator, sizes.device)
    half_h = sizes / 2 * _uniform(count, 0.4, 1.0, generator, sizes.device)
    y, x = centres[:, 0], centres[:, 1]
    top, bottom = torch.round(y - half_h), torch.round(y + half_h)
    left, right = torch.round(x - half_w), torch.round(x + half_w)
    inside_rows = (rows >= top[:, None, None]) & (rows <= bottom[:, None, None])
    inside_cols = (cols >= left[:, None, None]) & (cols <= right[:, None, None])
    return inside_rows & inside_cols


def _polygons(shape: tuple[int, int], centres: Tensor, sizes: Tensor, generator: torch.Generator) -> Tensor:
    """Star-shaped polygons: 3..9 vertices at sorted random angles, radii ``size/2 x U(0.5, 1)``.

    Filled by the even-odd rule over the edges; images with fewer than the most vertices repeat
    their last vertex, whose zero-length edges cross nothing.
    """
    device, count = sizes.device, len(sizes)
    most = POLYGON_VERTICES[1]
    vertex_counts = torch.randint(POLYGON_VERTICES[0], most + 1, (count,), generator=generator, device=device)
    angles = torch.rand(count, most, generator=generator, device=device) * (2 * math.pi)
    used = torch.arange(most, device=device)[None, :] < vertex_counts[:, None]
    angles = torch.where(used, angles, torch.full_like(angles, 4 * math.pi)).sort(dim=1).values  # unused last
    radii = sizes[:, None] / 2 * (0.5 + 0.5 * torch.rand(count, most, generator=generator, device=device))
    last = (vertex_counts - 1)[:, None]
    angles = torch.where(used, angles, angles.gather(1, last))
    radii = torch.where(used, radii, radii.gather(1, last))
    vertex_y = torch.round(centres[:, 0, None] + radii * torch.sin(angles))
    vertex_x = torch.round(centres[:, 1, None] + radii * torch.cos(angles))
    next_y, next_x = vertex_y.roll(-1, dims=1), vertex_x.roll(-1, dims=1)
    rows, cols = _grid(shape, device)
    rows, cols = rows[:, None], cols[:, None]  # [1, 1, H, 1], [1, 1, 1, W] against [B, V, 1, 1]
    y0, x0, y1, x1 = (value[:, :, None, None] for value in (vertex_y, vertex_x, next_y, next_x))
    straddles = (y0 > rows) != (y1 > rows)
    crossing_x = x0 + (x1 - x0) * (rows - y0) / torch.where(y1 == y0, torch.ones_like(y1), y1 - y0)
    crossings = (straddles & (cols < crossing_x)).sum(dim=1)
    filled = crossings % 2 == 1
    return filled | _near_edges(rows, cols, y0, x0, y1, x1)


def _near_edges(rows: Tensor, cols: Tensor, y0: Tensor, x0: Tensor, y1: Tensor, x1: Tensor) -> Tensor:
    """Pixels within ``EDGE_REACH`` of an edge: cv2.fillPoly draws the outline too, a crossing test alone does not."""
    dy, dx = y1 - y0, x1 - x0
    length2 = (dy * dy + dx * dx).clamp(min=1e-6)
    along = (((rows - y0) * dy + (cols - x0) * dx) / length2).clamp(0.0, 1.0)
    distance2 = (rows - y0 - along * dy) ** 2 + (cols - x0 - along * dx) ** 2
    return (distance2 <= EDGE_REACH**2).any(dim=1)


def draw_shapes(
    shape: tuple[int, int], kinds: Tensor, centres: Tensor, sizes: Tensor, generator: torch.Generator
) -> Tensor:
    """``[B, H, W]`` bool: shape ``TARGET_SHAPES[kinds[b]]`` of diameter ``sizes[b]`` around ``centres[b]`` (row, col)."""
    centres = centres.float()
    out = torch.zeros(len(kinds), *shape, dtype=torch.bool, device=centres.device)
    drawers = (
        lambda c, s: _circles(shape, c, s),
        lambda c, s: _rectangles(shape, c, s, generator),
        lambda c, s: _polygons(shape, c, s, generator),
    )
    for code, drawer in enumerate(drawers):
        members = (kinds == code).nonzero()[:, 0]
        if len(members):
            out[members] = drawer(centres[members], sizes[members])
    return out


def shape_codes(names: Sequence[str]) -> Tensor:
    """Indices into :data:`TARGET_SHAPES` of ``names``, with the CPU path's error for an unknown one."""
    unknown = [name for name in names if name not in TARGET_SHAPES]
    if not names or unknown:
        raise ValueError(f"target area shapes must be a non-empty subset of {TARGET_SHAPES}, got {tuple(names)}")
    return torch.tensor([TARGET_SHAPES.index(name) for name in names])


def random_shapes(
    allowed: Tensor,
    generator: torch.Generator,
    shapes: Sequence[str] = TARGET_SHAPES,
    scale: Sequence[float] = DEFAULT_TARGET_SCALE,
    centre_weights: Tensor | None = None,
) -> Tensor:
    """``[B, H, W]`` unclipped random shapes, each centred on a pixel of ``allowed`` (or drawn by ``centre_weights``)."""
    device, count = allowed.device, allowed.shape[0]
    codes = shape_codes(shapes).to(device)
    kinds = codes[torch.randint(len(codes), (count,), generator=generator, device=device)]
    rows, cols = random_pixels(allowed if centre_weights is None else centre_weights, generator)
    sizes = _uniform(count, float(scale[0]), float(scale[1]), generator, device) * extents(allowed)
    return draw_shapes(tuple(allowed.shape[1:]), kinds, torch.stack([rows, cols], dim=1), sizes, generator)


def target_areas(
    allowed: Tensor,
    generator: torch.Generator,
    shapes: Sequence[str] = TARGET_SHAPES,
    scale: Sequence[float] = DEFAULT_TARGET_SCALE,
) -> Tensor:
    """``[B, H, W]`` non-empty target areas: random shapes clipped to ``allowed`` (``[B, H, W]`` bool).

    Empty clips are redrawn; after ``MAX_AREA_ATTEMPTS`` the allowed region itself is used, as on the CPU.
    """
    if not 0.0 < scale[0] <= scale[1]:
        raise ValueError(f"target area scale must satisfy 0 < low <= high, got {tuple(scale)}")
    if not allowed.flatten(1).any(dim=1).all():
        raise ValueError(
            "target area: an allowed (foreground) mask is empty; fix the foreground masks or turn target areas off"
        )
    areas = random_shapes(allowed, generator, shapes, scale) & allowed
    for _ in range(MAX_AREA_ATTEMPTS):
        empty = (~areas.flatten(1).any(dim=1)).nonzero()[:, 0]
        if len(empty) == 0:
            return areas
        areas[empty] = random_shapes(allowed[empty], generator, shapes, scale) & allowed[empty]
    empty = ~areas.flatten(1).any(dim=1)
    areas[empty] = allowed[empty]
    return areas


def masked_quantiles(values: Tensor, regions: Tensor, q: float) -> Tensor:
    """``[B]`` ``q``-quantile of each ``values[b]`` over ``regions[b]`` (linear interpolation, as numpy's)."""
    batch = values.shape[0]
    flat = torch.where(regions, values, torch.full_like(values, float("inf"))).reshape(batch, -1)
    ordered = flat.sort(dim=1).values
    counts = regions.reshape(batch, -1).sum(dim=1)
    position = q * (counts - 1).clamp(min=0).float()
    low, high = position.floor().long(), position.ceil().long()
    fraction = position - low.float()
    low_value, high_value = ordered.gather(1, low[:, None])[:, 0], ordered.gather(1, high[:, None])[:, 0]
    return low_value + fraction * (high_value - low_value)


def perlin_masks_within(
    regions: Tensor,
    generator: torch.Generator,
    threshold: float = 0.5,
    min_fraction: float = 0.3,
    rotate: bool = True,
) -> Tensor:
    """``[B, H, W]`` Perlin blobs inside ``regions`` covering at least ``min_fraction`` of each, one noise draw each.

    The threshold drops to the noise quantile inside the region that keeps ``min_fraction`` of it, only
    where ``threshold`` would keep less (the CPU path's ``perlin_mask_within``).
    """
    if not 0.0 < min_fraction <= 1.0:
        raise ValueError(f"perlin_masks_within min_fraction must lie in (0, 1], got {min_fraction}")
    batch, height, width = regions.shape
    noise = perlin_fields(batch, (height, width), generator, regions.device, rotate)
    level = torch.clamp(masked_quantiles(noise, regions, 1.0 - min_fraction), max=threshold)
    masks = (noise >= level[:, None, None]) & regions
    empty = ~masks.flatten(1).any(dim=1)
    masks[empty] = regions[empty]
    return masks
