"""``trainer=ddp`` end to end with two CPU processes (gloo): the launcher, the sharded
batch sampler, test metrics on every rank and a single writer of the results."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from prn.pipeline import evaluate

TRAIN = Path(__file__).resolve().parents[1] / "src" / "train.py"


def test_ddp_on_two_cpu_processes_trains_tests_and_writes_one_result(tmp_path, compose_cfg):
    run_dir = tmp_path / "run"
    done = subprocess.run(
        [
            sys.executable,
            str(TRAIN),
            "trainer=ddp",
            "trainer.accelerator=cpu",
            "trainer.devices=2",
            "trainer.precision=32-true",
            "debug=tiny",
            f"paths.output_dir={run_dir}",
            f"paths.data_dir={tmp_path / 'data'}",
            "dataset.datamodule.eval_batch_size=1",  # one image per forward: maps bit-identical to the single process's below
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads((run_dir / "results.json").read_text())
    assert result["world_size"] == 2 and result["steps"] == 4
    assert set(result["metrics"]) == {"image_auroc", "pixel_auroc", "pixel_aupro", "pixel_ap"}
    assert done.stdout.count("PRN · synthetic / tiles") == 1, "only rank 0 prints the results"
    assert "sync_dist" not in done.stderr
    test_images = result["split"]["counts"]["test"]
    assert sorted(result["test_images_per_rank"]) == [test_images // 2, test_images - test_images // 2], (
        "each rank scores its own half"
    )
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as each DDP process on 2 cores ran: the same float summation order, bit-identical maps
    try:
        single = evaluate(
            compose_cfg(
                "eval",
                [
                    f"ckpt_path={run_dir / 'checkpoints' / 'last.ckpt'}",
                    f"paths.output_dir={tmp_path / 'eval'}",
                    "batch_size=1",
                ],
            )
        )
    finally:
        torch.set_num_threads(threads)
    assert single["test_images_per_rank"] == [test_images]
    for name, value in single["metrics"].items():
        assert result["metrics"][name] == pytest.approx(value, abs=1e-12), (
            f"{name}: synced shards differ from one process"
        )
    assert result["per_defect"].keys() == single["per_defect"].keys() and result["per_defect"]
    for name, entry in single["per_defect"].items():
        assert result["per_defect"][name]["metrics"] == pytest.approx(entry["metrics"], abs=1e-12), (
            f"{name}: per-defect metrics differ"
        )
    assert "Worst false negatives" in (run_dir / "report.html").read_text(), (
        "rank 0 writes the report with every rank's images"
    )


@pytest.mark.slow  # four processes, 70 s on 2 cores: make test-all; the single-run DDP test above stays in make test
def test_ddp_inside_a_multirun_pairs_every_job_with_its_own_ranks(tmp_path):
    """Lightning's launcher re-runs the command, so rank 1 runs the same sweep in lockstep
    with rank 0; with an explicit sweep dir (as make sets it) every job ends complete."""
    sweep = tmp_path / "sweep"
    done = subprocess.run(
        [
            sys.executable,
            str(TRAIN),
            "-m",
            "trainer=ddp",
            "trainer.accelerator=cpu",
            "trainer.devices=2",
            "trainer.precision=32-true",
            "debug=tiny",
            f"paths.data_dir={tmp_path / 'data'}",
            f"hydra.sweep.dir={sweep}",
            "seed=0,1",
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    results = sorted(sweep.glob("*/results.json"))
    assert len(results) == 2
    for path in results:
        result = json.loads(path.read_text())
        assert result["world_size"] == 2 and result["steps"] == 4 and len(result["metrics"]) == 4
