"""Score selection on held-out data: the (sigma, k) that separates generated anomalies from normals best."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from prn.metrics.ranking import auroc
from prn.models.scorer import smooth_maps
from prn.score_selection import FUSED_CHOICE, PAPER_CHOICE, ScoreChoice, choose_score, pixel_sample, weighted_aurocs


def _maps_with_defects(
    defect_pixels: int, noise_peak: float, count: int = 8, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Normals with one bright noise pixel each and anomalies with a ``defect_pixels``-wide defect of 0.9."""
    generator = torch.Generator().manual_seed(seed)
    maps = torch.rand(2 * count, 1, 64, 64, generator=generator) * 0.1
    masks = torch.zeros_like(maps)
    for index in range(count):
        maps[index, 0, 5 + index, 9] = noise_peak  # a normal's single hot pixel
        row = 20 + 2 * index
        masks[count + index, 0, row : row + defect_pixels, 30 : 30 + defect_pixels] = 1
    maps = torch.where(masks > 0, torch.full_like(maps, 0.9), maps)
    return maps, masks, torch.tensor([0] * count + [1] * count)


def test_blur_keeps_the_mean_and_spreads_a_peak() -> None:
    maps = torch.zeros(1, 1, 33, 33)
    maps[0, 0, 16, 16] = 1.0
    blurred = smooth_maps(maps, 2.0)
    assert blurred.sum() == pytest.approx(1.0, abs=1e-3) and blurred.max() < 0.05
    assert smooth_maps(maps, 0.0) is maps


def test_hot_single_pixels_in_normals_push_the_choice_off_the_maximum() -> None:
    maps, masks, labels = _maps_with_defects(defect_pixels=6, noise_peak=0.95)
    choice = choose_score(maps, masks, labels, sigmas=(0.0,), top_ks=(1, 10))
    assert (choice.map_sigma, choice.top_k) == (0.0, 10)  # k=1 ranks the normals' hot pixels above the defects
    assert choice.val_image_auroc == 1.0 and choice.num_normals == choice.num_anomalies == 8
    by_k = {c["top_k"]: c["image_auroc"] for c in choice.candidates}
    assert by_k[1] == 0.0


def test_ties_keep_the_papers_score() -> None:
    maps, masks, labels = _maps_with_defects(defect_pixels=12, noise_peak=0.05)
    choice = choose_score(maps, masks, labels)
    assert (choice.map_sigma, choice.top_k) == (0.0, 100)
    assert len(choice.candidates) == 16


def test_a_choice_survives_its_dictionary() -> None:
    maps, masks, labels = _maps_with_defects(defect_pixels=6, noise_peak=0.5)
    choice = choose_score(maps, masks, labels, sigmas=(0.0, 2.0), top_ks=(10, 100))
    assert ScoreChoice.from_dict(json.loads(json.dumps(choice.to_dict()))) == choice  # as results.json keeps it


def test_one_class_only_names_what_is_missing() -> None:
    maps, masks, _ = _maps_with_defects(defect_pixels=6, noise_peak=0.5)
    with pytest.raises(ValueError, match="val_normals > 0"):
        choose_score(maps, masks, torch.zeros(16, dtype=torch.long))


def test_the_memory_weight_is_chosen_where_the_memory_separates_better() -> None:
    network, masks, labels = _maps_with_defects(defect_pixels=6, noise_peak=0.95)  # k=1 fails on the network alone
    memory = torch.where(
        masks > 0, torch.full_like(masks, 0.6), torch.full_like(masks, 0.1)
    )  # the memory has no hot pixels
    weights = (0.0, 0.5, 1.0)
    choice = choose_score(
        network, masks, labels, sigmas=(0.0,), top_ks=(1,), memory_maps=memory, memory_weights=weights
    )
    assert choice.memory_weight > 0 and choice.val_image_auroc == 1.0
    alone = [c for c in choice.candidates if c["memory_weight"] == 0.0]
    assert alone[0]["image_auroc"] == 0.0 and len(choice.candidates) == 3


def test_the_memory_never_weighs_less_than_the_prior_gives_it_however_well_the_network_alone_does() -> None:
    network, masks, labels = _maps_with_defects(defect_pixels=12, noise_peak=0.05)  # the network alone is perfect
    noise = torch.rand(network.shape, generator=torch.Generator().manual_seed(1))  # the memory sees nothing
    choice = choose_score(network, masks, labels, memory_maps=noise, confidence=0)  # the point-best, no prior
    assert {c["memory_weight"] for c in choice.candidates} == {0.5, 0.75, 1.0}
    assert choice.memory_weight == FUSED_CHOICE[2]


def test_without_memory_maps_the_network_alone_is_scored_and_ties_keep_it() -> None:
    maps, masks, labels = _maps_with_defects(defect_pixels=12, noise_peak=0.05)
    alone = choose_score(maps, masks, labels)
    assert {c["memory_weight"] for c in alone.candidates} == {0.0} and alone.prior == PAPER_CHOICE


