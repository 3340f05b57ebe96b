"""AUPRO against a port of the MVTec AD evaluation script and a hand-computed case."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
from metrics_references import mvtec_aupro, random_maps, random_masks

from prn.metrics import pro
from prn.metrics.pro import anomalous_pixel_region_sizes, aupro, aupro_from_split


def random_case(seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    masks = random_masks(rng, int(rng.integers(1, 5)), int(rng.integers(5, 13)), int(rng.integers(5, 13)))
    masks[-1, -1, -1] = False  # guarantees normal pixels
    if not masks.any():
        masks[0, 0, 0] = True
    levels = [None, 2, 5, 20][seed % 4]  # None = continuous, else heavy ties
    return random_maps(rng, masks, levels), masks


@pytest.mark.parametrize("fpr_limit", [0.3, 0.05, 1.0])
@pytest.mark.parametrize("seed", range(40))
def test_matches_mvtec_reference(seed: int, fpr_limit: float) -> None:
    maps, masks = random_case(seed)
    result = aupro(maps, masks, fpr_limit)
    assert result == pytest.approx(mvtec_aupro(maps, masks, fpr_limit), abs=1e-12)
    assert 0.0 <= result <= 1.0


@pytest.mark.parametrize("seed", range(8))
def test_chunk_boundaries_inside_tie_groups(seed: int, monkeypatch: pytest.MonkeyPatch) -> None:
    maps, masks = random_case(4 * seed + 1)  # levels=2: long runs of equal normal scores
    expected = mvtec_aupro(maps, masks)
    monkeypatch.setattr(pro, "CHUNK_SIZE", 3)
    assert aupro(maps, masks) == pytest.approx(expected, abs=1e-12)


def test_hand_computed_case() -> None:
    """Two 3x4 images, 20 normal pixels, three regions; 8-connectivity joins A's diagonal pixels.

    Descending thresholds give (FPR, PRO) points (0, 1/3) (0, 1/2) (.05, 1/2) (.10, 5/6)
    (.20, 5/6) (.25, 5/6) (.40, 1); interpolating at .30 gives PRO 8/9, so the area is
    .025 + 1/30 + 1/12 + 1/24 + .05 * (5/6 + 8/9) / 2 = 163/720 and AUPRO = 163/216.
    With 4-connectivity A would be two regions and the answer would differ.
    """
    first = np.array(
        [
            [0.9, 0.8, 0.7, 0.6],  # A at (0, 0)
            [0.6, 0.5, 0.55, 0.5],  # A at (1, 1)
            [0.5, 0.5, 0.1, 0.7],  # B at (2, 3)
        ]
    )
    second = np.full((3, 4), 0.1)
    second[0, 0] = 0.95  # C
    masks = np.zeros((2, 3, 4), dtype=bool)
    masks[0, 0, 0] = masks[0, 1, 1] = masks[0, 2, 3] = masks[1, 0, 0] = True
    expected = float(Fraction(163, 216))
    assert aupro(np.stack([first, second]), masks, 0.3) == pytest.approx(expected, abs=1e-12)
    assert mvtec_aupro(np.stack([first, second]), masks, 0.3) == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize("seed", range(10))
def test_perfect_map_gives_exactly_one(seed: int) -> None:
    rng = np.random.default_rng(seed)
    masks = random_masks(rng, 6, 40, 40)
    masks[0, 5:9, 5:9] = True
    maps = np.where(masks, 1.0 + rng.random(masks.shape), rng.random(masks.shape)).astype(np.float32)
    assert aupro(maps, masks) == 1.0


def test_inverted_and_constant_maps() -> None:
    masks = np.zeros((1, 10, 10), dtype=bool)
    masks[0, 2:5, 2:5] = True
    assert aupro(np.where(masks, 0.0, 1.0), masks) == 0.0
    # All pixels tied: one point (1, 1); the segment from (0, 0) gives PRO = FPR, area 0.3**2/2.
    assert aupro(np.zeros((1, 10, 10)), masks) == pytest.approx(0.15)


def test_never_exceeds_one_on_large_near_perfect_maps() -> None:
    rng = np.random.default_rng(0)
    masks = random_masks(rng, 30, 64, 64)
    maps = (masks + 1e-3 * rng.random(masks.shape)).astype(np.float32)
    result = aupro(maps, masks)
    assert result <= 1.0
    assert result == pytest.approx(1.0, abs=1e-9)


def test_region_sizes_use_eight_connectivity_per_image() -> None:
    masks = np.zeros((2, 4, 4), dtype=bool)
    masks[0, 0, 0] = masks[0, 1, 1] = True  # diagonal neighbours: one region of 2
    masks[0, 3, 3] = True  # isolated
    masks[1, 0, 0] = True  # same position in the next image must not join image 0's region
    assert anomalous_pixel_region_sizes(masks).tolist() == [2, 2, 1, 1]
    assert anomalous_pixel_region_sizes(masks[0]).tolist() == [2, 2, 1]


def test_split_inputs_match_full_maps() -> None:
    maps, masks = random_case(3)
    weights = 1.0 / anomalous_pixel_region_sizes(masks)
    split = aupro_from_split(maps[~masks], maps[masks], 7.0 * weights)  # scale of weights is irrelevant
    assert split == pytest.approx(aupro(maps, masks), abs=1e-12)


def test_accepts_channel_dimension() -> None:
    maps, masks = random_case(2)
    assert aupro(maps[:, None], masks[:, None].astype(np.uint8)) == pytest.approx(aupro(maps, masks))


def test_bad_inputs_are_rejected() -> None:
    maps, masks = random_case(0)
    with pytest.raises(ValueError, match="differs"):
        aupro(maps[:, :-1], masks)
    with pytest.raises(ValueError, match="only 0 and 1"):
        aupro(maps, masks * 2)
    with pytest.raises(ValueError, match="fpr_limit"):
        aupro(maps, masks, 0.0)
    with pytest.raises(ValueError, match="without anomalous pixels"):
        aupro(maps, np.zeros_like(masks))
    with pytest.raises(ValueError, match="without normal pixels"):
        aupro(maps, np.ones_like(masks))
    with pytest.raises(ValueError, match="weights"):
        aupro_from_split(maps[~masks], maps[masks], np.zeros(int(masks.sum())))
