"""Device target areas and shapes draw from the CPU path's distributions, batched and per image."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from prn.data.device.regions import (
    TARGET_SHAPES,
    draw_shapes,
    extents,
    masked_quantiles,
    perlin_masks_within,
    random_pixels,
    target_areas,
)
from prn.data.generation.perlin import perlin_mask_within
from prn.data.generation.target_area import draw_shape, random_target_area

SHAPE = (48, 64)
DRAWS = 300


def _allowed(count: int) -> torch.Tensor:
    allowed = torch.zeros(count, *SHAPE, dtype=torch.bool)
    allowed[:, 8:40, 12:56] = True
    return allowed


@pytest.mark.parametrize("name", TARGET_SHAPES)
@pytest.mark.parametrize("size", [6.0, 24.0])
def test_each_shape_covers_the_cpu_shapes_area(name, size):
    kinds = torch.full((DRAWS,), TARGET_SHAPES.index(name))
    centres = torch.tensor([[24, 32]] * DRAWS)
    areas = draw_shapes(SHAPE, kinds, centres, torch.full((DRAWS,), size), torch.Generator().manual_seed(0))
    rng = np.random.default_rng(0)
    cpu = []
    for _ in range(DRAWS):
        canvas = np.zeros(SHAPE, np.uint8)
        draw_shape(canvas, name, (32, 24), size, rng)
        cpu.append(canvas.mean())
    assert areas.float().mean().item() == pytest.approx(np.mean(cpu), rel=0.08)
    if name != "polygon":  # a polygon with an angular gap over 180 degrees misses its centre, as cv2's does
        assert areas[:, 24, 32].all()


def test_target_areas_lie_in_the_allowed_region_with_the_cpu_area_quantiles():
    allowed = _allowed(DRAWS)
    areas = target_areas(allowed, torch.Generator().manual_seed(1))
    assert areas.flatten(1).any(dim=1).all() and not (areas & ~allowed).any()
    rng = np.random.default_rng(1)
    cpu = np.array([random_target_area(SHAPE, rng, allowed[0].numpy()).mean() for _ in range(DRAWS)])
    device = areas.float().mean(dim=(1, 2)).numpy()
    for q in (0.25, 0.5, 0.75):
        assert np.quantile(device, q) == pytest.approx(np.quantile(cpu, q), abs=0.015)


def test_perlin_blobs_within_cover_the_minimum_fraction_and_match_the_cpu_path():
    allowed = _allowed(DRAWS)
    generator = torch.Generator().manual_seed(2)
    targets = target_areas(allowed, generator)
    blobs = perlin_masks_within(targets, generator, min_fraction=0.3)
    assert not (blobs & ~targets).any()
    kept, area = blobs.flatten(1).sum(1), targets.flatten(1).sum(1)
    assert (kept >= 0.3 * area - 1).all()  # the interpolated quantile may keep one pixel less, as numpy's does
    rng = np.random.default_rng(2)
    cpu = np.array(
        [perlin_mask_within(random_target_area(SHAPE, rng, allowed[0].numpy()), rng).mean() for _ in range(DRAWS)]
    )
    assert blobs.float().mean().item() == pytest.approx(cpu.mean(), rel=0.15)


def test_masked_quantiles_equal_numpys_over_each_region():
    generator = torch.Generator().manual_seed(3)
    values = torch.rand(4, 10, 12, generator=generator)
    regions = torch.rand(4, 10, 12, generator=generator) > 0.6
    quantiles = masked_quantiles(values, regions, 0.7)
    for index in range(4):
        expected = np.quantile(values[index][regions[index]].numpy(), 0.7)
        assert quantiles[index].item() == pytest.approx(expected, abs=1e-6)


def test_random_pixels_follow_the_weights_and_refuse_an_empty_image():
    weights = torch.zeros(2, 5, 5)
    weights[0, 1, 3] = 1.0
    weights[1, 4, 0] = 2.0
    rows, cols = random_pixels(weights, torch.Generator().manual_seed(0))
    assert rows.tolist() == [1, 4] and cols.tolist() == [3, 0]
    with pytest.raises(ValueError, match="empty region"):
        random_pixels(torch.zeros(1, 5, 5), torch.Generator())


def test_extents_are_the_larger_bounding_box_side():
    regions = torch.zeros(2, 20, 30, dtype=torch.bool)
    regions[0, 2:5, 10:27] = True
    regions[1, 0:20, 7] = True
    assert extents(regions).tolist() == [17.0, 20.0]


def test_draws_are_seeded_and_differ_per_image():
    a = target_areas(_allowed(6), torch.Generator().manual_seed(5))
    b = target_areas(_allowed(6), torch.Generator().manual_seed(5))
    assert torch.equal(a, b) and not torch.equal(a[0], a[1])


def test_bad_shapes_and_scales_raise_with_the_cpu_paths_message():
    with pytest.raises(ValueError, match="non-empty subset"):
        target_areas(_allowed(1), torch.Generator(), shapes=("hexagon",))
    with pytest.raises(ValueError, match="0 < low <= high"):
        target_areas(_allowed(1), torch.Generator(), scale=(0.5, 0.2))
    with pytest.raises(ValueError, match="foreground"):
        target_areas(torch.zeros(1, *SHAPE, dtype=torch.bool), torch.Generator())
