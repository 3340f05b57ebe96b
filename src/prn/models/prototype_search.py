"""Nearest-prototype search for the residuals (paper Eq. 1) and its beyond-the-paper variants.

Every search is a squared L2 distance in the expanded form ||f||^2 - 2 f.p + ||p||^2, one matmul per
block, in float32 with autocast off (bf16 rounds f.p by more than the gaps between prototype
distances): whole maps (``nearest_prototype_indices``), per location (``nearest_prototype_per_location``),
within a window of a few cells in the nearest whole maps (``nearest_in_window``), and location vectors
(patch banks). ``forbidden`` masks implement leave-self-out (``excluded_prototypes``).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

DISTANCE_CHUNK = 64  # prototypes compared per matmul; bounds the temporary memory
PATCH_CHUNK = 512  # bank vectors compared per matmul in patch matching (queries x 512 floats)
NO_SOURCE = -1  # a prototype that mixes several normal images (a k-means centroid): never excluded


def patch_vectors(maps: Tensor) -> Tensor:
    """``[N, c, h, w]`` maps as ``[N*h*w, c]`` location vectors."""
    return maps.permute(0, 2, 3, 1).reshape(-1, maps.shape[1])


def excluded_prototypes(exclude: Tensor | None, sources: Tensor) -> Tensor | None:
    """``[B, K]`` True where prototype k came from sample b's own base image (``exclude[b]``, -1: none)."""
    if exclude is None:
        return None
    exclude = exclude.to(sources.device)
    return (sources[None, :] == exclude[:, None]) & (exclude[:, None] != NO_SOURCE)


def nearest_prototype_indices(
    features: Tensor,
    prototypes: Tensor,
    chunk: int = DISTANCE_CHUNK,
    forbidden: Tensor | None = None,
    count: int | None = None,
) -> Tensor:
    """argmin_k ||f - p_k||_2 for flattened [N, D] features vs [K, D] prototypes: ``[N]``, or with
    ``count`` the ``count`` nearest in order, ``[N, count]``.

    ``forbidden`` (``[G, K]``, N = G x r) keeps rows g*r .. g*r + r - 1 from the prototypes
    forbidden in its row g: one row per image, whose r locations follow each other (patch match),
    or r = 1 (whole maps); a row that forbids every prototype gets one of them anyway.

    Uses ||f||^2 - 2 f.p + ||p||^2 (one matmul per chunk of prototypes) instead of
    materialising the N x K x D differences. Always in float32, autocast switched off:
    bf16 rounds f.p by more than the gaps between prototype distances (on MVTec bottle at
    256², K = 12, a bf16 matmul picked another prototype for 10, 10 and 20 of 42 test images
    at scales 1, 2, 3; bf16 features with a float32 matmul picked the same).
    """
    with torch.autocast(features.device.type, enabled=False):
        nearest = _nearest_in_float32(features.float(), prototypes.float(), chunk, forbidden, count or 1)
    return nearest[:, 0] if count is None else nearest


def _nearest_in_float32(
    features: Tensor, prototypes: Tensor, chunk: int, forbidden: Tensor | None, count: int
) -> Tensor:
    rows = features.shape[0]
    best_distance = torch.empty(rows, 0, device=features.device)
    best_index = torch.empty(rows, 0, dtype=torch.long, device=features.device)
    feature_norms = features.pow(2).sum(1, keepdim=True)
    for start in range(0, prototypes.shape[0], chunk):
        block = prototypes[start : start + chunk]
        distances = feature_norms - 2.0 * features @ block.T + block.pow(2).sum(1)[None]
        if forbidden is not None:  # broadcast each image's row over its locations: no [N, K] mask is built
            grouped = distances.view(forbidden.shape[0], -1, block.shape[0])
            distances = grouped.masked_fill(forbidden[:, None, start : start + chunk], float("inf")).view(rows, -1)
        chunk_distance, chunk_index = distances.topk(min(count, block.shape[0]), dim=1, largest=False)
        best_distance, order = torch.cat([best_distance, chunk_distance], 1).topk(
            min(count, best_distance.shape[1] + chunk_distance.shape[1]), dim=1, largest=False
        )
        best_index = torch.cat([best_index, chunk_index + start], 1).gather(1, order)
    return best_index


