"""Patch memory: PatchCore descriptors, coreset, leave-self-out distances, and PRNet's use of them."""

from __future__ import annotations

import pytest
import torch

from prn.models import PRNet, build_prototypes
from prn.models.patch_memory import (
    PatchMemory,
    build_patch_memory,
    median_normal_distance,
    nearest_memory_distances,
    patch_descriptors,
)


def _maps(batch: int = 2, seed: int = 0) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return [torch.rand(batch, c, 32 // s, 32 // s, generator=generator) for c, s in ((4, 1), (6, 2), (8, 4))]


def test_descriptors_sit_on_the_first_layers_grid_with_every_layers_channels() -> None:
    descriptors = patch_descriptors(_maps(), (2, 3))
    assert descriptors.shape == (2, 6 + 8, 16, 16)


def test_descriptors_average_a_3x3_neighbourhood() -> None:
    maps = [
        torch.zeros(1, 1, 8, 8),
        torch.zeros(1, 1, 8, 8).index_put_(
            (torch.tensor([0]), torch.tensor([0]), torch.tensor([4]), torch.tensor([4])), torch.tensor(9.0)
        ),
    ]
    descriptors = patch_descriptors(maps, (2,))
    assert descriptors[0, 0, 3:6, 3:6].eq(1.0).all() and descriptors[0, 0, 0, 0] == 0


def test_descriptors_count_the_zero_padding_at_the_border_as_patchcore_does() -> None:
    maps = [torch.ones(1, 1, 8, 8), torch.ones(1, 1, 8, 8)]
    descriptors = patch_descriptors(maps, (2,))
    assert descriptors[0, 0, 0, 0] == pytest.approx(4 / 9) and descriptors[0, 0, 0, 4] == pytest.approx(6 / 9)
    assert descriptors[0, 0, 4, 4] == 1.0


def test_memory_keeps_every_location_at_ratio_one_and_records_its_image() -> None:
    descriptors = patch_descriptors(_maps(3), (2, 3))
    memory, sources = build_patch_memory(descriptors, ratio=1.0, max_size=10**6)
    assert memory.shape == (3 * 16 * 16, 14)
    assert sources.tolist() == [i for i in range(3) for _ in range(256)]
    assert torch.equal(memory[300], descriptors[1, :, (300 - 256) // 16, (300 - 256) % 16])


def test_coreset_memory_is_capped_and_its_sources_point_at_the_right_image() -> None:
    descriptors = patch_descriptors(_maps(3), (2, 3))
    memory, sources = build_patch_memory(descriptors, ratio=0.5, max_size=40, seed=1)
    assert memory.shape == (40, 14)
    flat = descriptors.permute(0, 2, 3, 1).reshape(3, -1, 14)
    for vector, source in zip(memory, sources):
        assert (flat[source] - vector).abs().sum(1).min() == 0


def test_a_normal_is_at_distance_zero_from_itself_unless_it_is_left_out() -> None:
    descriptors = patch_descriptors(_maps(3), (2, 3))
    memory, sources = build_patch_memory(descriptors, ratio=1.0, max_size=10**6)
    module = PatchMemory((2, 3))
    module.set_memory(memory, sources)
    assert module(_maps(3)).abs().max() == 0
    left_out = module(_maps(3), exclude=torch.tensor([0, 1, 2]))
    assert left_out.shape == (3, 1, 16, 16) and (left_out > 0).all()


def test_distances_are_exact_nearest_neighbours() -> None:
    queries = torch.randn(2, 5, 4, 4)
    memory = torch.randn(30, 5)
    brute = torch.cdist(queries.permute(0, 2, 3, 1).reshape(-1, 5), memory).min(1).values.view(2, 1, 4, 4)
    assert torch.allclose(nearest_memory_distances(queries, memory), brute, atol=1e-4)


def test_median_normal_distance_is_the_left_out_median() -> None:
    descriptors = patch_descriptors(_maps(3), (2, 3))
    memory, sources = build_patch_memory(descriptors, ratio=1.0, max_size=10**6)
    module = PatchMemory((2, 3))
    module.set_memory(memory, sources)
    expected = module(_maps(3), exclude=torch.tensor([0, 1, 2])).median()
    assert median_normal_distance(descriptors, memory, sources, sample=10**6) == pytest.approx(
        float(expected), rel=1e-4
    )


def test_bad_layers_and_empty_memory_say_what_to_do() -> None:
    with pytest.raises(ValueError, match="memory_layers"):
        PatchMemory((4,))
    with pytest.raises(RuntimeError, match="PrototypeCallback"):
        PatchMemory()(_maps())


MEMORY_NET = {
    "encoder_weights": None,
    "msa_depth": 1,
    "prototype_match": "location",
    "location_window": 1,
    "location_candidates": 2,
    "patch_memory": True,
}


def _net_with_memory() -> PRNet:
    torch.manual_seed(0)
    net = PRNet(**MEMORY_NET)
    features = net.prototype_features(torch.rand(3, 3, 128, 128))
    net.set_prototypes(build_prototypes(features, ratio=1.0), [torch.arange(3)] * 3)
    descriptors = net.patch_memory.descriptors(features)
    memory, sources = build_patch_memory(descriptors, ratio=0.5)
    net.patch_memory.set_memory(memory, sources, median_normal_distance(descriptors, memory, sources))
    return net


def test_prnet_starts_as_plain_prn_and_learns_from_the_distance() -> None:
    net = _net_with_memory().train()
    images = torch.rand(2, 3, 128, 128)
    logits = net(images, exclude=torch.tensor([0, 1]))
    assert logits.shape == (2, 1, 128, 128)
    logits.mean().backward()
    mixer = net.residual_mixers[1].mix
    assert mixer.weight.grad[:, -1].abs().sum() > 0  # the distance channel gets a gradient
    assert torch.equal(mixer.weight[:, :-1, 0, 0], torch.eye(128))


def test_memory_travels_with_the_state_dict() -> None:
    net = _net_with_memory().eval()
    restored = PRNet(**MEMORY_NET).eval()
    restored.load_state_dict(net.state_dict())
    images = torch.rand(1, 3, 128, 128)
    with torch.no_grad():
        assert torch.allclose(net(images), restored(images))


def test_patch_memory_needs_the_prototype_residual() -> None:
    with pytest.raises(ValueError, match="use_mp=true"):
        PRNet(encoder_weights=None, use_mp=False, patch_memory=True)


def test_mixer_is_the_identity_on_a_typical_normal_distance_and_scales_the_rest_by_its_gain() -> None:
    from prn.models.prn import ResidualMixer

    mixer = ResidualMixer(4)
    residual = torch.rand(2, 4, 8, 8)
    assert torch.allclose(mixer(residual, torch.ones(2, 1, 4, 4)), residual)
    with torch.no_grad():
        mixer.mix.weight[:, -1] = 0.01
    shifted = mixer(residual, torch.full((2, 1, 8, 8), 3.0))
    assert torch.allclose(shifted - residual, torch.full_like(residual, 0.01 * ResidualMixer.DISTANCE_GAIN * 2.0))
