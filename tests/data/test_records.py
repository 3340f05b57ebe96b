import random
from pathlib import Path

import pytest

from prn.data.errors import DatasetError
from prn.data.records import Record, draw_seen_anomalies


def _candidates(count: int) -> list[Record]:
    return [Record(Path(f"/d/test/crack/{i:03d}.png"), 1, Path(f"/d/gt/{i:03d}_mask.png"), "crack") for i in range(count)]


def test_draw_is_reproducible_and_independent_of_listing_order():
    candidates = _candidates(20)
    shuffled = candidates[:]
    random.Random(3).shuffle(shuffled)
    assert draw_seen_anomalies(candidates, 5, seed=7) == draw_seen_anomalies(shuffled, 5, seed=7)


def test_draw_partitions_the_candidates():
    candidates = _candidates(20)
    seen, rest = draw_seen_anomalies(candidates, 5, seed=0)
    assert len(seen) == 5 and len(rest) == 15
    assert sorted(seen + rest, key=lambda r: r.image_path) == candidates
    assert seen == sorted(seen, key=lambda r: r.image_path)


def test_different_seeds_draw_different_anomalies():
    candidates = _candidates(20)
    assert draw_seen_anomalies(candidates, 5, seed=0)[0] != draw_seen_anomalies(candidates, 5, seed=1)[0]


def test_zero_seen_anomalies_is_allowed():
    seen, rest = draw_seen_anomalies(_candidates(4), 0, seed=0)
    assert seen == [] and len(rest) == 4


def test_too_many_seen_anomalies_says_how_many_exist_and_which_option():
    with pytest.raises(DatasetError, match=r"dataset\.num_seen_anomalies=5 but only 3 .*at most 3"):
        draw_seen_anomalies(_candidates(3), 5, seed=0)


@pytest.mark.parametrize("k", [-1, 1.5, "2"])
def test_bad_k_is_rejected(k):
    with pytest.raises(DatasetError, match=r"dataset\.num_seen_anomalies"):
        draw_seen_anomalies(_candidates(3), k, seed=0)
