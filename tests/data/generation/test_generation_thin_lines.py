"""Thin-line anomalies: cracks and scratches a few pixels wide, never fainter than the grain, labelled where they moved."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from prn.data.generation import SimulatedAnomalySource, composition_from_switches
from prn.data.generation.thin_lines import (
    LABEL_FRACTION,
    MIN_LABELLED_PIXELS,
    MIN_NOISE_RATIO,
    LineShading,
    ThinLineAnomalySource,
    draw_core,
    draw_line_profile,
    resolve_lines,
    shade_line,
)
from prn.data.types import NormalImage, TrainingPool


def _noisy_plate(size: int = 96, spread: float = 0.0, seed: int = 0) -> np.ndarray:
    """A mid-grey plate with Gaussian grain of ``spread`` grey levels."""
    rng = np.random.default_rng(seed)
    grey = np.clip(128 + rng.normal(0.0, spread, (size, size)), 0, 255).round().astype(np.uint8)
    return np.repeat(grey[..., None], 3, axis=2)


def blob_fraction(mask: np.ndarray, side: int = 5) -> float:
    """Share of a mask's pixels inside ``side`` x ``side`` squares it holds: near 0 for a line, 1 for a blob."""
    opened = cv2.morphologyEx(mask.astype(np.uint8), cv2.MORPH_OPEN, np.ones((side, side), np.uint8))
    return float(opened.sum()) / max(float(mask.sum()), 1.0)


def test_lines_are_thin_labelled_where_they_moved_and_untouched_far_away() -> None:
    image = _noisy_plate(spread=3.0)
    source = ThinLineAnomalySource()
    blobby = 0
    for seed in range(30):
        lined, mask = source(image, None, np.random.default_rng(seed))
        labelled = mask.astype(bool)
        assert lined.dtype == np.uint8 and lined.shape == image.shape and mask.dtype == np.float32
        assert labelled.sum() >= MIN_LABELLED_PIXELS
        blobby += blob_fraction(labelled) >= 0.2
        far = ~cv2.dilate(labelled.astype(np.uint8), np.ones((15, 15), np.uint8)).astype(bool)
        assert np.array_equal(lined[far], image[far])
        moved = np.abs(lined.astype(int) - image.astype(int)).max(axis=2)
        assert moved[labelled].min() >= 1
    assert blobby <= 3  # lines; only where a jagged crack folds on itself does a 5x5 square fit


def test_a_line_is_never_fainter_than_the_grain_around_it() -> None:
    profile = np.zeros((64, 64), dtype=np.float32)
    profile[30:32, 8:56] = 1.0
    faint = LineShading(polarity=-1.0, contrast=0.01, rim=0.0)
    for spread in (2.0, 12.0):
        image = _noisy_plate(64, spread, seed=1)
        lined, mask = shade_line(image, profile, faint)
        depth = (image.astype(float) - lined.astype(float))[30:32, 8:56].mean()
        # raised to the floor (2.5x the high-pass grain, about 0.8x the noise's spread), not 1 % of the range
        assert depth >= 0.6 * MIN_NOISE_RATIO * spread
        assert mask[30:32, 8:56].all()


def test_a_line_clipped_at_black_labels_only_what_moved() -> None:
    image = np.zeros((48, 48, 3), dtype=np.uint8)
    image[:, 24:] = 200
    profile = np.zeros((48, 48), dtype=np.float32)
    profile[20:22, 4:44] = 1.0
    lined, mask = shade_line(image, profile, LineShading(polarity=-1.0, contrast=0.3, rim=0.0))
    assert not mask[:, :24].any()  # already black: darkening changes nothing there
    assert mask[20:22, 24:44].all()
    strength = 0.3 * 198.0  # 1-99 % spread of the image
    assert (image[20:22, 30].astype(float) - lined[20:22, 30]).min() >= LABEL_FRACTION * strength


