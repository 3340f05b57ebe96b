"""The PrototypeBank: residuals per match mode, leave-self-out, state dicts; patch banks."""

from __future__ import annotations

import pytest
import torch

from prn.models.coreset import build_patch_banks
from prn.models.prototype_search import (
    nearest_in_window,
    nearest_prototype_indices,
    nearest_prototype_per_location,
    nearest_whole_maps,
    patch_vectors,
)
from prn.models.prototypes import PrototypeBank, PrototypeFitting, prototype_sources


def test_nearest_index_is_true_nearest_across_chunks() -> None:
    torch.manual_seed(0)
    prototypes = torch.randn(150, 32)
    features = torch.randn(9, 32)
    brute = torch.cdist(features, prototypes).argmin(1)
    assert torch.equal(nearest_prototype_indices(features, prototypes, chunk=16), brute)


def _fitted_bank() -> PrototypeBank:
    bank = PrototypeBank(num_scales=2)
    scale1 = torch.stack([torch.zeros(2, 2, 2), torch.full((2, 2, 2), 4.0), torch.full((2, 2, 2), -4.0)])
    scale2 = torch.stack([torch.full((1, 2, 2), 1.0), torch.full((1, 2, 2), -1.0)])
    bank.set_prototypes([scale1, scale2])
    return bank


def test_residual_uses_nearest_prototype_per_scale_independently() -> None:
    bank = _fitted_bank()
    # Whole-map L2 picks prototype 1 (value 4) although some elements are nearer 0.
    features1 = torch.full((1, 2, 2, 2), 3.0)
    features1[0, 0, 0, 0] = 1.0
    features2 = torch.full((1, 1, 2, 2), -0.8)  # nearest at scale 2: the -1 prototype
    residual1, residual2 = bank.residuals([features1, features2])
    assert torch.allclose(residual1, (features1 - 4.0).abs())
    assert torch.allclose(residual2, torch.full((1, 1, 2, 2), 0.2))


def test_residuals_before_fitting_explain_the_fix() -> None:
    with pytest.raises(RuntimeError, match="PrototypeCallback.*set_prototypes"):
        PrototypeBank().residuals([torch.rand(1, 1, 2, 2)] * 3)


def test_residual_shape_mismatch_mentions_image_size() -> None:
    with pytest.raises(ValueError, match="image_size"):
        _fitted_bank().residuals([torch.rand(1, 2, 4, 4), torch.rand(1, 1, 2, 2)])


def test_state_dict_round_trip_into_empty_bank() -> None:
    bank = _fitted_bank()
    fresh = PrototypeBank(num_scales=2)
    assert not fresh.is_fitted
    fresh.load_state_dict(bank.state_dict())
    assert fresh.is_fitted
    assert all(torch.equal(a, b) for a, b in zip(fresh.prototypes(), bank.prototypes()))


def test_state_dict_round_trip_inside_a_parent_module() -> None:
    parent = torch.nn.Sequential(torch.nn.Identity(), _fitted_bank())
    fresh = torch.nn.Sequential(torch.nn.Identity(), PrototypeBank(num_scales=2))
    fresh.load_state_dict(parent.state_dict())
    assert fresh[1].prototypes_1.shape == (3, 2, 2, 2)


def test_patch_banks_are_location_vectors_sized_by_ratio_and_cap() -> None:
    maps = [torch.rand(4, 8, 16, 16), torch.rand(4, 16, 8, 8)]
    banks, sources = build_patch_banks(maps, ratio=0.25, max_size=200, seed=0)
    assert [tuple(b.shape) for b in banks] == [(200, 8), (64, 16)]
    vectors = patch_vectors(maps[1])
    assert all(any(torch.equal(row, v) for v in vectors) for row in banks[1][:5]), "bank rows are real normal locations"
    for maps_j, bank, source in zip(maps, banks, sources):
        assert source.shape == (bank.shape[0],) and set(source.tolist()) <= set(range(4))
        own_locations = maps_j.permute(0, 2, 3, 1)[source].flatten(
            1, 2
        )  # [M, h*w, c]: every location of the source image
        assert all((own == row).all(1).any() for own, row in zip(own_locations, bank)), (
            "each vector is a location of its source"
        )


def test_patch_bank_sources_survive_the_candidate_subsample() -> None:
    maps = [torch.rand(6, 4, 8, 8, generator=torch.Generator().manual_seed(5))]
    banks, sources = build_patch_banks(maps, ratio=0.1, max_candidates=50, seed=1)
    own_locations = maps[0].permute(0, 2, 3, 1)[sources[0]].flatten(1, 2)
    assert all((own == row).all(1).any() for own, row in zip(own_locations, banks[0]))


