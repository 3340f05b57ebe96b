"""Image-level anomaly score from a pixel anomaly map."""

from __future__ import annotations

import torch
from torch import Tensor


def top_k_mean(anomaly_maps: Tensor, k: int = 100) -> Tensor:
    """Mean of the ``k`` highest pixels of each map: (B, ...) -> (B,).

    The PRN paper scores an image by its top-k anomaly pixels rather than the single
    maximum, which is less sensitive to one noisy pixel. ``k`` is clipped to the number
    of pixels per map.
    """
    if anomaly_maps.ndim < 2:
        shape = tuple(anomaly_maps.shape)
        raise ValueError(f"anomaly_maps must be batched, shape (B, H, W) or (B, 1, H, W); got {shape}")
    if k < 1:
        raise ValueError(f"top-k image score needs k >= 1; got k={k}")
    flat = anomaly_maps.reshape(anomaly_maps.shape[0], -1)
    if flat.shape[1] == 0:
        raise ValueError("anomaly_maps have no pixels; cannot compute an image score")
    top_values, _ = torch.topk(flat, min(k, flat.shape[1]), dim=1)
    return top_values.mean(dim=1)
