"""Multi-scale Fusion block, MF (paper Sec. 3.2, Eq. 2, Fig. 4; HRNet-style).

out_j = sum_r f_rj(F_r) with
  r = j: identity;
  r < j: depth-wise separable conv (depth-wise c_r -> c_r with stride 2^(j-r), kernel
         2^(j-r)+1, padding 2^(j-r-1), then point-wise c_r -> c_j) + BN;
  r > j: bilinear up-sampling to F_j's size and a 1x1 conv c_r -> c_j (+ BN).
For r > j the 1x1 conv + BN run *before* the up-sampling (as HRNet does): both are
per-pixel affine maps and bilinear weights sum to one, so the function is the same
(at inference exactly; in training BN sees the low-resolution statistics) while the
conv costs 4^(r-j) times less.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch.nn.functional as F
from torch import Tensor, nn


def downsample_branch(in_channels: int, out_channels: int, scale_gap: int) -> nn.Sequential:
    """Depth-wise separable conv that shrinks a map by 2^scale_gap (scale_gap >= 1)."""
    stride = 2**scale_gap
    return nn.Sequential(
        nn.Conv2d(
            in_channels,
            in_channels,
            kernel_size=stride + 1,
            stride=stride,
            padding=stride // 2,
            groups=in_channels,
            bias=False,
        ),
        nn.Conv2d(in_channels, out_channels, kernel_size=1, bias=False),
        nn.BatchNorm2d(out_channels),
    )


def upsample_projection(in_channels: int, out_channels: int) -> nn.Sequential:
    """1x1 conv + BN of a coarser map; bilinear up-sampling follows in forward."""
    return nn.Sequential(nn.Conv2d(in_channels, out_channels, kernel_size=1, bias=False), nn.BatchNorm2d(out_channels))


class MultiScaleFusion(nn.Module):
    """Exchange information between maps ordered fine -> coarse (each half the previous size)."""

    def __init__(self, channels: Sequence[int]) -> None:
        super().__init__()
        self.channels = tuple(channels)
        if not self.channels:
            raise ValueError("MultiScaleFusion needs at least one scale")
        # branches[j][r] maps scale r to scale j; identity where r == j
        self.branches = nn.ModuleList(
            nn.ModuleList(self._branch(source, target) for source in range(len(self.channels)))
            for target in range(len(self.channels))
        )

    def _branch(self, source: int, target: int) -> nn.Module:
        c_in, c_out = self.channels[source], self.channels[target]
        if source == target:
            return nn.Identity()
        if source < target:
            return downsample_branch(c_in, c_out, target - source)
        return upsample_projection(c_in, c_out)

    def forward(self, maps: Sequence[Tensor]) -> list[Tensor]:
        if len(maps) != len(self.channels):
            raise ValueError(f"MultiScaleFusion built for {len(self.channels)} scales, got {len(maps)}")
        return [self._fuse_into(target, maps) for target in range(len(maps))]

    def _fuse_into(self, target: int, maps: Sequence[Tensor]) -> Tensor:
        size = maps[target].shape[-2:]
        fused = maps[target]
        for source, branch in enumerate(self.branches[target]):
            if source == target:
                continue
            moved = branch(maps[source])
            if source > target:
                moved = F.interpolate(moved, size=size, mode="bilinear", align_corners=False)
            fused = fused + moved
        return fused
