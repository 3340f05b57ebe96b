"""Collect a sweep's ``results.json`` files into one of the paper's tables, ours beside theirs.

``python -m prn.reporting.aggregate --table table4 --sweep-dir logs/reproduce/paper/table4``
writes ``table4.md`` and ``table4.csv`` into the sweep folder. A job lands in a row when its
resolved config (``config.yaml`` beside its ``results.json``) has the row's ``match`` values;
rows the paper averages over categories show the mean of their jobs and how many there
were, so a partial sweep still aggregates and a missing row says "missing".
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import statistics
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from omegaconf import OmegaConf

PAPER_TABLES = Path(__file__).with_name("paper_tables.yaml")
METHOD = "PRN"
SECONDS_METRICS = {"inference_seconds_per_image"}
METRIC_SHORT = {
    "image_auroc": "I-AUROC",
    "pixel_auroc": "P-AUROC",
    "pixel_aupro": "PRO",
    "pixel_ap": "AP",
    "inference_seconds_per_image": "T (s/img)",
}
MISSING = "missing"
SMOKE_BANNER = (
    "> **SMOKE RUN on synthetic data (schedule=smoke, random encoder): these numbers mean nothing.**\n"
    "> It only shows that the sweep, the jobs and the aggregation work; compare with the paper only at SCALE=paper.\n"
)


@dataclass
class Job:
    """One finished job: its metrics (paper units) and its resolved config."""

    run_dir: Path
    config: dict[str, Any]
    values: dict[str, float]


@dataclass
class Row:
    """A table row: the paper's numbers and ours (mean over the row's jobs)."""

    id: str
    label: str
    paper: dict[str, list[float]]
    expected: int = 1
    jobs: list[Job] = field(default_factory=list)
    ours: dict[str, float] = field(default_factory=dict)


def load_paper_tables(path: Path = PAPER_TABLES) -> dict[str, dict[str, Any]]:
    """Every table spec in the transcribed paper values, checked for consistent lengths."""
    tables = yaml.safe_load(Path(path).read_text())["tables"]
    for name, spec in tables.items():
        for row in spec["rows"]:
            for method, values in row["paper"].items():
                if len(values) != len(spec["metrics"]):
                    raise ValueError(f"{path}: {name} row {row['id']} method {method} has {len(values)} values for metrics {spec['metrics']}")
    return tables


def to_paper_units(metrics: dict[str, float], inference_seconds: float | None) -> dict[str, float]:
    """Metrics in [0, 1] become percent, as in the paper; seconds stay seconds."""
    values = {key: 100.0 * value for key, value in metrics.items() if value is not None and not math.isnan(value)}
    if inference_seconds is not None:
        values["inference_seconds_per_image"] = float(inference_seconds)
    return values


def collect_jobs(sweep_dir: Path) -> list[Job]:
    """Every job under ``sweep_dir`` that finished (wrote results.json); others are skipped."""
    if not sweep_dir.is_dir():
        raise FileNotFoundError(f"--sweep-dir {sweep_dir} does not exist: run the sweep first (make reproduce-tableN) or point at its folder")
    jobs = []
    for results_file in sorted(sweep_dir.rglob("results.json")):
        result = json.loads(results_file.read_text())
        config = _job_config(results_file.parent, result)
        values = to_paper_units(result.get("metrics", {}), result.get("inference_seconds_per_image"))
        jobs.append(Job(results_file.parent, config, values))
    return jobs


def _job_config(run_dir: Path, result: dict[str, Any]) -> dict[str, Any]:
    """The resolved config the job ran with (results.json's copy, else config.yaml beside it)."""
    if isinstance(result.get("config"), dict):
        return result["config"]
    config_file = run_dir / "config.yaml"
    if not config_file.is_file():
        raise FileNotFoundError(f"{run_dir}: results.json without config.yaml; cannot tell which table cell this job is")
    return OmegaConf.to_container(OmegaConf.load(config_file), resolve=False)


def config_value(config: dict[str, Any], dotted: str) -> Any:
    """``config['model']['net']['use_mp']`` for ``model.net.use_mp``; None when absent."""
    node: Any = config
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def matches(config: dict[str, Any], match: dict[str, Any]) -> bool:
    """Whether every ``match`` value equals the job's (numbers compared as floats)."""
    for key, wanted in match.items():
        value = config_value(config, key)
        if isinstance(wanted, (int, float)) and not isinstance(wanted, bool) and isinstance(value, (int, float)):
            if not math.isclose(float(value), float(wanted)):
                return False
        elif str(value) != str(wanted):
            return False
    return True


def build_rows(spec: dict[str, Any], jobs: list[Job]) -> list[Row]:
    """Paper rows filled with our jobs, rows for unmatched jobs after them, then the mean row."""
    rows = [Row(r["id"], r.get("label", r["id"]), r["paper"], r.get("expected", 1)) for r in spec["rows"] if not r.get("mean_of_rows")]
    match_of = {r["id"]: r["match"] for r in spec["rows"] if not r.get("mean_of_rows")}
    keys = sorted({key for match in match_of.values() for key in match})
    for job in jobs:
        row = next((row for row in rows if row.id in match_of and matches(job.config, match_of[row.id])), None)
        if row is None:
            row = _extra_row(rows, job, keys)
        row.jobs.append(job)
    for row in rows:
        row.ours = _mean_values([job.values for job in row.jobs], spec["metrics"])
    mean_spec = next((r for r in spec["rows"] if r.get("mean_of_rows")), None)
    if mean_spec is not None:
        rows.append(_mean_row(mean_spec, rows, spec["metrics"], expected=len(match_of)))
    return rows


def _extra_row(rows: list[Row], job: Job, keys: list[str]) -> Row:
    """A row for jobs the paper has no row for (e.g. smoke categories), keyed by their values."""
    label = "/".join(str(config_value(job.config, key)) for key in keys) or "all"
    row_id = f"extra:{label}"
    for row in rows:
        if row.id == row_id:
            return row
    row = Row(row_id, f"{label} (not in paper)", paper={})
    rows.append(row)
    return row


def _mean_values(value_sets: list[dict[str, float]], metrics: list[str]) -> dict[str, float]:
    means = {}
    for metric in metrics:
        present = [values[metric] for values in value_sets if metric in values]
        if present:
            means[metric] = statistics.fmean(present)
    return means


def _mean_row(mean_spec: dict[str, Any], rows: list[Row], metrics: list[str], expected: int) -> Row:
    """The paper's average row; ours is the mean over rows that have results."""
    filled = [row for row in rows if row.ours]
    mean = Row(mean_spec["id"], mean_spec.get("label", "mean"), mean_spec["paper"], expected=expected)
    mean.ours = _mean_values([row.ours for row in filled], metrics)
    mean.jobs = [job for row in filled for job in row.jobs]
    return mean


def _count(row: Row, mean_of_rows: bool) -> str:
    done = len({id(job) for job in row.jobs})
    return f"{done}/{row.expected}" if not mean_of_rows else f"{done} jobs"


def _fmt(metric: str, value: float | None) -> str:
    if value is None:
        return MISSING
    return f"{value:.3f}" if metric in SECONDS_METRICS else f"{value:.1f}"


def _fmt_diff(metric: str, ours: float | None, paper: float | None) -> str:
    if ours is None or paper is None:
        return "–"
    return f"{ours - paper:+.3f}" if metric in SECONDS_METRICS else f"{ours - paper:+.1f}"


def cell_values(row: Row, metric: str, index: int) -> tuple[float | None, float | None]:
    """(ours, paper PRN) for one metric of a row; None where there is none."""
    paper = row.paper.get(METHOD)
    return row.ours.get(metric), (paper[index] if paper else None)


def render_markdown(name: str, spec: dict[str, Any], rows: list[Row], smoke: bool, sweep_dir: Path) -> str:
    """The table, ours / paper / difference per metric, then the other methods for context."""
    metrics = spec["metrics"]
    lines = [f"## {spec['title']}", ""]
    if smoke:
        lines += [SMOKE_BANNER]
    lines += [f"Sweep: `{sweep_dir}`. Ours vs the paper's PRN; Δ = ours − paper. Metrics in %, T in s/image.", ""]
    if spec.get("note"):
        lines += [f"Note: {spec['note']}", ""]
    header = ["row", "jobs"] + [f"{METRIC_SHORT[m]} {part}" for m in metrics for part in ("ours", "paper", "Δ")]
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        cells = [row.label, _count(row, row.id == "mean" or row.id.startswith("extra:"))]
        for index, metric in enumerate(metrics):
            ours, paper = cell_values(row, metric, index)
            cells += [_fmt(metric, ours), _fmt(metric, paper), _fmt_diff(metric, ours, paper)]
        lines.append("| " + " | ".join(cells) + " |")
    lines += _other_methods(spec, rows)
    return "\n".join(lines) + "\n"


def _other_methods(spec: dict[str, Any], rows: list[Row]) -> list[str]:
    methods = [m for m in dict.fromkeys(m for row in rows for m in row.paper) if m != METHOD]
    if not methods:
        return []
    metric_names = " / ".join(METRIC_SHORT[m] for m in spec["metrics"])
    lines = ["", f"Other methods as reported in the paper ({metric_names}), for context:", ""]
    lines += ["| row | " + " | ".join(methods) + " |", "|" + "---|" * (len(methods) + 1)]
    for row in rows:
        if row.paper:
            cells = [" / ".join(f"{v:g}" for v in row.paper[m]) if m in row.paper else "–" for m in methods]
            lines.append(f"| {row.label} | " + " | ".join(cells) + " |")
    return lines


def write_csv(path: Path, spec: dict[str, Any], rows: list[Row], smoke: bool) -> None:
    """Wide CSV: one line per row, ours / paper / diff per metric (empty when missing)."""
    metrics = spec["metrics"]
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["row", "label", "jobs", "expected", "smoke"] + [f"{m}_{part}" for m in metrics for part in ("ours", "paper", "diff")])
        for row in rows:
            line: list[Any] = [row.id, row.label, len(row.jobs), row.expected, smoke]
            for index, metric in enumerate(metrics):
                ours, paper = cell_values(row, metric, index)
                diff = ours - paper if ours is not None and paper is not None else None
                line += ["" if v is None else round(v, 4) for v in (ours, paper, diff)]
            writer.writerow(line)


