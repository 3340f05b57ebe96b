"""Multi-size self-attention: patch split, per-head attention, parameter count."""

from __future__ import annotations

import math

import pytest
import torch

from prn.models.attention import MSAStack, MultiSizeSelfAttention, merge_patches, split_into_patches


def test_patch_split_and_merge_are_inverse_and_ordered() -> None:
    maps = torch.arange(2 * 3 * 8 * 4, dtype=torch.float32).view(2, 3, 8, 4)
    patches = split_into_patches(maps, 2)
    assert patches.shape == (2, 4, 3 * 4 * 2)
    assert torch.equal(patches[0, 1], maps[0, :, 0:4, 2:4].flatten())  # top-right patch
    assert torch.equal(merge_patches(patches, 2, maps.shape), maps)


def test_head_is_softmax_of_scaled_patch_products() -> None:
    block = MultiSizeSelfAttention(8, patch_divisions=(1, 2)).eval()
    maps = torch.randn(1, 8, 4, 4)
    with torch.no_grad():
        q, k, v = (m(maps)[:, 4:] for m in (block.query, block.key, block.value))
        qp, kp, vp = (split_into_patches(t, 2) for t in (q, k, v))
        weights = torch.softmax(qp @ kp.transpose(1, 2) / math.sqrt(qp.shape[-1]), dim=-1)
        expected = merge_patches(weights @ vp, 2, v.shape)
        heads = block.attend(maps)
    assert torch.allclose(heads[:, 4:], expected, atol=1e-5)
    assert torch.allclose(heads[:, :4], block.value(maps)[:, :4])  # whole-map head: one patch


def test_attention_mixes_patches() -> None:
    block = MultiSizeSelfAttention(8, patch_divisions=(2, 2)).eval()
    maps = torch.zeros(1, 8, 4, 4)
    maps[..., :2, :2] = 1.0  # only the top-left patch is non-zero
    with torch.no_grad():
        heads = block.attend(maps) - block.value(maps)
    assert heads[..., 2:, 2:].abs().sum() > 0  # the bottom-right patch received information


def test_shape_preserved_and_params_match_formula() -> None:
    channels = 16
    stack = MSAStack(channels, depth=3)
    maps = torch.rand(2, channels, 16, 8)
    assert stack(maps).shape == maps.shape
    hidden = channels // 4  # bottleneck width of the residual block
    per_block = 4 * channels**2 + 7 * channels + 2 * channels * hidden + 9 * hidden**2 + 4 * hidden
    assert sum(p.numel() for p in stack.parameters()) == 3 * per_block


def test_bad_channels_and_sizes_raise() -> None:
    with pytest.raises(ValueError, match="split evenly"):
        MultiSizeSelfAttention(6)
    with pytest.raises(ValueError, match="multiple of 128"):
        MultiSizeSelfAttention(8)(torch.rand(1, 8, 12, 12))
    with pytest.raises(ValueError, match="msa_depth"):
        MSAStack(8, depth=0)
