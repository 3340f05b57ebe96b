"""MultiScaleFusion: branch types/hyper-parameters from Sec. 3.2 and output shapes."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from prn.models.fusion import MultiScaleFusion


def _maps(channels: tuple[int, ...], size: int = 16, batch: int = 2) -> list[torch.Tensor]:
    return [torch.rand(batch, c, size // 2**i, size // 2**i) for i, c in enumerate(channels)]


def test_output_shapes_follow_each_target_scale() -> None:
    channels = (8, 16, 32)
    outputs = MultiScaleFusion(channels)(_maps(channels))
    assert [tuple(o.shape) for o in outputs] == [(2, 8, 16, 16), (2, 16, 8, 8), (2, 32, 4, 4)]


def test_downsample_branch_uses_paper_stride_kernel_padding() -> None:
    fusion = MultiScaleFusion((4, 8, 16))
    depthwise = fusion.branches[2][0][0]  # scale 1 -> scale 3: gap 2
    assert (depthwise.stride, depthwise.kernel_size, depthwise.padding) == ((4, 4), (5, 5), (2, 2))
    assert depthwise.groups == 4 and depthwise.out_channels == 4
    pointwise = fusion.branches[2][0][1]
    assert pointwise.kernel_size == (1, 1) and pointwise.out_channels == 16


def test_identity_on_diagonal_and_1x1_upward() -> None:
    fusion = MultiScaleFusion((4, 8, 16))
    assert all(isinstance(fusion.branches[j][j], nn.Identity) for j in range(3))
    up = fusion.branches[0][2][0]
    assert up.kernel_size == (1, 1) and (up.in_channels, up.out_channels) == (16, 4)


def test_output_is_own_map_plus_transformed_others() -> None:
    channels = (4, 8)
    fusion = MultiScaleFusion(channels).eval()
    maps = _maps(channels, size=8)
    with torch.no_grad():
        for branch in (fusion.branches[0][1], fusion.branches[1][0]):
            for module in branch:
                if isinstance(module, nn.Conv2d):
                    module.weight.zero_()
        fused = fusion(maps)
    assert torch.allclose(fused[0], maps[0]) and torch.allclose(fused[1], maps[1])


@pytest.mark.parametrize("num_scales", [1, 2, 4])
def test_any_number_of_scales(num_scales: int) -> None:
    channels = tuple(4 * 2**i for i in range(num_scales))
    outputs = MultiScaleFusion(channels)(_maps(channels, size=32))
    assert [o.shape[1] for o in outputs] == list(channels)


def test_wrong_number_of_maps_raises() -> None:
    with pytest.raises(ValueError, match="3 scales"):
        MultiScaleFusion((4, 8, 16))(_maps((4, 8)))
