"""Collect a sweep's ``results.json`` files into one of the paper's tables, ours beside theirs.

``python -m prn.reporting.aggregate --table table4 --sweep-dir logs/reproduce/paper/table4``
writes ``table4.md`` and ``table4.csv`` into the sweep folder. A job lands in a row when its
resolved config (``config.yaml`` beside its ``results.json``) has the row's ``match`` values;
rows the paper averages over categories show the mean of their jobs and how many there
were, so a partial sweep still aggregates and a missing row says "missing".

Seeds: a sweep over ``seed=0,1,2`` (``make reproduce-tableN SEEDS=0,1,2``) makes every cell
the mean ± sample standard deviation over seeds, where a seed's value is the mean over the
row's jobs of that seed (its categories). Below the paper's table, every job's metrics per
defect type (ours only: the paper reports none), likewise over seeds; also written as
``<table>_per_defect.csv``.
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
    """One finished job: its metrics (paper units), its resolved config, its seed and its metrics per defect type."""

    run_dir: Path
    config: dict[str, Any]
    values: dict[str, float]
    seed: Any = None
    per_defect: dict[str, dict[str, float]] = field(default_factory=dict)

    @property
    def category(self) -> str:
        return str(config_value(self.config, "category"))


@dataclass
class Row:
    """A table row: the paper's numbers and ours (per seed the mean over the row's jobs; then mean and spread over seeds)."""

    id: str
    label: str
    paper: dict[str, list[float]]
    expected: int = 1
    jobs: list[Job] = field(default_factory=list)
    per_seed: dict[Any, dict[str, float]] = field(default_factory=dict)
    ours: dict[str, float] = field(default_factory=dict)
    spread: dict[str, float] = field(default_factory=dict)  # sample std over seeds, where 2 or more have the metric

    def summarise(self) -> None:
        """``ours`` and ``spread`` from ``per_seed``."""
        self.ours, self.spread = over_seeds(self.per_seed)


def load_paper_tables(path: Path = PAPER_TABLES) -> dict[str, dict[str, Any]]:
    """Every table spec in the transcribed paper values, checked for consistent lengths."""
    tables = yaml.safe_load(Path(path).read_text())["tables"]
    for name, spec in tables.items():
        for row in spec["rows"]:
            for method, values in row["paper"].items():
                if len(values) != len(spec["metrics"]):
                    raise ValueError(
                        f"{path}: {name} row {row['id']} method {method} has {len(values)} values for metrics {spec['metrics']}"
                    )
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
        raise FileNotFoundError(
            f"--sweep-dir {sweep_dir} does not exist: run the sweep first (make reproduce-tableN) or point at its folder"
        )
    jobs = []
    for results_file in sorted(sweep_dir.rglob("results.json")):
        result = json.loads(results_file.read_text())
        config = _job_config(results_file.parent, result)
        values = to_paper_units(result.get("metrics", {}), result.get("inference_seconds_per_image"))
        seed = config_value(config, "seed")
        per_defect = {
            name: to_paper_units(entry.get("metrics", {}), None)
            for name, entry in (result.get("per_defect") or {}).items()
        }
        jobs.append(Job(results_file.parent, config, values, result.get("seed") if seed is None else seed, per_defect))
    return jobs


def _job_config(run_dir: Path, result: dict[str, Any]) -> dict[str, Any]:
    """The resolved config the job ran with (results.json's copy, else config.yaml beside it)."""
    if isinstance(result.get("config"), dict):
        return result["config"]
    config_file = run_dir / "config.yaml"
    if not config_file.is_file():
        raise FileNotFoundError(
            f"{run_dir}: results.json without config.yaml; cannot tell which table cell this job is"
        )
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
    rows = [
        Row(r["id"], r.get("label", r["id"]), r["paper"], r.get("expected", 1))
        for r in spec["rows"]
        if not r.get("mean_of_rows")
    ]
    match_of = {r["id"]: r["match"] for r in spec["rows"] if not r.get("mean_of_rows")}
    keys = sorted({key for match in match_of.values() for key in match})
    for job in jobs:
        row = next((row for row in rows if row.id in match_of and matches(job.config, match_of[row.id])), None)
        if row is None:
            row = _extra_row(rows, job, keys)
        row.jobs.append(job)
    for row in rows:
        row.per_seed = seed_means(row.jobs, spec["metrics"])
        row.summarise()
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


def seed_means(jobs: list[Job], metrics: list[str]) -> dict[Any, dict[str, float]]:
    """Per seed, the mean over that seed's jobs (a row's categories), seeds in sorted order."""
    seeds = sorted({job.seed for job in jobs}, key=str)
    return {seed: _mean_values([job.values for job in jobs if job.seed == seed], metrics) for seed in seeds}


def over_seeds(per_seed: dict[Any, dict[str, float]]) -> tuple[dict[str, float], dict[str, float]]:
    """(mean over seeds, sample standard deviation over seeds where two or more seeds have the metric)."""
    metrics = list(dict.fromkeys(metric for values in per_seed.values() for metric in values))
    means, spreads = {}, {}
    for metric in metrics:
        present = [values[metric] for values in per_seed.values() if metric in values]
        means[metric] = statistics.fmean(present)
        if len(present) >= 2:
            spreads[metric] = statistics.stdev(present)
    return means, spreads


def _mean_row(mean_spec: dict[str, Any], rows: list[Row], metrics: list[str], expected: int) -> Row:
    """The paper's average row; ours is, per seed, the mean over the rows that have that seed, then over seeds."""
    filled = [row for row in rows if row.ours]
    mean = Row(mean_spec["id"], mean_spec.get("label", "mean"), mean_spec["paper"], expected=expected)
    seeds = sorted({seed for row in filled for seed in row.per_seed}, key=str)
    mean.per_seed = {
        seed: _mean_values([row.per_seed[seed] for row in filled if seed in row.per_seed], metrics) for seed in seeds
    }
    mean.summarise()
    mean.jobs = [job for row in filled for job in row.jobs]
    return mean


def sweep_seeds(rows: list[Row]) -> list[Any]:
    """Every seed any job of the sweep ran with, sorted."""
    return sorted({job.seed for row in rows for job in row.jobs}, key=str)


def _count(row: Row, mean_of_rows: bool, seeds: int = 1) -> str:
    done = len({id(job) for job in row.jobs})
    return f"{done}/{row.expected * max(seeds, 1)}" if not mean_of_rows else f"{done} jobs"


def _fmt(metric: str, value: float | None, spread: float | None = None) -> str:
    if value is None:
        return MISSING
    digits = 3 if metric in SECONDS_METRICS else 1
    return f"{value:.{digits}f}" if spread is None else f"{value:.{digits}f} ± {spread:.{digits}f}"


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
    seeds = sweep_seeds(rows)
    lines += [_seeds_sentence(seeds), ""]
    schedule = _schedule_sentence([job for row in rows for job in row.jobs])
    if schedule and not smoke:
        lines += [schedule, ""]
    if spec.get("note"):
        lines += [f"Note: {spec['note']}", ""]
    header = ["row", "jobs"] + [f"{METRIC_SHORT[m]} {part}" for m in metrics for part in ("ours", "paper", "Δ")]
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        cells = [row.label, _count(row, row.id == "mean" or row.id.startswith("extra:"), len(seeds))]
        for index, metric in enumerate(metrics):
            ours, paper = cell_values(row, metric, index)
            cells += [_fmt(metric, ours, row.spread.get(metric)), _fmt(metric, paper), _fmt_diff(metric, ours, paper)]
        lines.append("| " + " | ".join(cells) + " |")
    lines += _other_methods(spec, rows)
    lines += _per_defect_markdown(per_defect_rows(rows, spec["metrics"]), spec["metrics"])
    return "\n".join(lines) + "\n"


PAPER_SCHEDULE = {"epochs": 700, "max_steps": -1, "batch_size": 64}


def _schedule_sentence(jobs: list[Job]) -> str | None:
    """A warning when jobs trained on another schedule than the paper's: the Δ columns then compare unequal training."""
    schedules = sorted({tuple(config_value(job.config, key) for key in PAPER_SCHEDULE) for job in jobs}, key=str)
    recorded = [dict(zip(PAPER_SCHEDULE, values)) for values in schedules if None not in values]
    other = [schedule for schedule in recorded if schedule != PAPER_SCHEDULE]
    if not other:
        return None
    described = "; ".join(", ".join(f"{key}={value}" for key, value in schedule.items()) for schedule in other)
    return f"**Schedule: {described}, not the paper's 700 epochs of batch 64.** Δ compares unequal training."


def _seeds_sentence(seeds: list[Any]) -> str:
    if len(seeds) <= 1:
        return f"Seeds: {seeds[0] if seeds else '–'} (one seed per cell: no spread measured)."
    return (
        f"Seeds: {', '.join(map(str, seeds))}. Each cell is the mean ± sample standard deviation over the "
        f"{len(seeds)} seeds of the row's per-seed value (the mean over its jobs of that seed)."
    )


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
    """Wide CSV: one line per row, ours (mean over seeds) / std over seeds / paper / diff per metric (empty when missing)."""
    metrics = spec["metrics"]
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(
            ["row", "label", "jobs", "expected", "seeds", "smoke"]
            + [f"{m}_{part}" for m in metrics for part in ("ours", "std", "paper", "diff")]
        )
        for row in rows:
            line: list[Any] = [row.id, row.label, len(row.jobs), row.expected, len(row.per_seed), smoke]
            for index, metric in enumerate(metrics):
                ours, paper = cell_values(row, metric, index)
                diff = ours - paper if ours is not None and paper is not None else None
                line += ["" if v is None else round(v, 4) for v in (ours, row.spread.get(metric), paper, diff)]
            writer.writerow(line)


# --------------------------------------------------------------------------- per defect type


@dataclass
class DefectRow:
    """One defect type of one category in one table row, over the seeds that measured it."""

    row_label: str
    category: str
    defect_type: str
    per_seed: dict[Any, dict[str, float]]
    ours: dict[str, float] = field(default_factory=dict)
    spread: dict[str, float] = field(default_factory=dict)


def per_defect_rows(rows: list[Row], metrics: list[str]) -> list[DefectRow]:
    """Every (table row, category, defect type) our jobs measured, mean ± std over seeds; the mean row is left out."""
    wanted = [metric for metric in metrics if metric not in SECONDS_METRICS]
    found: dict[tuple[str, str, str], dict[Any, list[dict[str, float]]]] = {}
    for row in rows:
        if row.id == "mean":
            continue
        for job in row.jobs:
            for defect_type, values in job.per_defect.items():
                found.setdefault((row.label, job.category, defect_type), {}).setdefault(job.seed, []).append(values)
    out = []
    for (label, category, defect_type), by_seed in found.items():
        per_seed = {
            seed: _mean_values(value_sets, wanted)
            for seed, value_sets in sorted(by_seed.items(), key=lambda item: str(item[0]))
        }
        defect_row = DefectRow(label, category, defect_type, per_seed)
        defect_row.ours, defect_row.spread = over_seeds(per_seed)
        out.append(defect_row)
    return out


def _per_defect_markdown(defect_rows: list[DefectRow], metrics: list[str]) -> list[str]:
    wanted = [metric for metric in metrics if metric not in SECONDS_METRICS]
    if not defect_rows or not wanted:
        return []
    lines = [
        "",
        "Per defect type (ours only; the paper reports none): each defect type's images against all good test images, "
        "mean ± std over seeds where there are several.",
        "",
    ]
    lines += [
        "| row | category | defect type | seeds | " + " | ".join(METRIC_SHORT[m] for m in wanted) + " |",
        "|" + "---|" * (4 + len(wanted)),
    ]
    for item in defect_rows:
        cells = [_fmt(metric, item.ours.get(metric), item.spread.get(metric)) for metric in wanted]
        lines.append(
            f"| {item.row_label} | {item.category} | {item.defect_type} | {len(item.per_seed)} | "
            + " | ".join(cells)
            + " |"
        )
    return lines


def write_per_defect_csv(path: Path, spec: dict[str, Any], rows: list[Row]) -> None:
    """One line per (table row, category, defect type): mean and std over seeds per metric."""
    wanted = [metric for metric in spec["metrics"] if metric not in SECONDS_METRICS]
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(
            ["row", "category", "defect_type", "seeds"] + [f"{m}_{part}" for m in wanted for part in ("ours", "std")]
        )
        for item in per_defect_rows(rows, spec["metrics"]):
            values = [
                item.ours.get(metric) if part == "ours" else item.spread.get(metric)
                for metric in wanted
                for part in ("ours", "std")
            ]
            writer.writerow(
                [item.row_label, item.category, item.defect_type, len(item.per_seed)]
                + ["" if v is None else round(v, 4) for v in values]
            )


def is_smoke(jobs: list[Job]) -> bool:
    """A sweep is a smoke run when any job used synthetic data."""
    return any(config_value(job.config, "dataset.name") == "synthetic" for job in jobs)


def aggregate(
    table: str,
    sweep_dir: Path,
    out_dir: Path | None = None,
    paper_tables: Path = PAPER_TABLES,
    smoke: bool | None = None,
) -> tuple[Path, Path]:
    """Write ``<table>.md``, ``<table>.csv`` and ``<table>_per_defect.csv`` for a sweep; returns the first two."""
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
    write_per_defect_csv(out_dir / f"{table}_per_defect.csv", spec, rows)
    return markdown, table_csv


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--table", required=True, help="table1 ... table8")
    parser.add_argument("--sweep-dir", required=True, type=Path, help="the Hydra sweep folder of that table's multirun")
    parser.add_argument(
        "--out-dir", type=Path, default=None, help="where to write <table>.md/.csv (default: the sweep folder)"
    )
    parser.add_argument("--paper-tables", type=Path, default=PAPER_TABLES)
    parser.add_argument(
        "--smoke",
        action="store_true",
        default=None,
        help="label the output a smoke run (default: detected from the jobs)",
    )
    args = parser.parse_args(argv)
    markdown, table_csv = aggregate(args.table, args.sweep_dir, args.out_dir, args.paper_tables, args.smoke)
    print(markdown.read_text())
    print(f"wrote {markdown} and {table_csv}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
