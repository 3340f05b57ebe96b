"""Greedy k-center coreset (PatchCore's): the patch banks and the patch memory keep rare normal patterns with it."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from prn.models.prototype_search import patch_vectors


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


def build_patch_banks(
    feature_maps: Sequence[Tensor],
    ratio: float = 0.01,
    max_size: int = 4096,
    max_candidates: int = 100_000,
    seed: int = 0,
) -> tuple[list[Tensor], list[Tensor]]:
    """Per-scale ``[M, c]`` banks of normal location vectors for ``match="patch"``, and the
    ``[M]`` index of the normal image each vector came from (for leave-self-out).

    M = ratio x (N*h*w), capped at ``max_size``; the coreset is drawn from at most
    ``max_candidates`` locations (a seeded random subset), which bounds the setup time.
    """
    if not 0.0 < ratio <= 1.0:
        raise ValueError(f"patch bank ratio must be in (0, 1] (got {ratio}); PatchCore uses 0.01")
    generator = torch.Generator().manual_seed(seed)
    banks, sources = [], []
    for maps in feature_maps:
        vectors = patch_vectors(maps.float())
        candidates = torch.arange(vectors.shape[0])
        if vectors.shape[0] > max_candidates:
            candidates = torch.randperm(vectors.shape[0], generator=generator)[:max_candidates]
        size = min(max_size, max(1, round(ratio * maps.shape[0] * maps.shape[2] * maps.shape[3])))
        chosen = candidates[greedy_coreset_indices(vectors[candidates], size, seed)]
        banks.append(vectors[chosen].clone())
        sources.append(chosen // (maps.shape[2] * maps.shape[3]))  # patch_vectors lists image by image
    return banks, sources
