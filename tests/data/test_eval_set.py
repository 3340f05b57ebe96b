"""Evaluation items (``EvalImageSet``) and the per-rank test shards (``ShardSampler``)."""

from pathlib import Path

import numpy as np
import pytest
import torch

from prn.data.eval_set import EvalImageSet, ShardSampler
from prn.data.records import Record


def _records(count: int) -> list[Record]:
    return [Record(Path(f"/d/test/{i:03d}.png"), i % 2, None, "crack" if i % 2 else "good") for i in range(count)]


def test_items_carry_image_label_path_type_and_a_zero_mask_for_none():
    images = [np.full((8, 6, 3), 255, dtype=np.uint8), np.zeros((8, 6, 3), dtype=np.uint8)]
    mask = np.zeros((8, 6), dtype=bool)
    mask[2:4, 1:3] = True
    items = EvalImageSet(_records(2), images, [None, mask])
    assert len(items) == 2
    good, bad = items[0], items[1]
    assert good["image"].shape == (3, 8, 6) and good["label"] == 0 and good["label"].dtype == torch.int64
    assert good["path"] == "/d/test/000.png" and good["defect_type"] == "good"
    assert good["mask"].shape == (1, 8, 6) and good["mask"].dtype == torch.float32 and not good["mask"].any()
    assert bad["label"] == 1 and bad["mask"].sum() == 4 and bad["mask"][0, 2:4, 1:3].all()


def test_without_masks_items_have_no_mask_key():
    items = EvalImageSet(_records(1), [np.zeros((4, 4, 3), dtype=np.uint8)], [None], with_masks=False)
    assert "mask" not in items[0]


@pytest.mark.parametrize("length", [0, 1, 7, 10, 13])
@pytest.mark.parametrize("replicas", [2, 3, 4])
def test_shards_are_disjoint_cover_everything_once_and_are_balanced(length, replicas):
    shards = [list(ShardSampler(length, replicas, rank)) for rank in range(replicas)]
    union = [index for shard in shards for index in shard]
    assert sorted(union) == list(range(length)) and len(union) == length
    assert all(not set(a) & set(b) for i, a in enumerate(shards) for b in shards[i + 1 :])
    assert max(map(len, shards)) - min(map(len, shards)) <= 1
    assert [len(ShardSampler(length, replicas, rank)) for rank in range(replicas)] == list(map(len, shards))
    assert all(shard == sorted(shard) for shard in shards)


def test_one_replica_gets_every_index_in_order():
    assert list(ShardSampler(5, 1, 0)) == [0, 1, 2, 3, 4] and len(ShardSampler(5, 1, 0)) == 5
    assert list(ShardSampler(5)) == [0, 1, 2, 3, 4]


def test_shard_is_every_num_replicas_th_index_from_rank():
    assert list(ShardSampler(10, 3, 1)) == [1, 4, 7]
    assert list(ShardSampler(2, 4, 3)) == []


@pytest.mark.parametrize(("length", "replicas", "rank"), [(-1, 1, 0), (4, 0, 0), (4, 2, 2), (4, 2, -1), (4.0, 1, 0)])
def test_bad_shard_arguments_are_rejected(length, replicas, rank):
    with pytest.raises(ValueError):
        ShardSampler(length, replicas, rank)
