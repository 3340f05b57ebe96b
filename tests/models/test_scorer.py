"""The scorer's late fusion: the patch memory's map joins the network's by a weight, from one forward pass."""

from __future__ import annotations

import pytest
import torch
from tiny_model import tiny_module

from prn.models.scorer import AnomalyScorer, anomaly_maps, map_components, memory_map


def test_the_memory_map_is_zero_on_typical_normal_patches_and_rises_towards_one():
    distance = torch.tensor([[[[0.5, 1.0], [2.0, 9.0]]]])
    mapped = memory_map(distance, (2, 2))
    assert mapped[0, 0, 0, 0] == mapped[0, 0, 0, 1] == 0.0
    assert 0.6 < mapped[0, 0, 1, 0] < 0.7 and mapped[0, 0, 1, 1] > 0.999
    assert memory_map(distance, (8, 8)).shape == (1, 1, 8, 8)


@pytest.fixture(scope="module")
def memory_net():
    return tiny_module((128, 128), prototype_match="location", location_window=2, patch_memory=True).net.eval()


@torch.no_grad()
def test_fusion_is_the_weighted_mean_of_the_two_maps_from_one_pass(memory_net):
    images = torch.rand(2, 3, 128, 128, generator=torch.Generator().manual_seed(0))
    network, memory = map_components(memory_net, images)
    assert torch.equal(network, torch.sigmoid(memory_net(images)))
    assert memory.shape == network.shape and memory.max() > 0  # random images are far from the memory somewhere
    fused = anomaly_maps(memory_net, images, memory_weight=0.25)
    torch.testing.assert_close(fused, 0.75 * network + 0.25 * memory)
    assert torch.equal(anomaly_maps(memory_net, images), network)
    maps, scores = AnomalyScorer(memory_net, top_k=10, memory_weight=1.0)(images)
    torch.testing.assert_close(maps, memory)


def test_a_memory_weight_without_patch_memory_names_the_option():
    net = tiny_module((128, 128)).net.eval()
    with pytest.raises(ValueError, match="prototypes.patch_memory=true"):
        anomaly_maps(net, torch.rand(1, 3, 128, 128), memory_weight=0.5)
