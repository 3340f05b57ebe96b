"""``trainer=ddp`` end to end with two CPU processes (gloo): the launcher, the sharded
batch sampler, test metrics on every rank and a single writer of the results."""

import json
import subprocess
import sys
from pathlib import Path

TRAIN = Path(__file__).resolve().parents[1] / "src" / "train.py"


def test_ddp_on_two_cpu_processes_trains_tests_and_writes_one_result(tmp_path):
    run_dir = tmp_path / "run"
    done = subprocess.run([
        sys.executable, str(TRAIN), "trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2", "trainer.precision=32-true",
        "schedule=smoke", "weights=null", "model.prototypes.iterations=10", "num_workers=0",
        f"paths.output_dir={run_dir}", f"paths.data_dir={tmp_path / 'data'}", "dataset.datamodule.num_train=16",
        "dataset.datamodule.num_test_good=4", "dataset.datamodule.num_test_per_defect=4",
    ], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads((run_dir / "results.json").read_text())
    assert result["world_size"] == 2 and result["steps"] == 4
    assert set(result["metrics"]) == {"image_auroc", "pixel_auroc", "pixel_aupro", "pixel_ap"}
    assert done.stdout.count("PRN · synthetic / tiles") == 1, "only rank 0 prints the results"
    assert "sync_dist" not in done.stderr
