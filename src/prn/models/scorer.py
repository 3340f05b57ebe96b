"""From anomaly logits to what a user consumes: a probability map and an image score.

With patch memory, the map may also fuse the network's probability with the memory's own
distance map (late fusion): ``(1 - w) sigmoid(logits) + w m``, where ``m = 1 - exp(-(d - 1)+)``
turns the distance (1 = as normal as the training set) into [0, 1]. The network sees the distance
as an input (``ResidualMixer``) but learned to use it weakly on short schedules; the weight ``w``
is chosen on held-out data (:mod:`prn.score_selection`), 0 (the network alone) by default.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from torchvision.transforms.functional import gaussian_blur

from prn.metrics.image_score import top_k_mean


def anomaly_maps(net: nn.Module, images: Tensor, memory_weight: float = 0.0) -> Tensor:
    """``[B,1,H,W]`` maps in ``[0, 1]``: the sigmoid of the network's logits, fused with the memory's map by ``memory_weight``."""
    if memory_weight == 0:
        return torch.sigmoid(net(images))
    return fused_maps(*map_components(net, images), memory_weight)


def fused_maps(network_maps: Tensor, memory_maps: Tensor | None, memory_weight: float) -> Tensor:
    """Late fusion ``(1 - w) network + w memory``; with ``w = 0`` the network's maps as they are (memory may be None)."""
    if memory_weight == 0:
        return network_maps
    return (1.0 - memory_weight) * network_maps + memory_weight * memory_maps


def map_components(net: nn.Module, images: Tensor) -> tuple[Tensor, Tensor]:
    """The network's ``[B, 1, H, W]`` probability map and the patch memory's, from one forward pass."""
    logits, distance = net.forward_with_distance(images)
    if distance is None:
        raise ValueError(
            "memory_weight > 0 fuses the patch memory's map: the network needs prototypes.patch_memory=true"
        )
    return torch.sigmoid(logits), memory_map(distance, logits.shape[-2:])


def memory_map(distance: Tensor, size: tuple[int, int] | torch.Size) -> Tensor:
    """The patch memory's distance (1 = a typical normal patch) as a ``[0, 1]`` map at image ``size``."""
    upsampled = nn.functional.interpolate(distance.float(), size=tuple(size), mode="bilinear", align_corners=False)
    return 1.0 - torch.exp(-torch.relu(upsampled - 1.0))


def smooth_maps(maps: Tensor, sigma: float) -> Tensor:
    """``[B, 1, H, W]`` maps blurred by a Gaussian of ``sigma`` pixels (4 sigma each side); sigma 0 returns them as they are."""
    if sigma <= 0:
        return maps
    radius = math.ceil(4 * sigma)
    return gaussian_blur(maps, kernel_size=[2 * radius + 1] * 2, sigma=[float(sigma)] * 2)


def anomaly_maps_and_scores(
    net: nn.Module, images: Tensor, top_k: int, map_sigma: float = 0.0, memory_weight: float = 0.0
) -> tuple[Tensor, Tensor]:
    """Maps (blurred by ``map_sigma``; 0, the paper: not) and ``[B]`` scores = mean of their top-k pixels (paper Sec. 3.5)."""
    maps = smooth_maps(anomaly_maps(net, images, memory_weight), map_sigma)
    return maps, top_k_mean(maps, top_k)


class AnomalyScorer(nn.Module):
    """PRNet plus sigmoid, map smoothing and top-k scoring as one module: what ``prn.tools.export`` exports."""

    def __init__(self, net: nn.Module, top_k: int = 100, map_sigma: float = 0.0, memory_weight: float = 0.0) -> None:
        super().__init__()
        self.net = net
        self.top_k = top_k
        self.map_sigma = map_sigma
        self.memory_weight = memory_weight

    def forward(self, images: Tensor) -> tuple[Tensor, Tensor]:
        return anomaly_maps_and_scores(self.net, images, self.top_k, self.map_sigma, self.memory_weight)
