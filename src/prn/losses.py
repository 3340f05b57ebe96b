"""PRN's training objective (paper Eq. 5): SmoothL1 + λ·focal on the sigmoid map.

SmoothL1 keeps the map close to the mask without over-reacting to outliers; the focal
term (α = 0.5, γ = 4) concentrates learning on the few hard, mostly anomalous pixels.
Both are computed from logits so that saturated predictions stay numerically stable.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def binary_focal_loss(
    logits: torch.Tensor, target: torch.Tensor, alpha: float = 0.5, gamma: float = 4.0
) -> torch.Tensor:
    """Mean focal loss of a per-pixel sigmoid map against a {0,1} (or soft) mask."""
    prob = torch.sigmoid(logits)
    log_p = F.logsigmoid(logits)
    log_not_p = F.logsigmoid(-logits)
    positive = -alpha * (1.0 - prob).pow(gamma) * log_p
    negative = -(1.0 - alpha) * prob.pow(gamma) * log_not_p
    return (target * positive + (1.0 - target) * negative).mean()


class PRNLoss(nn.Module):
    """``SmoothL1(σ(logits), mask) + λ · Focal(logits, mask)`` with the paper's defaults."""

    def __init__(self, focal_weight: float = 5.0, alpha: float = 0.5, gamma: float = 4.0) -> None:
        super().__init__()
        self.focal_weight = focal_weight
        self.alpha = alpha
        self.gamma = gamma

    def forward(self, logits: torch.Tensor, mask: torch.Tensor) -> dict[str, torch.Tensor]:
        """Both terms in float32 whatever the logits' dtype: under bf16 autocast the focal
        term's (1 - p)^4 and log-sigmoid would keep only 8 bits of mantissa."""
        logits, mask = logits.float(), mask.float()
        smooth_l1 = F.smooth_l1_loss(torch.sigmoid(logits), mask)
        focal = binary_focal_loss(logits, mask, self.alpha, self.gamma)
        return {"loss": smooth_l1 + self.focal_weight * focal, "smooth_l1": smooth_l1, "focal": focal}
