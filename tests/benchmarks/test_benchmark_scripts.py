"""The benchmark scripts run (tiny settings) and print what docs/results.md quotes from them."""

import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from prn.data.folder import scan_folder

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


def _run(script, *args, cwd=None):
    done = subprocess.run(
        [sys.executable, str(BENCHMARKS / script), *args], capture_output=True, text=True, timeout=300, cwd=cwd
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def test_model_speed_reports_times_flops_and_parts_with_channels_last_and_bf16():
    out = _run(
        "model_speed.py",
        "--batch",
        "1",
        "--size",
        "128",
        "--repeats",
        "1",
        "--threads",
        "1",
        "--channels-last",
        "--bf16",
    )
    assert "channels_last=True bf16=True" in out
    assert "forward (eval, no_grad)" in out and "forward+backward (train)" in out
    assert "GFLOPs/image            total" in out and "decoder" in out


def test_data_pipeline_reports_every_source_and_a_projection(tmp_path):
    out = _run(
        "data_pipeline.py",
        "--items",
        "2",
        "--batches",
        "1",
        "--workers",
        "0",
        "--devices",
        "cpu",
        "--",
        f"paths.data_dir={tmp_path}",
        "dataset.datamodule.num_train=8",
        "dataset.datamodule.num_test_good=2",
        "dataset.datamodule.num_test_per_defect=2",
        "seen=2",
    )
    for source in ("normal", "ea", "sa"):
        assert f"  {source} " in out
    assert "DataLoader workers=0" in out and "the data alone needs" in out
    assert "batched on cpu (generation.on_device)" in out


def test_surface_proxy_writes_a_folder_dataset_of_long_strips_with_thin_masked_cracks(tmp_path):
    counts = ["--train-good", "3", "--train-per-defect", "1", "--test-good", "2", "--test-per-defect", "2"]
    _run("surface_proxy.py", "--out", str(tmp_path), *counts)
    split = scan_folder(tmp_path, "strip")
    assert len(split.train_normal) == 3 and len(split.train_anomalous) == 2 and split.pixel_labels
    assert sorted({r.defect_type for r in split.test}) == ["crack", "good", "hairline"]
    for record in split.test:
        assert Image.open(record.image_path).size == (1024, 256)  # 4:1
        if record.label:
            mask = np.asarray(Image.open(record.mask_path)) > 0
            assert 0 < mask.mean() < 0.01  # thin: under 1 % of the strip
