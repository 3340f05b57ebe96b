"""The seen-anomaly protocol (``prn.data.split``): the seeded draw and how it reshapes the split."""

import random
from pathlib import Path

import pytest

from prn.data.errors import DatasetError
from prn.data.mvtec import MVTecDataModule
from prn.data.records import DatasetSplit, Record
from prn.data.split import SEEN_FROM_CHOICES, ResolvedSplit, draw_records, held_out_count, resolve_split


def _candidates(count: int) -> list[Record]:
    return [
        Record(Path(f"/d/test/crack/{i:03d}.png"), 1, Path(f"/d/gt/{i:03d}_mask.png"), "crack") for i in range(count)
    ]


def test_draw_is_reproducible_and_independent_of_listing_order():
    candidates = _candidates(20)
    shuffled = candidates[:]
    random.Random(3).shuffle(shuffled)
    assert draw_records(candidates, 5, seed=7) == draw_records(shuffled, 5, seed=7)


def test_draw_partitions_the_candidates():
    candidates = _candidates(20)
    seen, rest = draw_records(candidates, 5, seed=0)
    assert len(seen) == 5 and len(rest) == 15
    assert sorted(seen + rest, key=lambda r: r.image_path) == candidates
    assert seen == sorted(seen, key=lambda r: r.image_path)


def test_different_seeds_draw_different_anomalies():
    candidates = _candidates(20)
    assert draw_records(candidates, 5, seed=0)[0] != draw_records(candidates, 5, seed=1)[0]


def test_zero_seen_anomalies_is_allowed():
    seen, rest = draw_records(_candidates(4), 0, seed=0)
    assert seen == [] and len(rest) == 4


def test_too_many_seen_anomalies_says_how_many_exist_and_which_option():
    with pytest.raises(DatasetError, match=r"dataset\.num_seen_anomalies=5 but only 3 .*at most 3"):
        draw_records(_candidates(3), 5, seed=0)


@pytest.mark.parametrize("k", [-1, 1.5, "2"])
def test_bad_k_is_rejected(k):
    with pytest.raises(DatasetError, match=r"dataset\.num_seen_anomalies"):
        draw_records(_candidates(3), k, seed=0)


def _found(train_anomalous_masks: bool = True, pixel_labels: bool = True) -> DatasetSplit:
    normal = [Record(Path(f"/d/train/good/{i:03d}.png"), 0, None, "good") for i in range(6)]
    train_bad = [
        Record(
            Path(f"/d/train/bad/{i:03d}.png"),
            1,
            Path(f"/d/train/gt/{i:03d}.png") if train_anomalous_masks else None,
            "bad",
        )
        for i in range(4)
    ]
    test_good = [Record(Path(f"/d/test/good/{i:03d}.png"), 0, None, "good") for i in range(3)]
    return DatasetSplit(normal, train_bad, test_good + _candidates(5), pixel_labels=pixel_labels)


def test_seen_from_choices():
    assert SEEN_FROM_CHOICES == ("test", "train")


def test_resolve_split_from_test_moves_the_drawn_anomalies_out_of_the_test_set():
    found = _found()
    split = resolve_split(found, "test", 2, seed=0)
    assert isinstance(split, ResolvedSplit)
    assert split.seen == draw_records(_candidates(5), 2, seed=0)[0]
    assert [r for r in found.test if r not in split.seen] == split.test and len(split.test) == 6
    assert split.train_normal == found.train_normal and split.seen_candidates == 5 and split.pixel_labels


def test_resolve_split_from_train_leaves_the_test_set_whole():
    found = _found(pixel_labels=False)
    split = resolve_split(found, "train", 3, seed=1)
    assert split.seen == draw_records(found.train_anomalous, 3, seed=1)[0]
    assert split.test == found.test and split.seen_candidates == 4 and split.pixel_labels is False


def test_resolve_split_rejects_seen_anomalies_without_masks():
    with pytest.raises(DatasetError, match=r"seen anomalies without a ground-truth mask: .*dataset\.seen_from"):
        resolve_split(_found(train_anomalous_masks=False), "train", 1, seed=0)
    assert resolve_split(_found(train_anomalous_masks=False), "train", 0, seed=0).seen == []


def test_resolve_split_names_the_option_when_k_is_too_large():
    with pytest.raises(DatasetError, match=r"dataset\.num_seen_anomalies=6 but only 5"):
        resolve_split(_found(), "test", 6, seed=0)


def _module(root: Path, **options) -> MVTecDataModule:
    defaults = {"image_size": 128, "num_seen_anomalies": 3, "batch_size": 4, "eval_batch_size": 5}
    return MVTecDataModule(root, "widget", **{**defaults, **options})


def test_seen_anomalies_are_reproducible_and_removed_from_test(mvtec_root):
    first, again, other = _module(mvtec_root), _module(mvtec_root), _module(mvtec_root, seed=1)
    seen = {r.image_path for r in first.split.seen}
    assert seen == {r.image_path for r in again.split.seen}
    assert seen != {r.image_path for r in other.split.seen}
    test = {r.image_path for r in first.split.test}
    assert len(test) == 10 - 3 and not seen & test
    assert all(r.label == 1 for r in first.split.seen)


def test_held_out_normals_leave_training_and_depend_only_on_seed_and_names():
    normals = [Record(Path(f"train/good/{i:03d}.png"), 0, None, "good") for i in range(20)]
    found = DatasetSplit(train_normal=normals, train_anomalous=[], test=_candidates(5))
    split = resolve_split(found, "test", 2, seed=0, val_normals=0.1)
    assert len(split.val_normal) == 2 and len(split.train_normal) == 18
    assert not set(split.val_normal) & set(split.train_normal)
    shuffled = DatasetSplit(train_normal=normals[::-1], train_anomalous=[], test=_candidates(5))
    assert resolve_split(shuffled, "test", 2, seed=0, val_normals=2).val_normal == split.val_normal
    assert resolve_split(found, "test", 2, seed=0).val_normal == []


@pytest.mark.parametrize("value", [20, 1.5, -1, "a tenth", True])
def test_val_normals_that_leave_nothing_to_train_or_make_no_sense_fail_by_name(value):
    with pytest.raises(DatasetError, match="val_normals"):
        held_out_count(value, 20)
