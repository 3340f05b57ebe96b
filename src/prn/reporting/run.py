"""One place that reports a finished train or evaluate run: results.json / results.md, report.html, the table.

The jobs hand over the module (metrics, per-type rows, score choice, calibration), the
datamodule (split) and the threshold in force; :func:`report_run` builds the one result
dictionary that every output renders, so the JSON, the page and the printed table agree.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import lightning as L
from omegaconf import DictConfig, OmegaConf

from prn.calibration import ThresholdChoice, report_at_threshold
from prn.reporting.report import write_run_report
from prn.reporting.results import print_results, provenance, write_results
from prn.training import PRNModule


def report_run(
    cfg: DictConfig,
    run_dir: Path,
    module: PRNModule,
    datamodule: L.LightningDataModule,
    start: float,
    header: dict[str, str],
    extra: dict[str, Any],
    threshold_choice: ThresholdChoice,
) -> dict[str, Any]:
    """The run's result (metrics, score, calibration, threshold, split, provenance): ``results.json`` /
    ``results.md``, ``report.html`` (when ``callbacks.report`` is on) and the printed table."""
    notes = []
    weights_report = module.net.encoder.weights_report
    if weights_report.startswith("random"):
        notes.append(f"encoder weights: {weights_report} — numbers are not comparable to an ImageNet encoder")
    notes.extend(f"{name} skipped: {reason}" for name, reason in module.metrics.skip_reasons.items())
    if datamodule.num_seen_anomalies == 0:
        notes.append("seen=0: trained on normal images and simulated anomalies alone (no labelled defects, EA off)")
    threshold = threshold_choice.image_threshold(module.calibration)
    result = {
        **header,
        "metrics": module.test_results,
        "per_defect": module.metrics.per_defect,  # each defect type against all good images
        "score": {
            "top_k": module.hparams.top_k,
            "map_sigma": module.hparams.get("map_sigma", 0.0),
            "memory_weight": module.memory_weight,
            "chosen_on_held_out": None if module.score_choice is None else module.score_choice.to_dict(),
        },
        "calibration": None
        if module.calibration is None
        else {**module.calibration.to_dict(), "resolvable_fpr": module.calibration.resolvable_fpr},
        "threshold": {"image_threshold": threshold, "source": threshold_choice.source(module.calibration)},
        "at_threshold": None if threshold is None else report_at_threshold(threshold, module.test_rows),
        "inference_seconds_per_image": round(module.inference_seconds_per_image, 4),
        "test_images_per_rank": module.test_images_per_rank,
        "split": split_counts(datamodule),
        "encoder_weights": weights_report,
        "notes": notes,
        "run_dir": str(run_dir),
        "config": OmegaConf.to_container(cfg, resolve=True),
        **provenance(cfg.seed, time.perf_counter() - start, extra),
    }
    write_results(run_dir, result)
    write_run_report(module.trainer, run_dir, result)  # report.html, when callbacks.report is on
    print_results(result)
    return result


def split_counts(datamodule: L.LightningDataModule) -> dict[str, Any]:
    summary = datamodule.split_summary()
    return {key: value for key, value in summary.items() if not isinstance(value, list)}
