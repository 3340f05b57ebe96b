"""AnomalyMetrics under DDP: two CPU processes (gloo), each updating with its own shard,
must both return the single-process metrics of the whole test set."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from metrics_references import mvtec_aupro, pairwise_auroc, random_maps, random_masks, stepwise_average_precision

from prn.metrics import AnomalyMetrics, accumulator

WORLD_SIZE = 2
IMAGES = 13  # shards of 7 and 6 images: uneven, as in a real sharded test set


def make_test_set(seed: int = 11) -> tuple[np.ndarray, ...]:
    """Maps rounded to 3 levels (many ties) over masks with touching regions and empty images."""
    rng = np.random.default_rng(seed)
    masks = random_masks(rng, IMAGES, 16, 16)
    masks[0, :3, :3], masks[1] = True, False
    maps = random_maps(rng, masks, levels=3).astype(np.float32)
    labels = masks.any(axis=(1, 2)).astype(np.int64)
    image_scores = np.round(maps.reshape(IMAGES, -1).max(axis=1) * 2) / 2  # ties between images too
    return maps, masks, image_scores, labels


def defect_types(labels: np.ndarray) -> list[str]:
    """Two defect types taking turns over the anomalous images."""
    return ["good" if label == 0 else ("dent", "crack")[index % 2] for index, label in enumerate(labels)]


def feed(
    metrics: AnomalyMetrics, indices: np.ndarray, with_masks: bool = True, batch_size: int = 3, with_types: bool = False
) -> None:
    maps, masks, image_scores, labels = make_test_set()
    types = np.array(defect_types(labels), dtype=object)
    for start in range(0, len(indices), batch_size):
        batch = indices[start : start + batch_size]
        mask_tensor = torch.from_numpy(masks[batch])[:, None] if with_masks else None
        metrics.update(
            torch.from_numpy(maps[batch])[:, None],
            mask_tensor,
            torch.from_numpy(image_scores[batch]),
            torch.from_numpy(labels[batch]),
            list(types[batch]) if with_types else None,
        )


def run_rank(rank: int, init_file: str, out_dir: str) -> None:
    """Every scenario on one rank; results go to ``rank<r>.json``."""
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=WORLD_SIZE)
    try:
        shard = np.arange(IMAGES)[rank::WORLD_SIZE]
        results = {}
        metrics = AnomalyMetrics()
        feed(metrics, shard)
        results["sharded"] = metrics.compute()
        results["local_images"] = metrics.local_images
        typed = AnomalyMetrics()
        feed(typed, shard, with_types=True)
        results["typed"] = [typed.compute(), typed.per_defect]

        accumulator._SlabBuffer.SLAB_BYTES = 68  # 17 values per slab: states span many slabs
        growing = AnomalyMetrics()
        feed(growing, shard[:2])
        growing.compute()  # gathers, then must give back this rank's own state
        feed(growing, shard[2:])
        results["grown_after_compute"] = growing.compute()

        lopsided = AnomalyMetrics()  # rank 1 updates with nothing at all
        feed(lopsided, np.arange(IMAGES) if rank == 0 else np.arange(0))
        results["one_rank_empty"] = lopsided.compute()

        no_masks = AnomalyMetrics()
        feed(no_masks, shard, with_masks=False)
        results["no_masks"] = [no_masks.compute(), no_masks.skip_reasons["pixel_ap"]]
        (Path(out_dir) / f"rank{rank}.json").write_text(json.dumps(results))
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def ddp_results(tmp_path_factory: pytest.TempPathFactory) -> list[dict]:
    tmp_path = tmp_path_factory.mktemp("ddp")
    mp.spawn(run_rank, args=(str(tmp_path / "init"), str(tmp_path)), nprocs=WORLD_SIZE, join=True)
    return [json.loads((tmp_path / f"rank{rank}.json").read_text()) for rank in range(WORLD_SIZE)]


@pytest.fixture(scope="module")
def single_process() -> dict[str, float]:
    metrics = AnomalyMetrics()
    feed(metrics, np.arange(IMAGES))
    return metrics.compute()


def test_every_rank_returns_the_single_process_result(ddp_results, single_process) -> None:
    assert [result["local_images"] for result in ddp_results] == [7, 6]
    for result in ddp_results:
        for scenario in ("sharded", "grown_after_compute", "one_rank_empty"):
            assert result[scenario].keys() == single_process.keys()
            assert result[scenario] == pytest.approx(single_process, abs=1e-12), scenario


def test_the_gathered_result_equals_brute_force_references(ddp_results) -> None:
    maps, masks, image_scores, labels = make_test_set()
    expected = {
        "image_auroc": pairwise_auroc(image_scores, labels),
        "pixel_auroc": pairwise_auroc(maps, masks),
        "pixel_aupro": mvtec_aupro(maps, masks),
        "pixel_ap": stepwise_average_precision(maps, masks),
    }
    for result in ddp_results:
        assert result["sharded"] == pytest.approx(expected, abs=1e-12)


def test_missing_masks_are_counted_over_all_ranks(ddp_results, single_process) -> None:
    for result in ddp_results:
        metrics, reason = result["no_masks"]
        assert metrics == pytest.approx({"image_auroc": single_process["image_auroc"]}, abs=1e-12)
        assert reason == "masks were None for 5 of 5 batches"  # 3 + 2 batches of up to 3 images


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU for the NCCL backend")
def test_nccl_gathers_cpu_states_through_the_gpu(tmp_path, single_process) -> None:
    """One NCCL rank is enough to check the states travel to the GPU and come back."""
    torch.cuda.set_device(0)
    dist.init_process_group("nccl", init_method=f"file://{tmp_path / 'init'}", rank=0, world_size=1)
    try:
        metrics = AnomalyMetrics()
        feed(metrics, np.arange(IMAGES))
        assert metrics.compute() == pytest.approx(single_process, abs=1e-12)
        assert all(part.device.type == "cpu" for part in metrics.normal_scores)
    finally:
        dist.destroy_process_group()


def test_per_defect_metrics_are_gathered_over_all_ranks(ddp_results, single_process) -> None:
    """Names (uint8), pixel counts and pixels are gathered separately; they must stay aligned."""
    whole = AnomalyMetrics()
    feed(whole, np.arange(IMAGES), with_types=True)
    whole.compute()
    assert set(whole.per_defect) == {"dent", "crack"}
    for result in ddp_results:
        overall, per_defect = result["typed"]
        assert overall == pytest.approx(single_process, abs=1e-12)
        assert per_defect.keys() == whole.per_defect.keys()
        for name, entry in whole.per_defect.items():
            assert per_defect[name]["images"] == entry["images"]
            assert per_defect[name]["metrics"] == pytest.approx(entry["metrics"], abs=1e-12), name
