import math
from collections import Counter

import numpy as np
import pytest
import torch
from lightning.fabric.utilities.data import _set_sampler_epoch
from torch.utils.data import DataLoader

from prn.data.errors import DatasetError
from prn.data.training import ComposedBatchSampler, ComposedTrainingSet, slot_counts, validate_composition
from prn.data.types import NormalImage, TrainingPool

PAPER = {"normal": 0.5, "ea": 0.25, "sa": 0.25}


@pytest.mark.parametrize(
    ("composition", "pattern"),
    [
        ({"normal": 0.5, "seen": 0.4}, "sum to 0.9"),
        ({"normal": 1.2, "seen": -0.2}, r"seen=-0.2 must be a number >= 0"),
        ({"seen": 1.0}, r"normal must be > 0"),
        ({}, "must map source names"),
        ({"normal": 0.5, "ea": 0.5}, r"unknown sources \['ea'\]; available: \['normal', 'seen'\]"),
    ],
)
def test_invalid_compositions_name_the_option(composition, pattern):
    with pytest.raises(DatasetError, match=r"dataset\.composition") as caught:
        validate_composition(composition, known_sources=["normal", "seen"])
    assert caught.match(pattern)


@pytest.mark.parametrize(
    ("composition", "batch_size", "expected"),
    [
        (PAPER, 64, {"normal": 32, "ea": 16, "sa": 16}),
        ({"normal": 0.5, "seen": 0.5}, 8, {"normal": 4, "seen": 4}),
        ({"normal": 1 / 3, "a": 1 / 3, "b": 1 / 3}, 10, {"normal": 4, "a": 3, "b": 3}),
        ({"normal": 0.98, "rare": 0.02}, 8, {"normal": 7, "rare": 1}),
        ({"normal": 0.5, "seen": 0.5}, 1, {"normal": 1, "seen": 0}),
        ({"normal": 1.0, "off": 0.0}, 4, {"normal": 4}),
    ],
)
def test_slot_counts_use_largest_remainder_and_keep_every_source(composition, batch_size, expected):
    assert slot_counts(composition, batch_size) == expected


def test_sampler_epoch_covers_every_normal_with_fixed_counts_per_batch():
    sampler = ComposedBatchSampler(num_normals=13, composition=PAPER, batch_size=8, seed=0)
    batches = list(sampler)
    assert len(batches) == len(sampler) == math.ceil(13 / 4)
    for batch in batches:
        assert Counter(name for name, _, _ in batch) == {"normal": 4, "ea": 2, "sa": 2}
        assert all(0 <= index < 13 for _, index, _ in batch)
    normals = [index for batch in batches for name, index, _ in batch if name == "normal"]
    assert set(normals[:13]) == set(range(13))
    seeds = [seed for batch in batches for _, _, seed in batch]
    assert len(set(seeds)) == len(seeds)


def test_sampler_is_deterministic_and_epoch_dependent():
    def batches(seed, epoch):
        sampler = ComposedBatchSampler(20, PAPER, 8, seed=seed)
        sampler.set_epoch(epoch)
        return list(sampler)

    assert batches(0, 3) == batches(0, 3)
    assert batches(0, 3) != batches(0, 4)
    assert batches(0, 3) != batches(1, 3)


def test_unshuffled_sampler_walks_normals_in_order():
    sampler = ComposedBatchSampler(5, {"normal": 1.0}, 2, seed=0, shuffle=False)
    assert [[index for _, index, _ in batch] for batch in sampler] == [[0, 1], [2, 3], [4, 0]]


def test_lightning_set_epoch_reaches_the_sampler():
    sampler = ComposedBatchSampler(6, {"normal": 1.0}, 2, seed=0)
    loader = DataLoader(list(range(6)), batch_sampler=sampler)
    _set_sampler_epoch(loader, 5)
    assert sampler.epoch == 5


@pytest.mark.parametrize("num_normals", [0, -1])
def test_sampler_needs_normals(num_normals):
    with pytest.raises(DatasetError, match="num_normals"):
        ComposedBatchSampler(num_normals, PAPER, 8, seed=0)


def _pool(num_seen: int = 2, size: int = 16) -> TrainingPool:
    rng = np.random.default_rng(0)
    normals = [NormalImage(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)) for _ in range(3)]
    masks = [np.zeros((size, size), dtype=bool) for _ in range(num_seen)]
    for index, mask in enumerate(masks):
        mask[: 4 + index, 2:6] = True  # distinct areas tell the anomalies apart
    seen = [rng.integers(0, 256, (size, size, 3), dtype=np.uint8) for _ in range(num_seen)]
    return TrainingPool(normals=normals, seen_images=seen, seen_masks=masks, image_size=(size, size))


