"""Smoke reproduction: a table's Hydra sweep of tiny jobs, then its aggregation."""

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from prn.pipeline import train
from prn.reporting.aggregate import aggregate

REPO = Path(__file__).resolve().parents[1]
SMOKE = ["dataset=synthetic", "debug=tiny"]


@pytest.fixture
def _compose(compose_cfg):
    return lambda overrides: compose_cfg("train", overrides)


@pytest.mark.parametrize("table", [f"table{n}" for n in range(1, 9)])
def test_every_experiment_composes_at_paper_scale(table, _compose):
    cfg = _compose([f"experiment={table}"])
    assert cfg.epochs == 700 and cfg.batch_size == 64
    assert cfg.dataset.name == ("dagm" if table == "table8" else "mvtec")


def test_table5_rows_set_the_generation_switches(_compose):
    cfg = _compose(["experiment=table5", "experiment/table5_rows@_global_=hea_hoa_ta"])
    assert (cfg.generation.ea, cfg.generation.hea, cfg.generation.hoa, cfg.generation.ta) == (False, True, True, True)


def test_table8_cells_pair_dataset_and_category(_compose):
    cfg = _compose(["experiment=table8", "experiment/table8_cells@_global_=btad_02"])
    assert cfg.dataset.name == "btad" and cfg.category == "02" and cfg.epochs == 700


def test_in_process_job_lands_in_its_table_row(tmp_path, _compose):
    """Fast variant of the sweep below: one smoke job of Table 7 written like a sweep job."""
    run_dir = tmp_path / "sweep" / "0_synthetic_tiles"
    cfg = _compose(
        [
            "experiment=table7",
            *SMOKE,
            "seen=5",
            "category=tiles",
            "max_steps=1",
            f"paths.output_dir={run_dir}",
            f"paths.data_dir={tmp_path / 'data'}",
            "synthetic.num_train=12",
        ]
    )
    result = train(cfg)
    saved = json.loads((run_dir / "results.json").read_text())
    assert saved["config"]["seen"] == 5 and saved["seed"] == 0 and saved["git_commit"] and saved["hardware"]
    text = aggregate("table7", tmp_path / "sweep")[0].read_text()
    assert "SMOKE RUN" in text
    assert f"| 5 seen | 1/15 | {100 * result['metrics']['image_auroc']:.1f} | 99.2 |" in text


def test_multirun_of_two_seeds_then_aggregation(tmp_path):
    """`python src/train.py -m` as `make reproduce-table7 SCALE=smoke SEEDS=0,1` runs it, one category (~20 s on 2 idle cores)."""
    sweep = tmp_path / "table7"
    command = [
        sys.executable,
        "src/train.py",
        "-m",
        "experiment=table7",
        *SMOKE,
        "seen=10",
        "category=tiles",
        "seed=0,1",
        f"hydra.sweep.dir={sweep}",
        f"paths.data_dir={tmp_path / 'data'}",
    ]
    subprocess.run(command, cwd=REPO, check=True, capture_output=True, timeout=600)
    seeds = sorted(json.loads(path.read_text())["seed"] for path in sweep.rglob("results.json"))
    assert seeds == [0, 1], "one job per seed"
    text = aggregate("table7", sweep)[0].read_text()
    assert "Seeds: 0, 1." in text and "| 1 seen | 0/30 | missing |" in text
    assert re.search(r"\| 10 seen \| 2/30 \| \d+\.\d ± \d+\.\d \|", text), "mean ± std over the two seeds"
    assert re.search(r"\| 10 seen \| tiles \| \w+ \| 2 \|", text), "per-defect rows over both seeds"


@pytest.mark.parametrize("seeds, expected", [("0,1,2", "seed=0,1,2"), ("", None)])
def test_make_adds_the_seeds_to_the_sweep(seeds, expected):
    """`make reproduce-tableN SEEDS=0,1,2` sweeps the seed too; without SEEDS the configs' seed stays."""
    dry_run = subprocess.run(
        ["make", "-n", "reproduce-table1", f"SEEDS={seeds}"], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout
    command = dry_run[dry_run.index("src/train.py -m experiment=table1") : dry_run.index("|| status")].split()
    assert [part for part in command if part.startswith("seed=")] == ([expected] if expected else []), command