def is_smoke(jobs: list[Job]) -> bool:
    """A sweep is a smoke run when any job used synthetic data."""
    return any(config_value(job.config, "dataset.name") == "synthetic" for job in jobs)


def aggregate(table: str, sweep_dir: Path, out_dir: Path | None = None, paper_tables: Path = PAPER_TABLES, smoke: bool | None = None) -> tuple[Path, Path]:
    """Write ``<table>.md`` and ``<table>.csv`` for a sweep; returns their paths."""
    tables = load_paper_tables(paper_tables)
    if table not in tables:
        raise KeyError(f"--table {table!r} is not in {paper_tables}; choose one of {', '.join(tables)}")
    spec = tables[table]
    jobs = collect_jobs(Path(sweep_dir))
    rows = build_rows(spec, jobs)
    smoke = is_smoke(jobs) if smoke is None else smoke
    out_dir = Path(out_dir or sweep_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    markdown, table_csv = out_dir / f"{table}.md", out_dir / f"{table}.csv"
    markdown.write_text(render_markdown(table, spec, rows, smoke, Path(sweep_dir)))
    write_csv(table_csv, spec, rows, smoke)
    return markdown, table_csv


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--table", required=True, help="table1 ... table8")
    parser.add_argument("--sweep-dir", required=True, type=Path, help="the Hydra sweep folder of that table's multirun")
    parser.add_argument("--out-dir", type=Path, default=None, help="where to write <table>.md/.csv (default: the sweep folder)")
    parser.add_argument("--paper-tables", type=Path, default=PAPER_TABLES)
    parser.add_argument("--smoke", action="store_true", default=None, help="label the output a smoke run (default: detected from the jobs)")
    args = parser.parse_args(argv)
    markdown, table_csv = aggregate(args.table, args.sweep_dir, args.out_dir, args.paper_tables, args.smoke)
    print(markdown.read_text())
    print(f"wrote {markdown} and {table_csv}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
