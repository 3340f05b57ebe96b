"""benchmarks/inference_speed.py times each backend on a tiny checkpoint and prints the table docs/deploy.md quotes."""

import subprocess
import sys
from pathlib import Path

import lightning as L
import numpy as np
import torch
from PIL import Image

from prn.models import PRNet
from prn.training.module import PRNModule

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "inference_speed.py"


def _tiny_checkpoint(path: Path) -> Path:
    torch.manual_seed(0)
    module = PRNModule(
        PRNet(encoder_weights=None, msa_depth=1), data_config={"name": "synthetic", "image_size": 128}, top_k=10
    )
    module.net.set_prototypes([torch.rand(2, c, 128 // s, 128 // s) for c, s in [(64, 4), (128, 8), (256, 16)]])
    trainer = L.Trainer(accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False)
    trainer.strategy.connect(module)
    trainer.save_checkpoint(path)
    return path


def test_inference_speed_prints_latency_and_throughput_per_backend_with_ratios_to_eager(tmp_path):
    checkpoint = _tiny_checkpoint(tmp_path / "last.ckpt")
    (tmp_path / "images").mkdir()
    for index in range(2):
        Image.fromarray(np.full((90, 120, 3), 60 * index, np.uint8)).save(tmp_path / "images" / f"{index}.png")
    done = subprocess.run(
        [
            sys.executable,
            str(SCRIPT),
            "--ckpt",
            str(checkpoint),
            "--images",
            str(tmp_path / "images"),
            "--export-dir",
            str(tmp_path / "exports"),
            "--backends",
            "eager",
            "torch.export",
            "--batch",
            "2",
            "--repeats",
            "1",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert (
        "| backend | latency, batch 1 (ms/image) | vs eager | throughput, batch 2 (images/s) | vs eager |"
        in done.stdout
    )
    assert "| eager |" in done.stdout and "| 1.00x |" in done.stdout and "| torch.export |" in done.stdout
    assert (tmp_path / "exports" / "prn.pt2").is_file() and "load average" in done.stdout