def test_normal_item_is_the_base_image_with_empty_mask():
    pool = _pool()
    item = ComposedTrainingSet(pool)[("normal", 1, 123)]
    assert item["image"].dtype == torch.float32 and item["image"].shape == (3, 16, 16)
    assert torch.allclose(item["image"] * 255, torch.from_numpy(pool.normals[1].image).permute(2, 0, 1).float())
    assert item["mask"].dtype == torch.float32 and item["mask"].shape == (1, 16, 16) and item["mask"].sum() == 0
    assert item["label"].dtype == torch.int64 and item["label"] == 0 and item["source"] == "normal"
    assert item["base"] == 1, "the base image index travels with the item (leave-self-out prototypes)"


def test_seen_item_is_one_seen_anomaly_chosen_by_the_seed():
    pool = _pool()
    dataset = ComposedTrainingSet(pool)
    item = dataset[("seen", 0, 5)]
    assert item["label"] == 1 and 0 <= float(item["image"].min()) and float(item["image"].max()) <= 1
    assert any(torch.equal(item["mask"][0], torch.from_numpy(mask).float()) for mask in pool.seen_masks)
    assert torch.equal(dataset[("seen", 0, 5)]["image"], item["image"])
    assert item["base"] == -1, "a seen anomaly is not built on a normal image"
    chosen = {int(dataset[("seen", 0, seed)]["mask"].sum()) for seed in range(20)}
    assert len(chosen) == 2  # both seen anomalies get used


def test_plugged_in_source_is_called_with_base_and_seeded_rng():
    def brighten(base, rng):
        mask = np.zeros(base.image.shape[:2], dtype=np.float32)
        mask[: int(rng.integers(1, 4))] = 1.0
        return np.full_like(base.image, 255), mask

    dataset = ComposedTrainingSet(_pool(), {"bright": brighten}, composition={"normal": 0.5, "bright": 0.5})
    item = dataset[("bright", 2, 9)]
    assert item["source"] == "bright" and item["label"] == 1 and float(item["image"].min()) == 1.0
    assert item["base"] == 2
    assert torch.equal(item["mask"], dataset[("bright", 2, 9)]["mask"])


def test_seen_fraction_without_seen_anomalies_is_an_error():
    with pytest.raises(DatasetError, match=r"num_seen_anomalies > 0"):
        ComposedTrainingSet(_pool(num_seen=0), composition={"normal": 0.5, "seen": 0.5})


def test_generator_may_not_shadow_builtin_source():
    with pytest.raises(DatasetError, match=r"\['seen'\]"):
        ComposedTrainingSet(_pool(), {"seen": lambda base, rng: (base.image, None)})


def test_source_with_wrong_output_shape_is_named():
    dataset = ComposedTrainingSet(_pool(), {"bad": lambda base, rng: (base.image[:8], np.zeros((8, 16), np.float32))})
    with pytest.raises(DatasetError, match="'bad'"):
        dataset[("bad", 0, 0)]


def test_worker_count_does_not_change_batches():
    dataset = ComposedTrainingSet(
        _pool(),
        {
            "noise": lambda base, rng: (
                rng.integers(0, 256, base.image.shape, dtype=np.uint8),
                np.ones(base.image.shape[:2], np.float32),
            )
        },
    )
    composition = {"normal": 0.5, "seen": 0.25, "noise": 0.25}

    def first_batches(workers):
        loader = DataLoader(dataset, batch_sampler=ComposedBatchSampler(3, composition, 4, seed=1), num_workers=workers)
        return [batch["image"] for batch in loader]

    assert all(torch.equal(a, b) for a, b in zip(first_batches(0), first_batches(2), strict=True))


def test_replicas_split_one_epoch_plan_into_equal_disjoint_shares():
    composition = {"normal": 0.5, "seen": 0.5}
    whole = list(ComposedBatchSampler(10, composition, batch_size=4, seed=3))
    shares = [list(ComposedBatchSampler(10, composition, batch_size=4, seed=3, num_replicas=2, rank=r)) for r in (0, 1)]
    assert len(shares[0]) == len(shares[1]) == 3  # 5 batches, padded to 3 steps each
    assert shares[0][:2] + shares[1][:2] == [whole[0], whole[2], whole[1], whole[3]]
    assert shares[0][2] == whole[4] and shares[1][2] == whole[0]  # wraps round to keep steps equal


def test_rank_outside_the_replicas_is_rejected():
    with pytest.raises(DatasetError, match="rank"):
        ComposedBatchSampler(10, {"normal": 1.0}, batch_size=2, seed=0, num_replicas=2, rank=2)
