"""Held-out anomalies (score choice only): displaced, turned, bent and covered pieces of the part, the mask what changed."""

from __future__ import annotations

import numpy as np
import pytest
from generation_helpers import part_with_leads

from prn.data.generation.held_out import HELD_OUT_KINDS, HeldOutAnomalySource, defect_type, kind_of
from prn.data.types import NormalImage


@pytest.mark.parametrize("kind", HELD_OUT_KINDS)
def test_each_kind_changes_the_part_and_labels_only_what_changed(kind: str) -> None:
    image, foreground = part_with_leads()
    for seed in range(4):
        changed, mask = HeldOutAnomalySource([kind])(NormalImage(image, foreground), np.random.default_rng(seed))
        labelled = mask.astype(bool)
        assert changed.dtype == np.uint8 and changed.shape == image.shape
        assert mask.dtype == np.float32 and labelled.sum() >= 16
        assert np.array_equal(changed[~labelled], image[~labelled])
        assert np.abs(changed[labelled].astype(int) - image[labelled]).max(axis=-1).mean() > 20  # body 220, board 60


def test_displaced_pieces_land_on_the_part() -> None:
    image, foreground = part_with_leads()
    source = HeldOutAnomalySource(["displaced"])
    for seed in range(6):
        _, mask = source(NormalImage(image, foreground), np.random.default_rng(seed))
        assert not (mask.astype(bool) & ~foreground).any()


def test_covered_pieces_of_the_part_turn_into_the_board_around_them() -> None:
    image, foreground = part_with_leads()  # part 220, board 60
    for seed in range(6):
        changed, mask = HeldOutAnomalySource(["covered"])(NormalImage(image, foreground), np.random.default_rng(seed))
        labelled = mask.astype(bool)
        assert (changed[labelled] == 220).all(axis=-1).sum() < (image[labelled] == 220).all(axis=-1).sum()
        assert (changed[labelled] == 60).all(axis=-1).mean() > 0.5  # an absence: mostly board where part was


def test_a_recorded_defect_type_gives_its_kind_back() -> None:
    assert [kind_of(defect_type(kind)) for kind in HELD_OUT_KINDS] == list(HELD_OUT_KINDS)
    assert kind_of(defect_type("covered")) == "covered" and defect_type("covered") == "held_out:covered"
    assert kind_of(None) is None and kind_of("") is None and kind_of("cut_lead") is None


def test_draw_names_the_kind_it_made() -> None:
    image, foreground = part_with_leads()
    source = HeldOutAnomalySource()
    kinds = {source.draw(NormalImage(image, foreground), np.random.default_rng(seed))[2] for seed in range(16)}
    assert kinds == set(HELD_OUT_KINDS)


def test_a_flat_image_has_nothing_to_move_and_comes_back_unchanged() -> None:
    image = np.full((64, 64, 3), 128, dtype=np.uint8)
    changed, mask = HeldOutAnomalySource()(NormalImage(image, None), np.random.default_rng(0))
    assert mask.sum() == 0 and np.array_equal(changed, image)


def test_same_seed_same_sample() -> None:
    image, foreground = part_with_leads()
    first = HeldOutAnomalySource()(NormalImage(image, foreground), np.random.default_rng(5))
    second = HeldOutAnomalySource()(NormalImage(image, foreground), np.random.default_rng(5))
    assert np.array_equal(first[0], second[0]) and np.array_equal(first[1], second[1])


def test_an_unknown_kind_names_the_choices() -> None:
    with pytest.raises(ValueError, match="displaced"):
        HeldOutAnomalySource(["melted"])