def test_lines_stay_on_the_foreground() -> None:
    image = _noisy_plate(spread=2.0)
    foreground = np.zeros((96, 96), dtype=bool)
    foreground[30:70, 20:80] = True
    for seed in range(10):
        _, mask = ThinLineAnomalySource()(image, foreground, np.random.default_rng(seed))
        assert mask.sum() > 0 and not mask[~foreground].any()
        profile = draw_line_profile((96, 96), foreground, np.random.default_rng(seed))
        assert not profile[~foreground].any()


def test_same_seed_same_line_and_both_polarities_occur() -> None:
    image = _noisy_plate(spread=2.0)
    first = ThinLineAnomalySource()(image, None, np.random.default_rng(4))
    second = ThinLineAnomalySource()(image, None, np.random.default_rng(4))
    assert np.array_equal(first[0], second[0]) and np.array_equal(first[1], second[1])
    signs = set()
    for seed in range(20):
        lined, mask = ThinLineAnomalySource()(image, None, np.random.default_rng(seed))
        signs.add(np.sign((lined.astype(int) - image.astype(int))[mask > 0].mean()))
    assert signs == {-1.0, 1.0}


@pytest.mark.parametrize(
    ("options", "named"),
    [({"length": (0.5, 0.1)}, "length"), ({"width": (0, 2)}, "width"), ({"contrast": (0.2, 1.5)}, "contrast")],
)
def test_bad_options_name_themselves(options: dict, named: str) -> None:
    with pytest.raises(ValueError, match=named):
        ThinLineAnomalySource(**options)


def test_lines_join_the_simulated_kinds_and_alone_still_make_a_simulated_share(generation_pool) -> None:
    source = SimulatedAnomalySource(generation_pool, use_heterologous=False, use_homologous=False, use_lines=True)
    rng = np.random.default_rng(0)
    for normal in generation_pool.normals:
        image, mask = source(normal, rng)
        assert image.shape == normal.image.shape and mask.sum() > 0
    assert source.usage == {"lines": len(generation_pool.normals)}
    assert composition_from_switches(ea=True, hea=False, hoa=False, lines=True) == {
        "normal": 0.5,
        "ea": 0.25,
        "sa": 0.25,
    }
    assert composition_from_switches(ea=False, hea=False, hoa=False, seen=0, lines=True) == {"normal": 0.5, "sa": 0.5}


def test_auto_draws_lines_on_surfaces_that_fill_the_frame_only(generation_pool) -> None:
    assert resolve_lines("auto", [1.0, 0.97, 1.0]) and not resolve_lines("auto", [0.3, 0.4, 1.0])
    assert resolve_lines(True, [0.3]) and not resolve_lines(False, [1.0])
    with pytest.raises(ValueError, match="true, false or auto"):
        resolve_lines("sometimes", [1.0])
    on_object = SimulatedAnomalySource(generation_pool, use_heterologous=False, use_lines="auto")
    assert on_object.kinds == ["hoa"]  # the disc covers a quarter of the frame: an object
    surface = TrainingPool(
        [NormalImage(normal.image, None) for normal in generation_pool.normals], [], [], generation_pool.image_size
    )
    assert SimulatedAnomalySource(surface, use_heterologous=False, use_lines="auto").kinds == ["hoa", "lines"]


@pytest.mark.parametrize("angle", [0.0, 30.0, 45.0, 90.0])
def test_line_width_holds_at_every_angle(angle: float) -> None:
    direction = np.array([np.cos(np.deg2rad(angle)), np.sin(np.deg2rad(angle))])
    path = np.array([30.0, 30.0]) - 20 * direction + np.linspace(0, 40, 21)[:, None] * direction
    for width in (1, 2, 3):
        canvas = np.zeros((60, 60), dtype=np.uint8)
        draw_core(canvas, path, width)
        measured = float(canvas.sum()) / 255.0 / 40.0  # ink per unit length
        assert width <= measured + 0.05 and measured <= width + 1.1, (width, measured)
