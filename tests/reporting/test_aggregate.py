"""Aggregator: paper values load, jobs land in the right rows, gaps show as missing."""

import csv
import json
import re
from pathlib import Path

import pytest
import yaml

from prn.reporting.aggregate import MISSING, aggregate, build_rows, collect_jobs, load_paper_tables, main


def _write_job(
    sweep: Path,
    name: str,
    config: dict,
    metrics: dict,
    seconds: float = 0.05,
    seed: int = 0,
    per_defect: dict | None = None,
) -> None:
    run_dir = sweep / name
    run_dir.mkdir(parents=True)
    result = {"metrics": metrics, "inference_seconds_per_image": seconds, "seed": seed, "per_defect": per_defect or {}}
    (run_dir / "results.json").write_text(json.dumps(result))
    (run_dir / "config.yaml").write_text(yaml.safe_dump(config))


def _mvtec(category: str, **extra) -> dict:
    return {"dataset": {"name": "mvtec"}, "category": category, **extra}


METRICS = {"image_auroc": 0.99, "pixel_auroc": 0.98, "pixel_aupro": 0.95, "pixel_ap": 0.70}


def test_paper_values_are_transcribed_with_the_right_shapes():
    tables = load_paper_tables()
    assert set(tables) == {f"table{n}" for n in range(1, 9)}
    table1 = {row["id"]: row for row in tables["table1"]["rows"]}
    assert len(table1) == 16 and table1["carpet"]["paper"]["PRN"] == [99.7, 99.0]
    assert table1["mean"]["paper"]["PRN"] == [99.4, 99.0]
    assert {row["id"]: row for row in tables["table2"]["rows"]}["mean"]["paper"]["PRN"] == [96.1, 78.6]
    assert tables["table3"]["rows"][0]["paper"]["PRN"][-1] == 0.064
    assert [row["paper"]["PRN"][0] for row in tables["table7"]["rows"]] == [98.8, 99.2, 99.4]
    assert {row["id"]: row for row in tables["table8"]["rows"]}["ksdd2"]["paper"]["PRN"] == [96.4, 97.6, 94.9, 72.5]


def test_bad_paper_table_names_the_file_and_row(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        yaml.safe_dump({"tables": {"t": {"metrics": ["image_auroc"], "rows": [{"id": "r", "paper": {"PRN": [1, 2]}}]}}})
    )
    with pytest.raises(ValueError, match="bad.yaml: t row r"):
        load_paper_tables(bad)


def test_ablation_rows_average_categories_and_show_differences(tmp_path):
    spec = load_paper_tables()["table4"]
    full = {"model": {"net": {"use_mp": True, "use_msa": True, "use_mf": True}}}
    _write_job(tmp_path, "0_bottle", _mvtec("bottle", **full), METRICS)
    _write_job(tmp_path, "1_screw", _mvtec("screw", **full), {**METRICS, "image_auroc": 0.97})
    rows = {row.id: row for row in build_rows(spec, collect_jobs(tmp_path))}
    assert rows["full"].ours["image_auroc"] == pytest.approx(98.0) and len(rows["full"].jobs) == 2
    assert rows["baseline"].ours == {}
    markdown, _ = aggregate("table4", tmp_path)
    text = markdown.read_text()
    assert "| U-Net + MP + MSA + MF (PRN) | 2/15 | 98.0 | 99.4 | -1.4 |" in text
    assert f"| U-Net | 0/15 | {MISSING} | 97.4 | – |" in text and "SMOKE" not in text


def test_partial_table1_mean_row_and_csv(tmp_path):
    _write_job(tmp_path, "0_bottle", _mvtec("bottle"), METRICS)
    (tmp_path / "1_cable").mkdir()  # a job that died before writing results.json
    markdown, table_csv = aggregate("table1", tmp_path, out_dir=tmp_path / "out")
    rows = {row["row"]: row for row in csv.DictReader(table_csv.open())}
    assert rows["bottle"]["image_auroc_ours"] == "99.0" and rows["bottle"]["image_auroc_diff"] == "-1.0"
    assert rows["cable"]["image_auroc_ours"] == "" and rows["cable"]["image_auroc_paper"] == "98.9"
    assert rows["mean"]["jobs"] == "1" and float(rows["mean"]["pixel_auroc_ours"]) == pytest.approx(98.0)
    assert "DevNet" in markdown.read_text()  # other methods quoted for context


def test_smoke_jobs_get_their_own_rows_and_a_banner(tmp_path):
    for num, category in enumerate(["tiles", "discs"]):
        _write_job(
            tmp_path, f"{num}_{category}", {"dataset": {"name": "synthetic"}, "category": category, "seen": 5}, METRICS
        )
    markdown, _ = aggregate("table7", tmp_path)
    text = markdown.read_text()
    assert "SMOKE RUN on synthetic data" in text
    assert "| 5 seen | 2/15 | 99.0 |" in text and "| 1 seen | 0/15 | missing |" in text


def test_time_column_stays_in_seconds(tmp_path):
    _write_job(
        tmp_path, "0_bottle", _mvtec("bottle", callbacks={"prototypes": {"ratio": 0.1}}), METRICS, seconds=0.0712
    )
    text = aggregate("table6", tmp_path)[0].read_text()
    assert (
        "| PRN 10% | 1/15 | 99.0 | 99.4 | -0.4 | 98.0 | 99.0 | -1.0 | 95.0 | 96.1 | -1.1 | 70.0 | 78.6 | -8.6 | 0.071 | 0.064 | +0.007 |"
        in text
    )


