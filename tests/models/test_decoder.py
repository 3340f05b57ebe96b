"""UNetDecoder: consumes layer4 + three skips and returns one logit map at input size."""

from __future__ import annotations

import pytest
import torch

from prn.models.decoder import UNetDecoder


@pytest.mark.parametrize(("height", "width"), [(128, 128), (128, 256)])
def test_logits_at_input_resolution(height: int, width: int) -> None:
    skips = (16, 32, 64)
    decoder = UNetDecoder(skips, bottom_channels=24)
    bottom = torch.rand(2, 24, height // 32, width // 32)
    skip_maps = [torch.rand(2, c, height // 2 ** (i + 2), width // 2 ** (i + 2)) for i, c in enumerate(skips)]
    logits = decoder(bottom, skip_maps)
    assert logits.shape == (2, 1, height, width)
    logits.mean().backward()
    assert all(p.grad is not None for p in decoder.parameters())


def test_needs_three_skips() -> None:
    with pytest.raises(ValueError, match="3 skip"):
        UNetDecoder((64, 128))


def test_untrained_map_starts_at_the_anomaly_prior_not_at_one_half():
    import torch

    from prn.models.decoder import ANOMALY_PRIOR, UNetDecoder

    decoder = UNetDecoder()
    bias = decoder.to_logits.bias
    assert torch.sigmoid(bias).item() == pytest.approx(ANOMALY_PRIOR, rel=1e-4)
