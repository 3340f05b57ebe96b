import numpy as np
import pytest

from prn.data.generation.perlin import (
    perlin_field,
    perlin_mask,
    perlin_mask_within,
    perlin_noise,
    random_perlin_resolution,
)


def test_noise_has_requested_shape_for_sizes_not_divisible_by_resolution():
    noise = perlin_noise((50, 70), (4, 8), np.random.default_rng(0))
    assert noise.shape == (50, 70) and noise.dtype == np.float32
    assert np.abs(noise).max() <= 1.0 and noise.std() > 0.05


def test_noise_vanishes_on_lattice_points():
    noise = perlin_noise((64, 64), (4, 4), np.random.default_rng(0))
    assert np.allclose(noise[::16, ::16], 0.0, atol=1e-6)


def test_noise_is_smooth_between_neighbouring_pixels():
    noise = perlin_noise((128, 128), (2, 2), np.random.default_rng(0))
    assert np.abs(np.diff(noise, axis=0)).max() < 0.1
    assert np.abs(np.diff(noise, axis=1)).max() < 0.1


def test_resolutions_are_powers_of_two_up_to_32():
    rng = np.random.default_rng(0)
    drawn = {value for _ in range(200) for value in random_perlin_resolution(rng)}
    assert drawn == {1, 2, 4, 8, 16, 32}


@pytest.mark.parametrize("rotate", [True, False])
def test_mask_is_non_empty_boolean_and_reproducible(rotate):
    for seed in range(20):
        mask = perlin_mask((64, 96), np.random.default_rng(seed), rotate=rotate)
        assert mask.dtype == bool and mask.shape == (64, 96) and mask.any()
        assert np.array_equal(mask, perlin_mask((64, 96), np.random.default_rng(seed), rotate=rotate))
    assert not np.array_equal(
        perlin_mask((64, 64), np.random.default_rng(1)), perlin_mask((64, 64), np.random.default_rng(2))
    )


def test_higher_threshold_gives_smaller_masks():
    low = np.mean([perlin_mask((64, 64), np.random.default_rng(s), threshold=0.2).mean() for s in range(20)])
    high = np.mean([perlin_mask((64, 64), np.random.default_rng(s), threshold=0.5).mean() for s in range(20)])
    assert high < low


def test_invalid_threshold_is_rejected():
    with pytest.raises(ValueError, match="threshold"):
        perlin_mask((32, 32), np.random.default_rng(0), threshold=1.5)


def test_mask_within_region_stays_inside_and_covers_the_minimum():
    region = np.zeros((64, 64), bool)
    region[40:56, 5:20] = True
    for seed in range(20):
        mask = perlin_mask_within(region, np.random.default_rng(seed), min_fraction=0.3)
        assert not (mask & ~region).any()
        assert mask.sum() >= 0.3 * region.sum()
        assert np.array_equal(mask, perlin_mask_within(region, np.random.default_rng(seed), min_fraction=0.3))


def test_mask_within_keeps_the_threshold_when_blobs_already_cover_enough():
    region = np.ones((64, 64), bool)
    plain = perlin_field((64, 64), np.random.default_rng(4)) > 0.2
    assert plain.mean() >= 0.01
    within = perlin_mask_within(region, np.random.default_rng(4), threshold=0.2, min_fraction=0.01)
    assert np.array_equal(within, plain)
