import dataclasses

import numpy as np
import pytest

from prn.data.generation.extended import ExtendedAnomalySource, _shift_onto
from prn.data.types import NormalImage

SEEDS = range(25)


def _samples(source, pool, seeds=SEEDS):
    for seed in seeds:
        rng = np.random.default_rng(seed)
        base = pool.normals[seed % len(pool.normals)]
        yield base, source(base, rng)


def test_output_types_and_non_empty_binary_mask(generation_pool):
    for base, (image, mask) in _samples(ExtendedAnomalySource(generation_pool), generation_pool):
        assert image.dtype == np.uint8 and image.shape == base.image.shape
        assert mask.dtype == np.float32 and mask.shape == base.image.shape[:2]
        assert mask.any() and set(np.unique(mask)) <= {0.0, 1.0}


def test_only_masked_pixels_change_and_most_samples_change_visibly(generation_pool):
    changed = 0
    for base, (image, mask) in _samples(ExtendedAnomalySource(generation_pool), generation_pool):
        outside = mask == 0
        assert np.array_equal(image[outside], base.image[outside])
        difference = np.abs(image.astype(int) - base.image.astype(int)).sum(axis=2)
        changed += (difference[mask > 0] > 30).mean() > 0.5
    assert changed >= 0.7 * len(SEEDS)


def test_target_area_keeps_anomalies_on_the_foreground(generation_pool):
    source = ExtendedAnomalySource(generation_pool, use_target_area=True, shift=(-0.5, 0.5))
    for base, (_, mask) in _samples(source, generation_pool):
        assert not (mask.astype(bool) & ~base.foreground).any()


def test_without_target_area_anomalies_may_leave_the_foreground(generation_pool):
    source = ExtendedAnomalySource(generation_pool, use_target_area=False, shift=(-0.5, 0.5))
    outside = [(mask.astype(bool) & ~base.foreground).any() for base, (_, mask) in _samples(source, generation_pool)]
    assert any(outside)


def test_same_seed_same_sample(generation_pool):
    source = ExtendedAnomalySource(generation_pool)
    base = generation_pool.normals[0]
    first = source(base, np.random.default_rng(7))
    second = source(base, np.random.default_rng(7))
    other = source(base, np.random.default_rng(8))
    assert np.array_equal(first[0], second[0]) and np.array_equal(first[1], second[1])
    assert not np.array_equal(first[0], other[0])


def test_tiny_target_area_is_still_hit_by_the_fallback_shift(generation_pool):
    foreground = np.zeros((64, 64), bool)
    foreground[2, 60] = True  # a single pixel far from every seen anomaly
    base = NormalImage(generation_pool.normals[0].image, foreground)
    source = ExtendedAnomalySource(
        generation_pool, shift=(0.0, 0.0), rotate=(0, 0), shear=(0, 0), max_placement_tries=2
    )
    image, mask = source(base, np.random.default_rng(0))
    assert mask[2, 60] == 1.0 and mask.sum() == 1.0


def test_shift_onto_always_overlaps():
    rng = np.random.default_rng(0)
    image = np.zeros((32, 32, 3), np.uint8)
    region = np.zeros((32, 32), bool)
    region[0:3, 0:3] = True
    target = np.zeros((32, 32), bool)
    target[25:30, 20:31] = True
    for _ in range(20):
        _, moved = _shift_onto(image, region, target, rng)
        assert (moved & target).any()


def test_no_seen_anomalies_names_the_option(generation_pool):
    empty = dataclasses.replace(generation_pool, seen_images=[], seen_masks=[])
    with pytest.raises(ValueError, match="num_seen_anomalies"):
        ExtendedAnomalySource(empty)


def test_bad_beta_is_rejected(generation_pool):
    with pytest.raises(ValueError, match="beta"):
        ExtendedAnomalySource(generation_pool, beta=(0.6, 0.2))
