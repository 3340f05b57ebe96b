"""AnomalyMetrics must equal the direct metric functions on the concatenated test set."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from metrics_references import mvtec_aupro, pairwise_auroc, random_maps, random_masks

from prn.metrics import AnomalyMetrics, accumulator, aupro, auroc, average_precision


def make_test_set(seed: int, images: int = 13, levels: int | None = None) -> tuple[np.ndarray, ...]:
    rng = np.random.default_rng(seed)
    masks = random_masks(rng, images, 16, 16)
    masks[0, :3, :3], masks[1] = True, False  # at least one anomalous and one normal image
    maps = random_maps(rng, masks, levels).astype(np.float32)
    labels = masks.any(axis=(1, 2)).astype(np.int64)
    image_scores = maps.reshape(images, -1).max(axis=1) + 0.1 * rng.random(images)
    return maps, masks, image_scores, labels


def feed(metrics: AnomalyMetrics, maps, masks, image_scores, labels, batch_size: int = 4, channel: bool = True) -> None:
    for start in range(0, len(maps), batch_size):
        batch = slice(start, start + batch_size)
        map_tensor = torch.from_numpy(maps[batch])
        mask_tensor = torch.from_numpy(masks[batch].astype(np.float32))
        if channel:
            map_tensor, mask_tensor = map_tensor[:, None], mask_tensor[:, None]
        metrics.update(map_tensor, mask_tensor, torch.from_numpy(image_scores[batch]), torch.from_numpy(labels[batch]))


@pytest.mark.parametrize("levels", [None, 3])
@pytest.mark.parametrize("channel", [True, False])
def test_equals_direct_functions(levels: int | None, channel: bool) -> None:
    maps, masks, image_scores, labels = make_test_set(seed=7, levels=levels)
    metrics = AnomalyMetrics()
    feed(metrics, maps, masks, image_scores, labels, channel=channel)
    result = metrics.compute()
    assert metrics.skipped == []
    assert result["image_auroc"] == pytest.approx(pairwise_auroc(image_scores, labels), abs=1e-12)
    assert result["pixel_auroc"] == pytest.approx(auroc(maps, masks), abs=1e-12)
    assert result["pixel_ap"] == pytest.approx(average_precision(maps, masks), abs=1e-12)
    assert result["pixel_aupro"] == pytest.approx(aupro(maps, masks), abs=1e-12)
    assert result["pixel_aupro"] == pytest.approx(mvtec_aupro(maps, masks), abs=1e-12)


def test_compute_is_repeatable_and_later_updates_extend_the_state() -> None:
    maps, masks, image_scores, labels = make_test_set(seed=3, images=16)
    full = AnomalyMetrics()
    feed(full, maps, masks, image_scores, labels)
    expected = full.compute()
    assert full.compute() == expected
    partial = AnomalyMetrics()
    feed(partial, maps[:8], masks[:8], image_scores[:8], labels[:8])
    partial.compute()
    feed(partial, maps[8:], masks[8:], image_scores[8:], labels[8:])
    assert partial.compute() == pytest.approx(expected, abs=1e-12)


def test_missing_masks_skip_pixel_metrics() -> None:
    maps, masks, image_scores, labels = make_test_set(seed=1, images=8)
    metrics = AnomalyMetrics()
    feed(metrics, maps[:4], masks[:4], image_scores[:4], labels[:4])
    metrics.update(torch.from_numpy(maps[4:]), None, torch.from_numpy(image_scores[4:]), torch.from_numpy(labels[4:]))
    result = metrics.compute()
    assert set(result) == {"image_auroc"}
    assert metrics.skipped == ["pixel_auroc", "pixel_aupro", "pixel_ap"]
    assert "1 of 2 batches" in metrics.skip_reasons["pixel_aupro"]


def test_single_class_is_skipped_not_raised() -> None:
    maps, masks, image_scores, labels = make_test_set(seed=2, images=4)
    metrics = AnomalyMetrics()
    empty = np.zeros_like(masks)
    feed(metrics, maps, empty, image_scores, np.zeros_like(labels))
    assert metrics.compute() == {}
    assert metrics.skipped == ["image_auroc", "pixel_auroc", "pixel_aupro", "pixel_ap"]


def test_reset_forgets_everything() -> None:
    maps, masks, image_scores, labels = make_test_set(seed=4)
    metrics = AnomalyMetrics()
    feed(metrics, maps, masks, image_scores, labels)
    metrics.reset()
    assert metrics.compute() == {}
    assert "no batches" in metrics.skip_reasons["image_auroc"]


def test_bad_batches_are_rejected() -> None:
    maps, masks, image_scores, labels = make_test_set(seed=5, images=4)
    metrics = AnomalyMetrics()
    map_tensor, mask_tensor = torch.from_numpy(maps), torch.from_numpy(masks.astype(np.float32))
    scores_tensor, labels_tensor = torch.from_numpy(image_scores), torch.from_numpy(labels)
    with pytest.raises(ValueError, match="resize the maps"):
        metrics.update(map_tensor[:, :8], mask_tensor, scores_tensor, labels_tensor)
    with pytest.raises(ValueError, match="only 0 and 1"):
        metrics.update(map_tensor, mask_tensor * 0.5, scores_tensor, labels_tensor)
    with pytest.raises(ValueError, match="image_scores has 3"):
        metrics.update(map_tensor, mask_tensor, scores_tensor[:3], labels_tensor)
    with pytest.raises(ValueError, match="NaN"):
        metrics.update(torch.full_like(map_tensor, float("nan")), mask_tensor, scores_tensor, labels_tensor)
    assert metrics.compute() == {}, "rejected batches must leave no partial state"
    with pytest.raises(ValueError, match="fpr_limit"):
        AnomalyMetrics(fpr_limit=1.5)


def test_bfloat16_maps_are_accepted() -> None:
    maps, masks, image_scores, labels = make_test_set(seed=8, images=6)
    metrics = AnomalyMetrics()
    metrics.update(
        torch.from_numpy(maps).to(torch.bfloat16),
        torch.from_numpy(masks),
        torch.from_numpy(image_scores).to(torch.bfloat16),
        torch.from_numpy(labels),
    )
    rounded_maps = torch.from_numpy(maps).to(torch.bfloat16).float().numpy()
    assert metrics.compute()["pixel_aupro"] == pytest.approx(aupro(rounded_maps, masks), abs=1e-12)


def test_tiny_storage_slabs_give_the_same_results(monkeypatch: pytest.MonkeyPatch) -> None:
    """Values spanning many slabs, consolidated twice, must not be lost or duplicated."""
    maps, masks, image_scores, labels = make_test_set(seed=6, images=16, levels=4)
    expected = AnomalyMetrics()
    feed(expected, maps, masks, image_scores, labels)
    monkeypatch.setattr(accumulator._SlabBuffer, "SLAB_BYTES", 68)  # 17 values per slab
    metrics = AnomalyMetrics()
    feed(metrics, maps[:9], masks[:9], image_scores[:9], labels[:9], batch_size=3)
    metrics.compute()
    feed(metrics, maps[9:], masks[9:], image_scores[9:], labels[9:], batch_size=3)
    assert metrics.compute() == pytest.approx(expected.compute(), abs=1e-12)


@pytest.mark.parametrize("target", [torch.device("meta"), torch.bfloat16])
def test_moving_the_owning_module_keeps_the_states_on_the_cpu(target) -> None:
    """A LightningModule moved to a GPU (here: meta) or a dtype must not move the test set."""
    maps, masks, image_scores, labels = make_test_set(seed=9)
    expected = AnomalyMetrics()
    feed(expected, maps, masks, image_scores, labels)
    owner = torch.nn.Module()
    owner.metrics = AnomalyMetrics()
    feed(owner.metrics, maps[:6], masks[:6], image_scores[:6], labels[:6])
    owner.to(target)
    feed(owner.metrics, maps[6:], masks[6:], image_scores[6:], labels[6:])
    assert owner.metrics.device == torch.device("cpu")
    assert owner.metrics.compute() == pytest.approx(expected.compute(), abs=1e-12)
    states = owner.metrics.metric_state
    parts = [part for value in states.values() for part in (value if isinstance(value, list) else [value])]
    assert {part.device.type for part in parts} == {"cpu"}
    assert states["normal_scores"][0].dtype == torch.float32


def test_local_images_counts_this_process_updates_and_forward_is_refused() -> None:
    maps, masks, image_scores, labels = make_test_set(seed=10, images=9)
    metrics = AnomalyMetrics()
    feed(metrics, maps, masks, image_scores, labels)
    assert metrics.local_images == 9
    with pytest.raises(NotImplementedError, match="update"):
        metrics(torch.from_numpy(maps), None, torch.from_numpy(image_scores), torch.from_numpy(labels))
    metrics.reset()
    assert metrics.local_images == 0


def test_merge_state_adds_another_metrics_data() -> None:
    maps, masks, image_scores, labels = make_test_set(seed=12, images=12, levels=3)
    expected = AnomalyMetrics()
    feed(expected, maps, masks, image_scores, labels)
    first, second = AnomalyMetrics(), AnomalyMetrics()
    feed(first, maps[:5], masks[:5], image_scores[:5], labels[:5])
    feed(second, maps[5:], masks[5:], image_scores[5:], labels[5:])
    first.merge_state(second)
    assert first.compute() == pytest.approx(expected.compute(), abs=1e-12)
