"""Greedy k-center coreset (PatchCore's): the patch banks and the patch memory keep rare normal patterns with it."""

from __future__ import annotations

import torch
from torch import Tensor


def greedy_coreset_indices(vectors: Tensor, size: int, seed: int = 0, projection_dim: int = 128) -> Tensor:
    """Indices of ``size`` rows chosen by greedy k-center selection (PatchCore's coreset).

    Each step adds the row farthest from everything chosen so far, so rare normal
    patterns are kept (k-means would average them away and flag them later). Distances
    are taken on a seeded random projection when the rows are wider than ``projection_dim``.
    """
    size = min(size, vectors.shape[0])
    generator = torch.Generator().manual_seed(seed)
    points = vectors.float()
    if points.shape[1] > projection_dim:
        projection = torch.randn(points.shape[1], projection_dim, generator=generator) / projection_dim**0.5
        points = points @ projection.to(points.device)
    chosen = torch.empty(size, dtype=torch.long)
    chosen[0] = int(torch.randint(points.shape[0], (1,), generator=generator))
    norms = points.pow(2).sum(1)

    def squared_distances(index: int) -> Tensor:  # ||p||^2 - 2 p.c + ||c||^2: one mat-vec, no [rows, dim] temporary
        return (norms - 2.0 * (points @ points[index]) + norms[index]).clamp_(min=0.0)

    nearest = squared_distances(int(chosen[0]))
    for step in range(1, size):
        chosen[step] = int(nearest.argmax())
        nearest = torch.minimum(nearest, squared_distances(int(chosen[step])))
    return chosen
