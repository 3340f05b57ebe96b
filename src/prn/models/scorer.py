"""From anomaly logits to what a user consumes: a probability map and an image score."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from torchvision.transforms.functional import gaussian_blur

from prn.metrics.image_score import top_k_mean


def anomaly_maps(net: nn.Module, images: Tensor) -> Tensor:
    """``[B,1,H,W]`` maps in ``[0, 1]``: the sigmoid of the network's logits."""
    return torch.sigmoid(net(images))


def smooth_maps(maps: Tensor, sigma: float) -> Tensor:
    """``[B, 1, H, W]`` maps blurred by a Gaussian of ``sigma`` pixels (4 sigma each side); sigma 0 returns them as they are."""
    if sigma <= 0:
        return maps
    radius = math.ceil(4 * sigma)
    return gaussian_blur(maps, kernel_size=[2 * radius + 1] * 2, sigma=[float(sigma)] * 2)


def anomaly_maps_and_scores(
    net: nn.Module, images: Tensor, top_k: int, map_sigma: float = 0.0
) -> tuple[Tensor, Tensor]:
    """Maps (blurred by ``map_sigma``; 0, the paper: not) and ``[B]`` scores = mean of their top-k pixels (paper Sec. 3.5)."""
    maps = smooth_maps(anomaly_maps(net, images), map_sigma)
    return maps, top_k_mean(maps, top_k)


class AnomalyScorer(nn.Module):
    """PRNet plus sigmoid, map smoothing and top-k scoring as one module: what ``prn.tools.export`` exports."""

    def __init__(self, net: nn.Module, top_k: int = 100, map_sigma: float = 0.0) -> None:
        super().__init__()
        self.net = net
        self.top_k = top_k
        self.map_sigma = map_sigma

    def forward(self, images: Tensor) -> tuple[Tensor, Tensor]:
        return anomaly_maps_and_scores(self.net, images, self.top_k, self.map_sigma)