def test_with_memory_maps_the_fused_prior_stands_where_nothing_beats_it() -> None:
    maps, masks, labels = _maps_with_defects(defect_pixels=12, noise_peak=0.05)
    same = choose_score(maps, masks, labels, memory_maps=maps.clone(), sigmas=(4.0,), top_ks=(100,))
    assert same.prior == FUSED_CHOICE == (same.map_sigma, same.top_k, same.memory_weight)  # every weight ties


def test_a_clear_winner_replaces_the_papers_score_with_its_evidence() -> None:
    count, generator = 8, torch.Generator().manual_seed(0)
    maps = torch.rand(2 * count, 1, 64, 64, generator=generator) * 0.1
    masks = torch.zeros_like(maps)
    maps[:count, 0, 40:50, 40:50] = 0.5  # every normal has a dim 100-pixel region: the top-100 mean ranks it first
    masks[count:, 0, 10:12, 10:12] = 1
    maps = torch.where(masks > 0, torch.full_like(maps, 0.9), maps)  # anomalies: a bright 4-pixel defect
    labels = torch.tensor([0] * count + [1] * count)
    choice = choose_score(maps, masks, labels, sigmas=(0.0,))
    paper = next(c for c in choice.candidates if c["top_k"] == 100)
    assert paper["image_auroc"] == 0.0 and choice.top_k in (1, 10) and choice.win_rate == 1.0


def test_noise_keeps_the_papers_score_where_the_point_best_would_move() -> None:
    labels = torch.tensor([0] * 10 + [1] * 10)
    maps = torch.rand(20, 1, 72, 72, generator=torch.Generator().manual_seed(3))  # no signal anywhere
    masks = torch.zeros_like(maps)
    masks[10:, 0, 8:16, 8:16] = 1
    point_best = choose_score(maps, masks, labels, confidence=0)
    assert (point_best.map_sigma, point_best.top_k) != (0.0, 100)  # a chance winner
    evidence = choose_score(maps, masks, labels)
    assert (evidence.map_sigma, evidence.top_k, evidence.memory_weight) == (0.0, 100, 0.0)
    assert evidence.win_rate is None


def test_weighted_aurocs_count_each_sample_as_often_as_its_weight() -> None:
    rng = np.random.default_rng(0)
    scores, labels = rng.random(300).round(2), rng.integers(0, 2, 300)  # rounded: ties count half
    weights = rng.integers(0, 3, (2, 300)).astype(np.float32)
    for row in range(2):
        repeated = np.repeat(np.arange(300), weights[row].astype(int))
        assert weighted_aurocs(scores, labels, weights)[row] == pytest.approx(auroc(scores[repeated], labels[repeated]))
    groups = np.repeat(np.arange(30), 10)  # pixels weighted by their image's multiplicity
    image_weights = rng.integers(0, 3, (1, 30)).astype(np.float32)
    repeated = np.repeat(np.arange(300), image_weights[0, groups].astype(int))
    assert weighted_aurocs(scores, labels, image_weights, groups=groups)[0] == pytest.approx(
        auroc(scores[repeated], labels[repeated])
    )


def test_each_generated_anomaly_weighs_the_same_in_the_pixel_auroc() -> None:
    """One large blob that a blur helps must not outvote many thin defects that the blur erases."""
    count, generator = 8, torch.Generator().manual_seed(0)
    maps = torch.rand(2 * count + 1, 1, 64, 64, generator=generator) * 0.2
    masks = torch.zeros_like(maps)
    for index in range(count):  # thin defects: one bright column, 16 pixels each
        masks[count + index, 0, 10:26, 20 + 3 * index] = 1
    masks[-1, 0, 8:56, 8:56] = 1  # one blob of 2304 pixels, dim and speckled: only a blur lifts it evenly
    maps = torch.where(masks[:, :, :, :] > 0, torch.full_like(maps, 0.9), maps)
    maps[-1] = torch.where(masks[-1] > 0, torch.rand(1, 64, 64, generator=generator) * 0.45, maps[-1])
    labels = torch.tensor([0] * count + [1] * (count + 1))
    choice = choose_score(maps, masks, labels, sigmas=(0.0, 8.0), top_ks=(1,), confidence=0)
    by_sigma = {c["map_sigma"]: c["pixel_auroc"] for c in choice.candidates}
    assert by_sigma[0.0] > by_sigma[8.0] and choice.map_sigma == 0.0
    pooled = {
        sigma: auroc(smooth_maps(maps, sigma).flatten().numpy(), masks.flatten().numpy() > 0.5) for sigma in (0.0, 8.0)
    }
    assert pooled[8.0] > pooled[0.0]  # pooled pixels would have chosen the blur


def test_the_pixel_sample_gives_every_anomalous_image_a_total_weight_of_one() -> None:
    masks = torch.zeros(3, 1, 32, 32)
    masks[1, 0, :2, :2], masks[2, 0, 4:20, 4:20] = 1, 1
    sample = pixel_sample(masks, seed=0)
    positive = sample.labels == 1
    totals = np.bincount(sample.images[positive], weights=sample.weights[positive], minlength=3)
    assert totals == pytest.approx([0.0, 1.0, 1.0]) and (sample.weights[~positive] == 1).all()
