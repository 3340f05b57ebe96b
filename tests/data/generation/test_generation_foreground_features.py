"""The feature (border-contrast) foreground estimator on cases whose true foreground is known, and on bottle.

Needs the ImageNet layer1-3 values of ../shared/weights (a random encoder cannot tell
textures apart); skipped without them.
"""

import logging
from pathlib import Path

import numpy as np
import pytest
from generation_helpers import dark_part_on_dark_background, frame_filling_texture

from prn.data.generation.foreground import ForegroundEstimator
from prn.data.image_io import decode_images

SHARED = Path(__file__).resolve().parents[3] / ".." / "shared"
WEIGHTS = SHARED / "weights" / "resnet18_imagenet_conv1_to_layer3.pth"
TRANSISTOR = SHARED / "data" / "mvtec_anomaly_detection" / "transistor" / "train" / "good"

pytestmark = [
    pytest.mark.shared,
    pytest.mark.skipif(not WEIGHTS.is_file(), reason=f"ImageNet weights not found at {WEIGHTS}"),
]


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / (a | b).sum())


def test_finds_a_dark_part_on_a_dark_noisy_background_where_colour_fails():
    images, truths = dark_part_on_dark_background()
    features = ForegroundEstimator(method="features", encoder_weights=str(WEIGHTS))(images, "tyre")
    colour = ForegroundEstimator(method="colour")(images, "tyre")
    assert min(_iou(mask, truth) for mask, truth in zip(features, truths)) >= 0.8
    assert np.mean([_iou(mask, truth) for mask, truth in zip(colour, truths)]) < 0.5  # why the new estimator exists


def test_a_texture_filling_the_frame_gets_the_whole_image_with_a_warning(caplog):
    images = frame_filling_texture()
    with caplog.at_level(logging.WARNING):
        masks = ForegroundEstimator(method="features", encoder_weights=str(WEIGHTS))(images, "metal")
    assert all(mask.all() for mask in masks)
    assert "whole image" in caplog.text


def test_random_encoder_falls_back_to_colour_with_a_warning(caplog):
    images, truths = dark_part_on_dark_background(count=3)
    with caplog.at_level(logging.WARNING):
        masks = ForegroundEstimator(method="features", encoder_weights=None)(images, "tyre")
    assert "from colour instead" in caplog.text
    colour = ForegroundEstimator(method="colour")(images, "tyre")
    assert all(np.array_equal(a, b) for a, b in zip(masks, colour))


@pytest.mark.skipif(not TRANSISTOR.is_dir(), reason="MVTec transistor not found under ../shared")
def test_transistor_foreground_holds_the_part_and_leaves_the_board_corners_out():
    files = sorted(TRANSISTOR.glob("*.png"))[::10]
    masks = ForegroundEstimator(method="features", encoder_weights=str(WEIGHTS))(
        decode_images(files, (256, 256)), "transistor"
    )
    for mask in masks:
        assert 0.15 < mask.mean() < 0.6
        assert mask[90, 128], "the transistor's body (image centre, upper half) is foreground"
        assert not mask[:16, :16].any() and not mask[:16, -16:].any(), "the board's top corners are background"
