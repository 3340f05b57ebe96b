"""top_k_mean: the PRN image score (mean of the k highest pixels)."""

from __future__ import annotations

import pytest
import torch

from prn.metrics import top_k_mean


def test_mean_of_the_k_largest_pixels_per_image() -> None:
    maps = torch.rand(3, 1, 8, 8)
    expected = maps.reshape(3, -1).sort(dim=1, descending=True).values[:, :5].mean(dim=1)
    torch.testing.assert_close(top_k_mean(maps, k=5), expected)


def test_known_values_and_shape_without_channel() -> None:
    maps = torch.arange(8.0).reshape(2, 2, 2)  # images [0..3] and [4..7]
    torch.testing.assert_close(top_k_mean(maps, k=2), torch.tensor([2.5, 6.5]))


def test_k_is_clipped_to_the_pixel_count() -> None:
    maps = torch.rand(2, 1, 4, 4)
    torch.testing.assert_close(top_k_mean(maps, k=100), maps.reshape(2, -1).mean(dim=1))


def test_invalid_k_and_unbatched_input_are_rejected() -> None:
    with pytest.raises(ValueError, match="k >= 1"):
        top_k_mean(torch.rand(2, 4, 4), k=0)
    with pytest.raises(ValueError, match="batched"):
        top_k_mean(torch.rand(16), k=3)
