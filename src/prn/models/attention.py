"""Multi-size Self-Attention, MSA (paper Sec. 3.3, Eq. 3), after the authors' M2TR code.

One head per patch size p_s in {h, h/2, h/4, h/8} (a d x d grid of patches with
d in patch_divisions = (1, 2, 4, 8)); attention runs *between patches* so each head
compares regions of one size, and the heads' outputs are concatenated and refined by
a 3x3 conv + BN + LeakyReLU projection and a 2D residual block. N = 3 blocks stack.

Why not the paper's literal wording ("fully-connected layers embed the flattened
2c x p x p patch"): at layer1 a whole-map patch has 2*64*64*64 = 524 288 inputs, so
one dense Q projection alone would need 524 288^2 ~ 2.7e11 weights, and it would fix
the input resolution. The authors' own multi-scale patch attention (M2TR, ref. [58])
instead embeds Q/K/V with 1x1 convolutions on the map and only *then* flattens
patches for the attention product; we follow that. As there, the heads split the
channels (c/4 per head), which keeps the cost of one block equal to one head.

Why 1/sqrt(dim) instead of the printed 1/c^s: the logits are dot products of
c^s-dimensional vectors whose size grows like sqrt(c^s) (c^s up to 131 072 here), so
dividing by c^s squeezes them to ~0 and the softmax becomes uniform (every patch
attends to the mean); sqrt scaling is the standard fix and what M2TR uses.

Note: the p_s = h head has a single patch, so its softmax is 1 and it passes V
through (a learned 1x1 mixing); we skip the no-op attention product there.

Why a bottleneck after the heads: the paper only says "a 2D residual block". With
full-width 3x3 convolutions (M2TR's projection + a basic residual block) a block costs
30C^2 parameters: 31 M for the three stacks, 36 of the network's 48 GFLOPs per image,
~65 % of its time. We keep the design but run the block's 3x3 convolution at C/r
channels (ResNet bottleneck, r = `reduction`, 4 by default) and project the heads with
a 1x1 convolution: 3(C^2+C) + (C^2+C) + C^2/r*2 + 9(C/r)^2 parameters, 5.1C^2 for r=4,
i.e. 5.3 M for the three stacks instead of 31 M. `reduction=1` keeps this shape unnarrowed
(15C^2 per block; 31 M parameters for the network instead of 21 M).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

NEGATIVE_SLOPE = 0.2


def split_into_patches(maps: Tensor, divisions: int) -> Tensor:
    """[B, c, h, w] -> [B, d*d, c*(h/d)*(w/d)]: one flattened vector per patch."""
    b, c, h, w = maps.shape
    grid = maps.view(b, c, divisions, h // divisions, divisions, w // divisions)
    return grid.permute(0, 2, 4, 1, 3, 5).reshape(b, divisions * divisions, -1)


def merge_patches(patches: Tensor, divisions: int, shape: torch.Size) -> Tensor:
    """Inverse of `split_into_patches` for a map of the given [B, c, h, w] shape."""
    b, c, h, w = shape
    grid = patches.view(b, divisions, divisions, c, h // divisions, w // divisions)
    return grid.permute(0, 3, 1, 4, 2, 5).reshape(b, c, h, w)


def conv_bn(in_channels: int, out_channels: int, kernel_size: int = 3) -> list[nn.Module]:
    return [
        nn.Conv2d(in_channels, out_channels, kernel_size=kernel_size, padding=kernel_size // 2, bias=False),
        nn.BatchNorm2d(out_channels),
    ]


class ResidualBlock2d(nn.Module):
    """x + bottleneck(x): 1x1 down to C/r, 3x3, 1x1 back up (BN + LeakyReLU between)."""

    def __init__(self, channels: int, reduction: int = 4) -> None:
        super().__init__()
        hidden = max(1, channels // reduction)
        self.body = nn.Sequential(
            *conv_bn(channels, hidden, 1),
            nn.LeakyReLU(NEGATIVE_SLOPE, inplace=True),
            *conv_bn(hidden, hidden, 3),
            nn.LeakyReLU(NEGATIVE_SLOPE, inplace=True),
            *conv_bn(hidden, channels, 1),
        )

    def forward(self, x: Tensor) -> Tensor:
        return x + self.body(x)


class MultiSizeSelfAttention(nn.Module):
    """One MSA block: patch attention at several patch sizes (one per head) + residual block."""

    def __init__(self, channels: int, patch_divisions: Sequence[int] = (1, 2, 4, 8), reduction: int = 4) -> None:
        super().__init__()
        self.patch_divisions = tuple(patch_divisions)
        if channels % len(self.patch_divisions):
            raise ValueError(
                f"MSA channels ({channels}) must split evenly into "
                f"{len(self.patch_divisions)} heads (one per patch size)"
            )
        self.query = nn.Conv2d(channels, channels, kernel_size=1)
        self.key = nn.Conv2d(channels, channels, kernel_size=1)
        self.value = nn.Conv2d(channels, channels, kernel_size=1)
        self.output_projection = nn.Sequential(
            *conv_bn(channels, channels, 1), nn.LeakyReLU(NEGATIVE_SLOPE, inplace=True)
        )
        self.residual_block = ResidualBlock2d(channels, reduction)

    def _check_divisible(self, maps: Tensor) -> None:
        h, w = maps.shape[-2:]
        largest = max(self.patch_divisions)
        if h % largest or w % largest:
            raise ValueError(
                f"MSA needs feature maps divisible by {largest} (got {h}x{w}); "
                "use an image_size that is a multiple of 128"
            )

    def _head(self, query: Tensor, key: Tensor, value: Tensor, divisions: int) -> Tensor:
        if divisions == 1:  # a single patch attends only to itself: softmax == 1
            return value
        # [B, 1, d*d, dim]: an explicit head axis, as the ONNX exporter only translates 4D attention
        q, k, v = (split_into_patches(t, divisions).unsqueeze(1) for t in (query, key, value))
        attended = F.scaled_dot_product_attention(q, k, v)  # softmax(QK^T / sqrt(dim)) V
        return merge_patches(attended.squeeze(1), divisions, value.shape)

    def attend(self, maps: Tensor) -> Tensor:
        """Concatenated head outputs (before the output projection)."""
        self._check_divisible(maps)
        groups = len(self.patch_divisions)
        heads = zip(
            self.query(maps).chunk(groups, 1),
            self.key(maps).chunk(groups, 1),
            self.value(maps).chunk(groups, 1),
            self.patch_divisions,
        )
        return torch.cat([self._head(q, k, v, d) for q, k, v, d in heads], dim=1)

    def forward(self, maps: Tensor) -> Tensor:
        return self.residual_block(maps + self.output_projection(self.attend(maps)))


class MSAStack(nn.Sequential):
    """N stacked MSA blocks (N = 3 in the paper) at one scale."""

    def __init__(
        self, channels: int, depth: int = 3, patch_divisions: Sequence[int] = (1, 2, 4, 8), reduction: int = 4
    ) -> None:
        if depth < 1:
            raise ValueError(f"msa_depth must be >= 1 (got {depth}); disable MSA with use_msa=false instead")
        super().__init__(*(MultiSizeSelfAttention(channels, patch_divisions, reduction) for _ in range(depth)))
