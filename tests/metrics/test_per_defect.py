"""Per-defect-type metrics must equal the whole-set metrics on the good images plus that type's."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from metrics_references import mvtec_aupro, pairwise_auroc, random_maps, stepwise_average_precision

from prn.metrics import AnomalyMetrics, auroc
from prn.metrics.per_defect import DEFECT_NAME_BYTES, decode_defect_types, encode_defect_types

TYPES = ("scratch", "stain", "größe")  # a non-ASCII name travels as UTF-8


def typed_test_set(seed: int, images: int = 18, size: int = 12) -> tuple[np.ndarray, ...]:
    """Maps, masks, image scores, labels and defect types; the first 6 images are good."""
    rng = np.random.default_rng(seed)
    masks = np.zeros((images, size, size), dtype=bool)
    defect_types = np.array(["good"] * images, dtype=object)
    for index in range(6, images):
        defect_types[index] = TYPES[index % len(TYPES)]
        row, col = rng.integers(0, size - 4, 2)
        masks[index, row : row + rng.integers(1, 5), col : col + rng.integers(1, 5)] = True
    maps = random_maps(rng, masks, levels=4).astype(np.float32)  # few levels: ties across images
    labels = masks.any(axis=(1, 2)).astype(np.int64)
    scores = maps.reshape(images, -1).max(axis=1) + 0.05 * rng.random(images)
    return maps, masks, scores, labels, defect_types


def feed(
    metrics: AnomalyMetrics, maps, masks, scores, labels, defect_types, batch_size: int = 5, with_masks: bool = True
) -> None:
    for start in range(0, len(maps), batch_size):
        batch = slice(start, start + batch_size)
        mask_tensor = torch.from_numpy(masks[batch].astype(np.float32))[:, None] if with_masks else None
        metrics.update(
            torch.from_numpy(maps[batch])[:, None],
            mask_tensor,
            torch.from_numpy(scores[batch]),
            torch.from_numpy(labels[batch]),
            list(defect_types[batch]),
        )


def assert_matches_subsets(per_defect: dict, maps, masks, scores, labels, defect_types) -> None:
    assert set(per_defect) == set(TYPES)
    for name, entry in per_defect.items():
        subset = (labels == 0) | (defect_types == name)
        assert entry["images"] == int(np.sum(defect_types == name))
        metrics = entry["metrics"]
        assert metrics["image_auroc"] == pytest.approx(pairwise_auroc(scores[subset], labels[subset]), abs=1e-12)
        assert metrics["pixel_auroc"] == pytest.approx(pairwise_auroc(maps[subset], masks[subset]), abs=1e-12)
        assert metrics["pixel_ap"] == pytest.approx(stepwise_average_precision(maps[subset], masks[subset]), abs=1e-12)
        assert metrics["pixel_aupro"] == pytest.approx(mvtec_aupro(maps[subset], masks[subset]), abs=1e-12)


def test_each_type_equals_the_reference_metrics_on_good_plus_its_images() -> None:
    data = typed_test_set(seed=5)
    metrics = AnomalyMetrics()
    feed(metrics, *data)
    overall = metrics.compute()
    assert_matches_subsets(metrics.per_defect, *data)
    maps, masks, scores, labels, _ = data
    assert overall["image_auroc"] == pytest.approx(auroc(scores, labels), abs=1e-12), "whole-set metrics unchanged"
    assert overall["pixel_aupro"] == pytest.approx(mvtec_aupro(maps, masks), abs=1e-12)


def test_repeated_compute_and_later_updates_keep_the_image_order() -> None:
    """The whole-set pixel metrics sort pixels; per-defect ones need them in image order at the next compute."""
    data = typed_test_set(seed=8)
    metrics = AnomalyMetrics()
    feed(metrics, *(part[:10] for part in data))
    metrics.compute()
    feed(metrics, *(part[10:] for part in data))
    metrics.compute()
    assert_matches_subsets(metrics.per_defect, *data)
    metrics.compute()
    assert_matches_subsets(metrics.per_defect, *data)


def test_merged_shards_give_the_whole_sets_per_defect_metrics() -> None:
    """Under DDP every state is concatenated rank after rank: names, pixel counts and pixels must stay aligned."""
    data = typed_test_set(seed=11)
    first, second = AnomalyMetrics(), AnomalyMetrics()
    feed(first, *(part[::2] for part in data))
    feed(second, *(part[1::2] for part in data))
    first.merge_state(second)
    first.compute()
    order = np.concatenate((np.arange(0, 18, 2), np.arange(1, 18, 2)))
    assert_matches_subsets(first.per_defect, *(part[order] for part in data))


def test_without_masks_only_image_auroc_per_type() -> None:
    data = typed_test_set(seed=2)
    metrics = AnomalyMetrics()
    feed(metrics, *data, with_masks=False)
    metrics.compute()
    assert all(set(entry["metrics"]) == {"image_auroc"} for entry in metrics.per_defect.values())


def test_a_type_with_empty_masks_says_why_its_pixel_metrics_are_missing() -> None:
    maps, masks, scores, labels, defect_types = typed_test_set(seed=4)
    unlabelled = defect_types == "stain"
    masks[unlabelled] = False  # anomalous images whose masks show nothing (e.g. a coarse label)
    metrics = AnomalyMetrics()
    feed(metrics, maps, masks, scores, labels, defect_types)
    metrics.compute()
    stain = metrics.per_defect["stain"]
    assert set(stain["metrics"]) == {"image_auroc"} and "masks are empty" in stain["skipped"]["pixel_aupro"]
    assert set(metrics.per_defect["scratch"]["metrics"]) == {"image_auroc", "pixel_auroc", "pixel_aupro", "pixel_ap"}


def test_types_for_only_some_batches_are_reported_not_guessed() -> None:
    maps, masks, scores, labels, defect_types = typed_test_set(seed=1)
    metrics = AnomalyMetrics()
    feed(metrics, maps[:10], masks[:10], scores[:10], labels[:10], defect_types[:10])
    metrics.update(
        torch.from_numpy(maps[10:]),
        torch.from_numpy(masks[10:].astype(np.float32)),
        torch.from_numpy(scores[10:]),
        torch.from_numpy(labels[10:]),
    )
    metrics.compute()
    assert metrics.per_defect == {} and "2 of 3 batches" in metrics.skip_reasons["per_defect"]


def test_bad_names_are_rejected_before_anything_is_stored() -> None:
    maps, masks, scores, labels, _ = typed_test_set(seed=3, images=4)
    metrics = AnomalyMetrics()
    args = (
        torch.from_numpy(maps)[:, None],
        torch.from_numpy(masks.astype(np.float32))[:, None],
        torch.from_numpy(scores),
        torch.from_numpy(labels),
    )
    with pytest.raises(ValueError, match=f"1 to {DEFECT_NAME_BYTES} UTF-8 bytes"):
        metrics.update(*args, ["good", "x" * (DEFECT_NAME_BYTES + 1), "a", "b"])
    with pytest.raises(ValueError, match="one name per image"):
        metrics.update(*args, ["good"])
    assert metrics.local_images == 0 and int(metrics.batches) == 0


def test_names_round_trip_through_the_fixed_width_encoding() -> None:
    names = ["good", "größe", "x" * DEFECT_NAME_BYTES]
    assert list(decode_defect_types(encode_defect_types(names, 3))) == names