def test_patch_match_forgives_a_shift_that_image_match_does_not() -> None:
    normal = torch.rand(1, 8, 16, 16, generator=torch.Generator().manual_seed(3))
    shifted = torch.roll(normal, shifts=(3, 5), dims=(2, 3))
    image_bank, patch_bank = PrototypeBank(1, "image"), PrototypeBank(1, "patch")
    image_bank.set_prototypes([normal])
    patch_bank.set_prototypes([patch_vectors(normal)])
    assert patch_bank.residuals([shifted])[0].abs().max() == 0
    assert image_bank.residuals([shifted])[0].abs().mean() > 0.2
    defect = shifted.clone()
    defect[..., 4, 4] += 5.0
    residual = patch_bank.residuals([defect])[0].abs().sum(1)[0]
    assert residual[4, 4] > 4.0 and residual.flatten().topk(2).values[1] == 0, "only the defect location stands out"


def test_location_match_is_the_nearest_prototype_at_each_location() -> None:
    generator = torch.Generator().manual_seed(4)
    features, prototypes = torch.rand(3, 5, 4, 6, generator=generator), torch.rand(7, 5, 4, 6, generator=generator)
    brute_force = (features[:, None] - prototypes[None]).pow(2).sum(2).argmin(1)  # [B, h, w]
    assert torch.equal(nearest_prototype_per_location(features, prototypes), brute_force)
    bank = PrototypeBank(1, "location")
    bank.set_prototypes([prototypes])
    chosen = torch.stack(
        [prototypes[brute_force[b], :, torch.arange(4)[:, None], torch.arange(6)] for b in range(3)]
    )  # [B, h, w, c]
    assert torch.allclose(bank.residuals([features])[0], (features - chosen.permute(0, 3, 1, 2)).abs())
    bank.set_prototypes([features[:1].clone()])  # new prototypes: the cached location-major copy must not be reused
    assert bank.residuals([features[:1]])[0].max() == 0


def test_location_match_takes_each_half_of_a_part_from_the_normal_image_that_fits_it() -> None:
    left_posed, right_posed = torch.zeros(1, 2, 4, 8), torch.zeros(1, 2, 4, 8)
    left_posed[:, 0, :, :4], right_posed[:, 1, :, 4:] = 1.0, 1.0
    both = left_posed + right_posed  # a pose no single normal image shows
    image_bank, location_bank = PrototypeBank(1, "image"), PrototypeBank(1, "location")
    for bank in (image_bank, location_bank):
        bank.set_prototypes([torch.cat([left_posed, right_posed])])
    assert location_bank.residuals([both])[0].max() == 0
    assert image_bank.residuals([both])[0].sum() == 16, "a whole map leaves one half unexplained"


@pytest.mark.parametrize("radius", [1, 2])
def test_window_search_is_the_nearest_vector_within_the_window(radius: int) -> None:
    generator = torch.Generator().manual_seed(7)
    features, candidates = torch.rand(2, 3, 5, 6, generator=generator), torch.rand(2, 4, 3, 5, 6, generator=generator)
    chosen = nearest_in_window(features, candidates, radius)
    for b in range(2):
        for y in range(5):
            for x in range(6):
                window = candidates[b, :, :, max(0, y - radius) : y + radius + 1, max(0, x - radius) : x + radius + 1]
                vectors = window.permute(0, 2, 3, 1).reshape(-1, 3)
                expected = vectors[(vectors - features[b, :, y, x]).pow(2).sum(1).argmin()]
                assert torch.allclose(chosen[b, :, y, x], expected)


def test_nearest_whole_maps_skips_the_forbidden_ones() -> None:
    prototypes = torch.arange(5.0)[:, None, None, None].expand(5, 1, 2, 2)
    features = torch.full((2, 1, 2, 2), 1.2)
    assert nearest_whole_maps(features, prototypes, 2).tolist() == [[1, 2], [1, 2]]
    forbidden = torch.tensor([[False, True, False, False, False], [False] * 5])
    assert nearest_whole_maps(features, prototypes, 2, forbidden).tolist() == [[2, 0], [1, 2]]


def test_location_window_forgives_a_shift_of_a_cell_that_location_match_does_not() -> None:
    normal = torch.zeros(1, 2, 8, 8)
    normal[:, 0, 2:5, 2:4] = 1.0  # a part
    shifted = torch.roll(normal, shifts=(1, 1), dims=(2, 3))
    plain, windowed = PrototypeBank(1, "location"), PrototypeBank(1, "location", window=1, candidates=1)
    for bank in (plain, windowed):
        bank.set_prototypes([normal])
    assert windowed.residuals([shifted])[0].max() == 0
    assert plain.residuals([shifted])[0].sum() > 0
    assert windowed.window_radius(1) == 1 and PrototypeBank(3, "location", window=4).window_radius(3) == 1


def test_location_window_needs_location_match() -> None:
    with pytest.raises(
        ValueError, match="prototypes.window=2 must be >= 0, and > 0 only with prototypes.match=location"
    ):
        PrototypeBank(1, "image", window=2)


def test_prototype_sources_name_images_only_without_clustering() -> None:
    assert prototype_sources(5, 1.0).tolist() == [0, 1, 2, 3, 4]
    assert prototype_sources(30, 0.1).tolist() == [-1, -1, -1], "a k-means centroid mixes several images"