def location_major(prototypes: Tensor) -> Tensor:
    """``[hw, c, K]`` contiguous copy of ``[K, c, h, w]`` prototypes: one matrix per location for ``bmm``."""
    return prototypes.flatten(2).permute(2, 1, 0).contiguous()


def nearest_prototype_per_location(
    features: Tensor, prototypes: Tensor, keys: Tensor | None = None, forbidden: Tensor | None = None
) -> Tensor:
    """``[B, h, w]`` index of the prototype nearest to ``features`` at each location (float32),
    skipping the ``[B, K]`` ``forbidden`` pairs.

    ||f - p||^2 = ||f||^2 - 2 f.p + ||p||^2 per location; the f.p of all locations is one
    batched matmul over the h*w locations (``keys``: ``location_major(prototypes)``, passed in
    when cached), so no ``[B, K, c, h, w]`` difference is materialised.
    """
    b, c, h, w = features.shape
    keys = location_major(prototypes) if keys is None else keys  # [hw, c, K]
    queries = features.flatten(2).permute(2, 0, 1).contiguous()  # [hw, B, c]
    distances = keys.pow(2).sum(1, keepdim=True) - 2.0 * torch.bmm(
        queries, keys
    )  # [hw, B, K]; ||f||^2 is constant in k
    if forbidden is not None:
        distances = distances.masked_fill(forbidden[None], float("inf"))
    return distances.argmin(2).T.reshape(b, h, w)


def nearest_whole_maps(features: Tensor, prototypes: Tensor, count: int, forbidden: Tensor | None = None) -> Tensor:
    """``[B, count]`` indices of the whole prototype maps nearest to each ``[B, c, h, w]`` map (float32)."""
    return nearest_prototype_indices(features.flatten(1), prototypes.flatten(1), forbidden=forbidden, count=count)


def nearest_in_window(features: Tensor, candidates: Tensor, radius: int) -> Tensor:
    """``[B, c, h, w]``: at each location x, the vector nearest to F(x) among the ``[B, M, c, h, w]``
    candidate maps at every location within ``radius`` cells of x (a square window; the border repeats).

    One pass per window row: the row's ``2 radius + 1`` horizontal offsets are a strided view
    (``unfold``) contracted with the queries in one batched product, so a pass holds a fifth of
    the window's candidates (radius 2), not all of them; ties go to the first offset, then the
    first map. A handful of operations per row instead of per offset keeps exported graphs small
    (torch.export and ONNX trace every operation).
    """
    b, m, c, h, w = candidates.shape
    side = 2 * radius + 1
    padded = nn.functional.pad(candidates.reshape(b, m * c, h, w), (radius,) * 4, mode="replicate")
    padded = padded.view(b, m, c, h + 2 * radius, w + 2 * radius).permute(0, 3, 4, 1, 2).contiguous()  # [B, H, W, M, c]
    norms = padded.pow(2).sum(-1)  # [B, H, W, M]
    queries = features.permute(0, 2, 3, 1)  # [B, h, w, c]
    rows = []
    for dy in range(side):  # each: [B, h, w, side (dx), M] distances up to the constant ||F(x)||^2
        products = torch.einsum("bhwmcs,bhwc->bhwsm", padded[:, dy : dy + h].unfold(2, side, 1), queries)
        rows.append(norms[:, dy : dy + h].unfold(2, side, 1).transpose(3, 4) - 2.0 * products)
    best = torch.stack(rows, 3).flatten(3).argmin(3)  # [B, h, w] over (dy, dx, map)
    offset, best_map = best // m, best % m
    rows_at = torch.arange(h, device=features.device)[None, :, None] + offset // side
    cols_at = torch.arange(w, device=features.device)[None, None, :] + offset % side
    return padded[torch.arange(b, device=features.device)[:, None, None], rows_at, cols_at, best_map].permute(
        0, 3, 1, 2
    )
