"""Greedy k-center coreset: distinct rows, outliers kept, better coverage than a random pick."""

from __future__ import annotations

import torch

from prn.models.coreset import greedy_coreset_indices


def test_greedy_coreset_picks_distinct_rows_and_keeps_the_outlier() -> None:
    points = torch.cat(
        [torch.randn(200, 4, generator=torch.Generator().manual_seed(0)) * 0.1, torch.full((1, 4), 50.0)]
    )
    chosen = greedy_coreset_indices(points, 5, seed=1)
    assert len(set(chosen.tolist())) == 5
    assert 200 in chosen.tolist(), "k-center keeps the rare far-away pattern that k-means would average away"


def test_greedy_coreset_covers_the_points_better_than_random() -> None:
    points = torch.rand(500, 6, generator=torch.Generator().manual_seed(2))

    def coverage(indices: torch.Tensor) -> float:
        return float(torch.cdist(points, points[indices]).min(1).values.max())

    random_pick = torch.randperm(500, generator=torch.Generator().manual_seed(2))[:25]
    assert coverage(greedy_coreset_indices(points, 25, seed=2)) < coverage(random_pick)
