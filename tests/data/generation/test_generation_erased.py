"""Erased anomalies: a piece of the part inpainted away, the mask exactly what changed."""

from __future__ import annotations

import numpy as np
import pytest
from generation_helpers import part_with_leads

from prn.data.generation import SimulatedAnomalySource
from prn.data.generation.erased import ErasedAnomalySource, changed_pixels


def test_erasing_removes_bright_structure_and_labels_only_what_changed() -> None:
    image, foreground = part_with_leads()
    source = ErasedAnomalySource(structure_fraction=1.0)
    erased, mask = source(image, foreground, np.random.default_rng(3))
    assert erased.dtype == np.uint8 and erased.shape == image.shape
    assert mask.dtype == np.float32 and set(np.unique(mask)) <= {0.0, 1.0} and mask.sum() >= 16
    labelled = mask.astype(bool)
    assert np.array_equal(erased[~labelled], image[~labelled])  # nothing changes outside the label
    assert erased[labelled].mean() < image[labelled].mean() - 40  # bright part pixels became board-like


def test_erasing_a_flat_image_finds_nothing_to_remove_and_returns_it_unchanged() -> None:
    image = np.full((64, 64, 3), 128, dtype=np.uint8)
    erased, mask = ErasedAnomalySource()(image, None, np.random.default_rng(0))
    assert mask.sum() == 0 and np.array_equal(erased, image)


def test_same_seed_same_sample() -> None:
    image, foreground = part_with_leads()
    first = ErasedAnomalySource()(image, foreground, np.random.default_rng(7))
    second = ErasedAnomalySource()(image, foreground, np.random.default_rng(7))
    assert np.array_equal(first[0], second[0]) and np.array_equal(first[1], second[1])


def test_structure_draws_land_on_the_parts_edges_not_its_flat_inside() -> None:
    image, foreground = part_with_leads()
    flat_inside = np.zeros_like(foreground)
    flat_inside[26:44, 31:64] = True  # the body, away from its outline
    source = ErasedAnomalySource(scale=(0.05, 0.1), structure_fraction=1.0)
    masks = [source(image, foreground, np.random.default_rng(seed))[1] > 0 for seed in range(12)]
    assert all(mask.sum() > 0 for mask in masks)
    assert sum(bool(mask[flat_inside].any()) and not mask[~flat_inside].any() for mask in masks) <= 1


def test_changed_pixels_ignores_pixels_outside_the_region() -> None:
    before = np.zeros((32, 32, 3), dtype=np.uint8)
    after = before.copy()
    after[:, :16] = 200
    region = np.zeros((32, 32), dtype=bool)
    region[8:24, 8:24] = True
    changed = changed_pixels(before, after, region)
    assert not changed[~region].any() and changed[10:22, 10:14].all() and not changed[10:22, 20:24].any()


def test_bad_options_name_themselves() -> None:
    with pytest.raises(ValueError, match="erase scale"):
        ErasedAnomalySource(scale=(0.3, 0.1))
    with pytest.raises(ValueError, match="structure_fraction"):
        ErasedAnomalySource(structure_fraction=2.0)


def test_simulated_source_counts_erased_samples(generation_pool) -> None:
    source = SimulatedAnomalySource(generation_pool, use_heterologous=False, use_homologous=False, use_erase=True)
    rng = np.random.default_rng(0)
    for _ in range(4):
        image, mask = source(generation_pool.normals[0], rng)
        assert image.shape == generation_pool.normals[0].image.shape and mask.shape == image.shape[:2]
    assert source.usage == {"erase": 4}
