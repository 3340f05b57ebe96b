"""The device Perlin path draws from the CPU path's distributions: field statistics and mask areas agree."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from prn.data.device.perlin import noise_from_angles, perlin_fields, perlin_masks, perlin_noise, rotate_fields
from prn.data.generation.perlin import perlin_field, perlin_mask
from prn.data.generation.perlin import perlin_noise as numpy_perlin_noise

SHAPE = (64, 96)
DRAWS = 400


def test_the_same_lattice_angles_give_the_numpy_formulas_noise():
    numpy_field = numpy_perlin_noise(SHAPE, (4, 8), np.random.default_rng(0))
    angles = np.random.default_rng(0).uniform(0.0, 2.0 * np.pi, size=(5, 9))  # the draw numpy_perlin_noise made
    torch_field = noise_from_angles(torch.from_numpy(angles).float()[None], SHAPE)[0]
    np.testing.assert_allclose(torch_field.numpy(), numpy_field, atol=1e-5)
    noise = perlin_noise(3, SHAPE, (4, 8), torch.Generator().manual_seed(0), torch.device("cpu"))
    assert noise.shape == (3, *SHAPE) and noise.abs().max() < 1.0


def test_fields_and_mask_areas_match_the_cpu_paths_distribution():
    generator = torch.Generator().manual_seed(1)
    rng = np.random.default_rng(1)
    torch_fields = perlin_fields(DRAWS, SHAPE, generator, torch.device("cpu")).numpy()
    numpy_fields = np.stack([perlin_field(SHAPE, rng) for _ in range(DRAWS)])
    for statistic in (np.mean, np.std):
        assert statistic(torch_fields) == pytest.approx(statistic(numpy_fields), abs=0.02)
    torch_areas = perlin_masks(DRAWS, SHAPE, generator, torch.device("cpu")).float().mean(dim=(1, 2)).numpy()
    numpy_areas = np.array([perlin_mask(SHAPE, rng).mean() for _ in range(DRAWS)])
    assert (torch_areas > 0).all()  # empty draws are redrawn, as on the CPU
    for q in (0.25, 0.5, 0.75, 0.9):
        assert np.quantile(torch_areas, q) == pytest.approx(np.quantile(numpy_areas, q), abs=0.03)


def test_rotation_turns_about_the_centre_and_zeros_the_corners():
    field = torch.zeros(1, 33, 33)
    field[0, 16, 16:] = 1.0  # a bar from the centre to the right edge
    turned = rotate_fields(field, torch.tensor([90.0]))[0]
    assert turned[16, 16] > 0.9 and turned[16, 28] < 0.1  # centre kept, the bar left the row ...
    column = turned[:, 16]
    assert column[:14].max() > 0.9 or column[19:].max() > 0.9  # ... for the column
    assert rotate_fields(torch.ones(1, 32, 32), torch.tensor([45.0]))[0, 0, 0] == 0.0


def test_masks_are_seeded_and_per_image():
    a = perlin_masks(8, SHAPE, torch.Generator().manual_seed(3), torch.device("cpu"))
    b = perlin_masks(8, SHAPE, torch.Generator().manual_seed(3), torch.device("cpu"))
    assert torch.equal(a, b) and not torch.equal(a[0], a[1])
