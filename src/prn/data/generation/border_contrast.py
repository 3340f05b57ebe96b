"""Where a part differs from its background, from frozen ImageNet features rather than colour.

Colour distance to the border fails whenever part and background share a colour (a dark
rubber part on a dark, noisy table). Texture and structure still differ, and an ImageNet
ResNet-18's early layers describe both. So, per category:

1. Features: layer1 (pooled) and layer2 of the frozen encoder at 1/8 resolution, averaged
   over 3x3 neighbours and L2-normalised. Images are reflect-padded first so that the
   features along the border describe the scene, not the network's zero padding.
2. Background bank: feature vectors of a band along the image border, drawn from all
   images (at most ``bank_size``).
3. Contrast of a location: distance to its nearest background-bank vector.
4. Threshold: how far background lies from background -- a high quantile of the border
   vectors' distances to the nearest border vector *of another image*. A location beyond
   it looks like no background seen anywhere.

A texture that fills the frame has no location beyond that threshold: the caller's
plausibility check then falls back to the whole image. Measured on generated cases and
on MVTec bottle/transistor in docs/own-parts.md ("Target areas need the part's outline").
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from prn.models.encoder import ResNet18Encoder

PAD = 32  # input pixels of reflect padding: 4 cells of layer2
BORDER_CELLS = 2  # band of layer2 cells (16 px at 1/8) along each edge that defines the background


def encoder_features(encoder: ResNet18Encoder, images: list[np.ndarray], batch_size: int = 16) -> torch.Tensor:
    """``[N, C, H/8, W/8]`` unit-length descriptors of layer1 (pooled) + layer2, 3x3-averaged."""
    chunks = []
    cells = PAD // 8
    for start in range(0, len(images), batch_size):
        batch = torch.from_numpy(np.stack(images[start : start + batch_size])).permute(0, 3, 1, 2).float().div_(255.0)
        padded = F.pad(batch, (PAD,) * 4, mode="reflect")
        layer1, layer2, _ = encoder.frozen_features(padded)
        layer1 = layer1[..., 2 * cells : -2 * cells, 2 * cells : -2 * cells]
        layer2 = layer2[..., cells:-cells, cells:-cells]
        combined = torch.cat([F.adaptive_avg_pool2d(layer1, layer2.shape[-2:]), layer2], dim=1)
        chunks.append(F.normalize(F.avg_pool2d(combined, 3, 1, 1), dim=1))
    return torch.cat(chunks)


def border_band(height: int, width: int, cells: int = BORDER_CELLS) -> torch.Tensor:
    """``bool [height, width]``: the outer ``cells`` rows and columns."""
    band = torch.zeros(height, width, dtype=torch.bool)
    band[:cells], band[-cells:], band[:, :cells], band[:, -cells:] = True, True, True, True
    return band


def nearest_distances(queries: torch.Tensor, bank: torch.Tensor, chunk: int = 32768) -> torch.Tensor:
    """Euclidean distance of each query row to its nearest bank row."""
    return torch.cat([torch.cdist(part, bank).min(dim=1).values for part in queries.split(chunk)])


@torch.no_grad()
def border_contrast(
    images: list[np.ndarray], encoder: ResNet18Encoder, quantile: float = 0.99, bank_size: int = 4096, seed: int = 0
) -> tuple[np.ndarray, float]:
    """Per-image contrast maps ``[N, H/8, W/8]`` against the border background, and the foreground threshold."""
    features = encoder_features(encoder.eval(), images)
    count, channels, height, width = features.shape
    band = border_band(height, width)
    border = features.permute(0, 2, 3, 1)[:, band]  # [N, band cells, C]
    owner = torch.arange(count).repeat_interleave(border.shape[1])
    border = border.reshape(-1, channels)
    if len(border) > bank_size:
        keep = torch.randperm(len(border), generator=torch.Generator().manual_seed(seed))[:bank_size]
        border, owner = border[keep], owner[keep]
    threshold = _background_spread(border, owner, quantile) if count > 1 else float("inf")
    contrast = nearest_distances(features.permute(0, 2, 3, 1).reshape(-1, channels), border)
    return contrast.reshape(count, height, width).numpy(), threshold


def _background_spread(border: torch.Tensor, owner: torch.Tensor, quantile: float) -> float:
    """``quantile`` of each border vector's distance to the nearest border vector of another image."""
    nearest = []
    for rows, row_owner in zip(border.split(2048), owner.split(2048)):
        distances = torch.cdist(rows, border)
        distances[row_owner[:, None] == owner[None, :]] = float("inf")
        nearest.append(distances.min(dim=1).values)
    return float(torch.quantile(torch.cat(nearest), quantile))