@pytest.mark.parametrize("match", ["image", "location", "patch"])
def test_leave_self_out_matches_the_other_normal_images_only(match: str) -> None:
    """A training sample built on normal image i must not find image i itself among the prototypes."""
    generator = torch.Generator().manual_seed(6)
    normals = torch.rand(4, 3, 4, 4, generator=generator)
    bank = PrototypeBank(1, match)
    if match == "patch":
        bank.set_prototypes([patch_vectors(normals)], [torch.arange(4).repeat_interleave(16)])
    else:
        bank.set_prototypes([normals], [prototype_sources(4, 1.0)])
    assert bank.residuals([normals])[0].max() == 0, "without exclusion every normal matches itself exactly"
    own = bank.residuals([normals], exclude=torch.tensor([0, 1, 2, 3]))[0]
    assert (own.sum((1, 2, 3)) > 0).all()
    others = PrototypeBank(1, match)  # the same search with image 2 really removed from the bank
    if match == "patch":
        others.set_prototypes([patch_vectors(normals[[0, 1, 3]])])
    else:
        others.set_prototypes([normals[[0, 1, 3]]])
    assert torch.equal(own[2:3], others.residuals([normals[2:3]])[0])
    untouched = bank.residuals([normals], exclude=torch.tensor([-1, -1, 0, -1]))[0]
    assert untouched[[0, 1, 3]].max() == 0 and untouched[2].max() == 0, (
        "-1 excludes nothing; excluding 0 leaves image 2 its own"
    )


def test_centroids_are_never_excluded() -> None:
    bank = PrototypeBank(1, "image")
    bank.set_prototypes([torch.zeros(2, 1, 2, 2)])  # no sources: centroids (-1)
    assert bank.sources()[0].tolist() == [-1, -1]
    assert bank.residuals([torch.zeros(2, 1, 2, 2)], exclude=torch.tensor([0, -1]))[0].max() == 0


def test_checkpoint_without_sources_loads_as_centroids() -> None:
    state = {key: value for key, value in _fitted_bank().state_dict().items() if not key.startswith("sources_")}
    fresh = PrototypeBank(num_scales=2)
    fresh.load_state_dict(state)
    assert [s.tolist() for s in fresh.sources()] == [[-1, -1, -1], [-1, -1]]


def test_sources_must_have_one_entry_per_prototype() -> None:
    with pytest.raises(ValueError, match="sources_1 must have one entry per prototype"):
        PrototypeBank(1, "image").set_prototypes([torch.rand(3, 1, 2, 2)], [torch.arange(2)])


def test_bank_shapes_are_checked_for_the_match_mode() -> None:
    with pytest.raises(ValueError, match=r"\[M, c\]"):
        PrototypeBank(1, "patch").set_prototypes([torch.rand(2, 8, 4, 4)])
    with pytest.raises(ValueError, match=r"prototypes.match=.pixel. must be one of"):
        PrototypeBank(1, "pixel")


def test_nearest_prototype_is_chosen_in_float32_under_bf16_autocast() -> None:
    """bf16 rounds the f.p of wide maps by more than the gaps between prototypes (trainer.precision=bf16-mixed)."""
    generator = torch.Generator().manual_seed(0)
    base = torch.rand(1, 65536, generator=generator)
    prototypes = base + 0.01 * torch.randn(8, 65536, generator=generator)
    queries = prototypes[[3, 5, 0, 6]] + 0.001 * torch.randn(4, 65536, generator=generator)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        chosen = nearest_prototype_indices(queries, prototypes)
    assert chosen.tolist() == [3, 5, 0, 6]


def test_a_bank_fits_itself_as_its_match_needs() -> None:
    generator = torch.Generator().manual_seed(0)
    maps = [torch.randn(10, 4, 4, 4, generator=generator), torch.randn(10, 8, 2, 2, generator=generator)]
    image = PrototypeBank(num_scales=2)
    assert not image.fit(maps, PrototypeFitting(ratio=0.2, iterations=5))  # faiss on the CPU
    assert [tuple(p.shape) for p in image.prototypes()] == [(2, 4, 4, 4), (2, 8, 2, 2)]
    assert all((s == -1).all() for s in image.sources())  # centroids: never excluded
    every = PrototypeBank(num_scales=2, match="location")
    every.fit(maps, PrototypeFitting(ratio=1.0, kmeans_backend="torch"))
    assert torch.equal(every.prototypes()[0], maps[0]) and every.sources()[1].tolist() == list(range(10))
    patch = PrototypeBank(num_scales=2, match="patch")
    patch.fit(maps, PrototypeFitting(patch_ratio=0.1))
    assert [tuple(p.shape) for p in patch.prototypes()] == [(16, 4), (4, 8)]
    assert all(((s >= 0) & (s < 10)).all() for s in patch.sources())
    with pytest.raises(ValueError, match="prototypes.ratio"):
        PrototypeFitting(ratio=0.0)
