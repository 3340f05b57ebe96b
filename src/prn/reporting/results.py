"""Write a run's metrics as JSON and a markdown table, with provenance.

Every number we report must come with what produced it: the command, seed, git
commit, hardware, encoder weights actually loaded and wall time go in the same file.
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.utilities.rank_zero import rank_zero_only
from rich.console import Console
from rich.table import Table

from prn.utils.io import write_json_atomically, write_text_atomically

METRIC_LABELS = {
    "image_auroc": "image AUROC",
    "pixel_auroc": "pixel AUROC",
    "pixel_aupro": "PRO (AUPRO@0.3)",
    "pixel_ap": "pixel AP",
}


def git_commit() -> str:
    """Commit of the source tree, with ``-dirty`` when it has uncommitted changes."""
    here = Path(__file__).resolve().parent
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=here,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return f"{commit}-dirty" if dirty else commit


def hardware() -> dict[str, Any]:
    """What the numbers were measured on."""
    info: dict[str, Any] = {
        "cpu": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
    }
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
        info["gpu_count"] = torch.cuda.device_count()
    return info


def provenance(seed: int, wall_seconds: float, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """The fields that let anyone rerun and compare a result."""
    return {
        "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
        "seed": seed,
        "git_commit": git_commit(),
        "hardware": hardware(),
        "wall_seconds": round(wall_seconds, 1),
        **(extra or {}),
    }


def markdown_table(rows: list[dict[str, Any]]) -> str:
    """``| dataset | category | metrics… |`` with metrics in percent, one row per result."""
    keys = [k for k in METRIC_LABELS if any(k in row["metrics"] for row in rows)]
    header = "| dataset | category | " + " | ".join(METRIC_LABELS[k] for k in keys) + " |"
    rule = "|" + "---|" * (2 + len(keys))
    lines = [header, rule]
    for row in rows:
        cells = [f"{100 * row['metrics'][k]:.1f}" if k in row["metrics"] else "–" for k in keys]
        lines.append(f"| {row['dataset']} | {row['category']} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def per_defect_table(result: dict[str, Any]) -> str:
    """``| defect type | images | metrics… |`` in percent: each type's images against all good test images."""
    per_defect = result.get("per_defect") or {}
    if not per_defect:
        return ""
    keys = [k for k in METRIC_LABELS if any(k in row["metrics"] for row in per_defect.values())]
    lines = [
        "| defect type | images | " + " | ".join(METRIC_LABELS[k] for k in keys) + " |",
        "|" + "---|" * (2 + len(keys)),
    ]
    for name, row in per_defect.items():
        cells = [f"{100 * row['metrics'][k]:.1f}" if k in row["metrics"] else "–" for k in keys]
        lines.append(f"| {name} | {row['images']} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


@rank_zero_only
def write_results(run_dir: Path, result: dict[str, Any]) -> None:
    """``results.json`` (everything) and ``results.md`` (the table), written atomically, by rank 0 only."""
    run_dir.mkdir(parents=True, exist_ok=True)
    write_json_atomically(run_dir / "results.json", result, default=str)
    per_defect = per_defect_table(result)
    write_text_atomically(run_dir / "results.md", markdown_table([result]) + (f"\n{per_defect}" if per_defect else ""))


@rank_zero_only
def print_results(result: dict[str, Any]) -> None:
    """The metrics table on the console, with the notes a reader must not miss."""
    table = Table(title=f"PRN · {result['dataset']} / {result['category']}")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key, label in METRIC_LABELS.items():
        if key in result["metrics"]:
            table.add_row(label, f"{100 * result['metrics'][key]:.2f}")
    console = Console()
    console.print(table)
    per_defect = result.get("per_defect") or {}
    if per_defect:
        by_type = Table(title="per defect type (against all good images)")
        keys = [k for k in METRIC_LABELS if any(k in row["metrics"] for row in per_defect.values())]
        for column in ("defect type", "images", *(METRIC_LABELS[k] for k in keys)):
            by_type.add_column(column, justify="left" if column == "defect type" else "right")
        for name, row in per_defect.items():
            by_type.add_row(
                name,
                str(row["images"]),
                *(f"{100 * row['metrics'][k]:.1f}" if k in row["metrics"] else "–" for k in keys),
            )
        console.print(by_type)
    decided = result.get("at_threshold")
    if decided is not None:
        counts = decided["confusion"]
        fpr, recall = decided["false_positive_rate_on_good"], decided["recall"]
        console.print(
            f"at image threshold {decided['image_threshold']:.4f}: FPR on good "
            f"{'–' if fpr is None else f'{100 * fpr:.1f}%'}, recall {'–' if recall is None else f'{100 * recall:.1f}%'} "
            f"(TP {counts['true_positives']}, FN {counts['false_negatives']}, TN {counts['true_negatives']}, FP {counts['false_positives']}); "
            + ", ".join(
                f"{name} {100 * row['recall']:.0f}% of {row['images']}"
                for name, row in decided["recall_per_defect_type"].items()
            )
        )
    for note in result.get("notes", []):
        console.print(f"[yellow]note:[/yellow] {note}")