def test_cli_errors_name_the_option(tmp_path):
    with pytest.raises(FileNotFoundError, match="--sweep-dir"):
        main(["--table", "table1", "--sweep-dir", str(tmp_path / "nope")])
    with pytest.raises(KeyError, match="--table 'table9'"):
        main(["--table", "table9", "--sweep-dir", str(tmp_path)])


def test_seeds_make_each_cell_a_mean_and_spread(tmp_path):
    for seed, value in enumerate([0.99, 0.97, 0.98]):
        _write_job(tmp_path, f"{seed}_bottle", _mvtec("bottle"), {**METRICS, "image_auroc": value}, seed=seed)
        _write_job(tmp_path, f"{seed}_cable", _mvtec("cable"), {**METRICS, "image_auroc": 0.90 + seed / 100}, seed=seed)
    markdown, table_csv = aggregate("table1", tmp_path)
    text = markdown.read_text()
    assert "Seeds: 0, 1, 2. Each cell is the mean ± sample standard deviation over the 3 seeds" in text
    assert "| bottle | 3/3 | 98.0 ± 1.0 | 100.0 | -2.0 | 98.0 ± 0.0 |" in text
    assert "| Average | 6 jobs | 94.5 ± 0.5 |" in text, (
        "per seed the mean over categories (94.5, 94.0, 95.0), then over seeds"
    )
    assert "| carpet | 0/3 | missing |" in text
    rows = {row["row"]: row for row in csv.DictReader(table_csv.open())}
    assert (
        rows["bottle"]["seeds"] == "3"
        and rows["bottle"]["image_auroc_std"] == "1.0"
        and rows["bottle"]["image_auroc_ours"] == "98.0"
    )


def test_rows_over_categories_average_per_seed_before_the_spread(tmp_path):
    full = {"model": {"net": {"use_mp": True, "use_msa": True, "use_mf": True}}}
    for seed, (bottle, screw) in enumerate([(0.99, 0.97), (0.98, 0.96)]):
        _write_job(tmp_path, f"{seed}_bottle", _mvtec("bottle", **full), {**METRICS, "image_auroc": bottle}, seed=seed)
        _write_job(tmp_path, f"{seed}_screw", _mvtec("screw", **full), {**METRICS, "image_auroc": screw}, seed=seed)
    rows = {row.id: row for row in build_rows(load_paper_tables()["table4"], collect_jobs(tmp_path))}
    assert rows["full"].per_seed[0]["image_auroc"] == pytest.approx(98.0) and rows["full"].per_seed[1][
        "image_auroc"
    ] == pytest.approx(97.0)
    assert rows["full"].ours["image_auroc"] == pytest.approx(97.5) and rows["full"].spread[
        "image_auroc"
    ] == pytest.approx(0.5**0.5)
    assert "| U-Net + MP + MSA + MF (PRN) | 4/30 | 97.5 ± 0.7 |" in aggregate("table4", tmp_path)[0].read_text()


def test_per_defect_metrics_get_their_own_rows_over_seeds(tmp_path):
    for seed, value in enumerate([0.9, 0.8]):
        per_defect = {
            "broken_large": {"images": 14, "metrics": {"image_auroc": 1.0, "pixel_auroc": value}},
            "contamination": {"images": 19, "metrics": {"image_auroc": value, "pixel_auroc": 0.95}},
        }
        _write_job(tmp_path, f"{seed}_bottle", _mvtec("bottle"), METRICS, seed=seed, per_defect=per_defect)
    markdown, _ = aggregate("table1", tmp_path)
    text = markdown.read_text()
    assert "Per defect type (ours only; the paper reports none)" in text
    assert "| bottle | bottle | broken_large | 2 | 100.0 ± 0.0 | 85.0 ± 7.1 |" in text
    assert "| bottle | bottle | contamination | 2 | 85.0 ± 7.1 | 95.0 ± 0.0 |" in text
    rows = list(csv.DictReader((tmp_path / "table1_per_defect.csv").open()))
    assert [(row["defect_type"], row["seeds"], row["pixel_auroc_ours"], row["pixel_auroc_std"]) for row in rows] == [
        ("broken_large", "2", "85.0", "7.0711"),
        ("contamination", "2", "95.0", "0.0"),
    ]


def test_one_seed_shows_no_spread_and_says_so(tmp_path):
    _write_job(
        tmp_path,
        "0_bottle",
        _mvtec("bottle"),
        METRICS,
        per_defect={"crack": {"images": 3, "metrics": {"image_auroc": 0.5}}},
    )
    text = aggregate("table1", tmp_path)[0].read_text()
    assert "Seeds: 0 (one seed per cell: no spread measured)." in text and not re.search(r"\d ± \d", text)
    assert "| bottle | bottle | crack | 1 | 50.0 | missing |" in text


def test_a_shorter_schedule_than_the_papers_is_said_above_the_table(tmp_path):
    paper = {"epochs": 700, "max_steps": -1, "batch_size": 64}
    _write_job(tmp_path / "paper", "0_bottle", _mvtec("bottle", **paper), METRICS)
    assert "Schedule:" not in aggregate("table1", tmp_path / "paper")[0].read_text()
    _write_job(tmp_path / "cpu", "0_bottle", _mvtec("bottle", epochs=1000, max_steps=300, batch_size=8), METRICS)
    text = aggregate("table1", tmp_path / "cpu")[0].read_text()
    assert "Schedule: epochs=1000, max_steps=300, batch_size=8, not the paper's 700 epochs of batch 64" in text
