"""The device line path draws the CPU path's lines and shades them where the model trains."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from prn.data.device.lines import DeviceThinLines
from prn.data.generation.thin_lines import MIN_LABELLED_PIXELS, MIN_NOISE_RATIO, ThinLineAnomalySource

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def _plates(count: int, size: int = 80, spread: float = 4.0) -> torch.Tensor:
    rng = np.random.default_rng(0)
    grey = np.clip(0.5 + rng.normal(0.0, spread / 255.0, (count, 1, size, size)), 0, 1)
    return torch.from_numpy(grey).float().repeat(1, 3, 1, 1)


@pytest.mark.parametrize("device", DEVICES)
def test_device_lines_are_thin_on_the_foreground_and_labelled_where_they_moved(device: str) -> None:
    images = _plates(12).to(device)
    foreground = torch.zeros(12, 80, 80, dtype=torch.bool, device=device)
    foreground[:, 20:60, 10:70] = True
    foreground[11] = False  # an empty foreground: anywhere
    generator = torch.Generator(device).manual_seed(0)
    lined, masks = DeviceThinLines()(images, foreground, generator)
    assert lined.shape == images.shape and masks.shape == (12, 80, 80) and masks.dtype == torch.float32
    assert bool((masks.flatten(1).sum(dim=1) >= MIN_LABELLED_PIXELS).all())
    assert not bool(masks[:11][~foreground[:11]].any())
    moved = (lined - images).abs().amax(dim=1) * 255.0
    assert float(moved[masks > 0].min()) >= 0.5 * 0.6 * MIN_NOISE_RATIO * 4.0  # half the grain floor at least
    squares = -torch.nn.functional.max_pool2d(-masks[:, None], 5, stride=1)  # 1 where a 5x5 square fits
    opened = torch.nn.functional.max_pool2d(torch.nn.functional.pad(squares, (4, 4, 4, 4)), 5, stride=1)[:, 0] * masks
    blob_fractions = opened.flatten(1).sum(dim=1) / masks.flatten(1).sum(dim=1)
    assert int((blob_fractions >= 0.2).sum()) <= 2  # lines, not blobs


def test_device_and_cpu_lines_cover_alike() -> None:
    images = _plates(24)
    cpu_rng = np.random.default_rng(0)
    plate = (images[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    cpu = [ThinLineAnomalySource()(plate, None, cpu_rng)[1].sum() for _ in range(24)]
    _, device_masks = DeviceThinLines()(images, None, torch.Generator().manual_seed(0))
    device = device_masks.flatten(1).sum(dim=1).numpy()
    assert 0.6 < np.median(device) / np.median(cpu) < 1.6


def test_device_lines_are_reproducible() -> None:
    images = _plates(3)
    first = DeviceThinLines()(images, None, torch.Generator().manual_seed(5))
    second = DeviceThinLines()(images, None, torch.Generator().manual_seed(5))
    assert torch.equal(first[0], second[0]) and torch.equal(first[1], second[1])
