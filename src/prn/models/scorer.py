"""From anomaly logits to what a user consumes: a probability map and an image score."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from prn.metrics.image_score import top_k_mean


def anomaly_maps(net: nn.Module, images: Tensor) -> Tensor:
    """``[B,1,H,W]`` maps in ``[0, 1]``: the sigmoid of the network's logits."""
    return torch.sigmoid(net(images))


def anomaly_maps_and_scores(net: nn.Module, images: Tensor, top_k: int) -> tuple[Tensor, Tensor]:
    """Maps and ``[B]`` scores = mean of the top-k pixels (paper Sec. 3.5)."""
    maps = anomaly_maps(net, images)
    return maps, top_k_mean(maps, top_k)


class AnomalyScorer(nn.Module):
    """PRNet plus sigmoid and top-k scoring as one module: what ``prn.tools.export`` exports."""

    def __init__(self, net: nn.Module, top_k: int = 100) -> None:
        super().__init__()
        self.net = net
        self.top_k = top_k

    def forward(self, images: Tensor) -> tuple[Tensor, Tensor]:
        return anomaly_maps_and_scores(self.net, images, self.top_k)
