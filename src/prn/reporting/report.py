"""``report.html``: one self-contained page per run that a person can open and read.

A run's four numbers say little about *which* images fail, how far apart good and
anomalous scores lie, or where the threshold falls. The report shows: the metrics with a
row per defect type, the threshold (or why there is none) and the outcome at it, score
histograms of good and anomalous test images with the threshold drawn, image-level ROC
and precision-recall curves, the worst false positives and false negatives, and a few
images of every defect type as image | map | overlay | ground truth. Every picture is
embedded (base64), so the file can be mailed or archived alone; nothing is fetched.

:class:`RunReport` (``conf/callbacks/report.yaml``, switched off with
``~callbacks.report``) picks and re-scores the images to show when the test ends; the
pipeline then calls :func:`write_run_report` with the run's final results. With
``logger=wandb`` the same figures go to W&B under ``report/``.
"""

from __future__ import annotations

import base64
import datetime
import html
import io
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
from lightning.pytorch.loggers import WandbLogger

from prn.reporting.examples import (
    Example,
    Selection,
    colour_bar_png,
    example_panels,
    score_examples,
    select_examples,
    strip_jpeg,
)
from prn.reporting.figures import curves_figure, histogram_figure, scores_by_type_figure
from prn.reporting.results import METRIC_LABELS
from prn.utils.io import write_text_atomically

log = logging.getLogger(__name__)
REPORT_NAME = "report.html"


@dataclass(frozen=True)
class Threshold:
    """The OK/NG image threshold in force for a run, where it came from, and the pixel threshold if calibrated."""

    image: float
    source: str
    pixel: float | None = None


@dataclass
class Content:
    """What a report shows besides the results: per-image rows, the chosen examples, the rendered figures."""

    rows: list[dict[str, Any]]
    selection: Selection
    examples: dict[str, Example]
    images_missing: str | None = None  # why there are no example images, when there are none
    charts: dict[str, bytes] = field(default_factory=dict)  # name -> PNG
    strips: dict[str, list[tuple[str, bytes]]] = field(default_factory=dict)  # section -> (caption, JPEG)


def threshold_of(result: dict[str, Any]) -> Threshold | None:
    """The run's threshold from ``results.json``: none where the run decided nothing (``threshold=null``),
    else the one its ``at_threshold`` block used, else the calibrated one."""
    if "threshold" in result and (result["threshold"] or {}).get("image_threshold") is None:
        return None
    calibration = result.get("calibration") or None
    used = (result.get("at_threshold") or {}).get("image_threshold")
    calibrated = (
        None
        if calibration is None
        else Threshold(
            float(calibration["image_threshold"]), _calibration_source(calibration), calibration.get("pixel_threshold")
        )
    )
    if used is None:
        return calibrated
    if calibrated is not None and np.isclose(float(used), calibrated.image):
        return calibrated
    return Threshold(float(used), "given on the command line (threshold=)")


def _calibration_source(calibration: dict[str, Any]) -> str:
    count, fpr = calibration.get("num_images"), float(calibration.get("fpr", 0.0))
    text = f"calibrated on {count} held-out normal images at a target false-positive rate of {fpr:g}"
    if count and fpr < 1.0 / count:
        text += f" (below 1/{count}: the threshold is the highest held-out score)"
    return text


class RunReport(L.Callback):
    """Picks the images ``report.html`` shows when the test ends and scores them again (rank 0 only);
    :func:`write_run_report` then writes the page with the run's final results.

    ``worst``: how many worst false positives and false negatives; ``per_type``: images shown per
    defect type (and of the good ones).
    """

    def __init__(self, worst: int = 5, per_type: int = 2, filename: str = REPORT_NAME) -> None:
        if worst < 0 or per_type < 0:
            raise ValueError(f"callbacks.report.worst={worst} and per_type={per_type} must be >= 0")
        self.worst, self.per_type, self.filename = worst, per_type, filename
        self.content: Content | None = None
        self.wandb_run: Any = None

    def on_test_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.content, self.wandb_run = None, None

    def on_test_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Pick and re-score the images to show. A failure here is logged, never raised: the run's results matter more."""
        if not trainer.is_global_zero:
            return
        rows = list(getattr(pl_module, "test_rows", None) or [])
        selection = select_examples(rows, self.worst, self.per_type)
        self.content = Content(rows, selection, {})
        dataset = _test_set(trainer)
        if dataset is None:
            self.content.images_missing = "the run's test set keeps no file records to read the images back from"
        else:
            try:
                self.content.examples = score_examples(
                    pl_module, dataset, [rows[i]["path"] for i in selection.indices()]
                )
            except Exception as error:  # noqa: BLE001 - the report must not cost the run its results.json
                log.exception("report.html: the example images could not be scored again")
                self.content.images_missing = f"scoring them again failed ({error!r}; see the run's log)"
        wandb_logger = next((logger for logger in trainer.loggers if isinstance(logger, WandbLogger)), None)
        self.wandb_run = None if wandb_logger is None else wandb_logger.experiment

    def write(self, run_dir: Path, result: dict[str, Any]) -> Path | None:
        """Write ``<run_dir>/report.html`` (and the figures to W&B when it is on); None before any test or when
        rendering fails (logged with its traceback: results.json is already written and stays the record)."""
        if self.content is None:
            return None
        path = Path(run_dir) / self.filename
        try:
            write_text_atomically(path, render_report(result, self.content))
            if self.wandb_run is not None:
                log_to_wandb(self.wandb_run, result, self.content)
        except Exception:  # noqa: BLE001 - see the docstring
            log.exception("report.html could not be written")
            return None
        log.info("Report: %s", path)
        return path


def _test_set(trainer: L.Trainer) -> Any:
    """The test set with its file records (to re-score chosen images), or None when the run's data has none."""
    datamodule = getattr(trainer, "datamodule", None)
    dataset = None if datamodule is None else datamodule.test_dataloader().dataset
    return dataset if hasattr(dataset, "records") else None


def write_run_report(trainer: L.Trainer, run_dir: Path, result: dict[str, Any]) -> Path | None:
    """The run's ``report.html`` through its :class:`RunReport` callback; None when that is switched off."""
    report = next((callback for callback in trainer.callbacks if isinstance(callback, RunReport)), None)
    return None if report is None else report.write(run_dir, result)


# --------------------------------------------------------------------------- figures


def render_figures(result: dict[str, Any], content: Content) -> None:
    """Fill ``content.charts`` and ``content.strips`` (idempotent)."""
    if content.charts or content.strips:
        return
    threshold = threshold_of(result)
    rows = content.rows
    scores = np.array([float(row["score"]) for row in rows])
    labels = np.array([int(row["label"]) for row in rows])
    defect_types = np.array([str(row["defect_type"]) for row in rows], dtype=object)
    if rows:
        caption = "good and anomalous test images" + ("" if threshold else " (no threshold: no normals held out)")
        content.charts["histogram"] = histogram_figure(
            scores, labels, None if threshold is None else threshold.image, caption
        )
        content.charts["scores_by_type"] = scores_by_type_figure(
            scores, labels, defect_types, None if threshold is None else threshold.image
        )
    if np.any(labels == 0) and np.any(labels == 1):
        content.charts["curves"] = curves_figure(scores, labels, defect_types)
    pixel = None if threshold is None else threshold.pixel
    sections = {
        "false_positives": content.selection.false_positives,
        "false_negatives": content.selection.false_negatives,
    }
    sections.update({f"type:{name}": indices for name, indices in content.selection.by_type.items()})
    for section, indices in sections.items():
        shown = [content.examples[rows[i]["path"]] for i in indices if rows[i]["path"] in content.examples]
        content.strips[section] = [
            (_caption(example, threshold), strip_jpeg(example_panels(example, pixel))) for example in shown
        ]


def _caption(example: Example, threshold: Threshold | None) -> str:
    name = "/".join(Path(example.path).parts[-2:])
    text = f"{name} · {example.defect_type} · score {example.score:.4f}"
    if threshold is None:
        return text
    flagged = example.score >= threshold.image
    verdict = {
        (0, False): "OK (true negative)",
        (0, True): "NG: false positive",
        (1, True): "NG (found)",
        (1, False): "OK: false negative (missed)",
    }
    return f"{text} · {verdict[(example.label, flagged)]}"


# --------------------------------------------------------------------------- HTML

STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 0 auto; max-width: 1180px;
       padding: 1.5em; color: #1d1d1f; line-height: 1.45; }
h1 { margin-bottom: 0.2em; } h2 { margin-top: 2em; border-bottom: 1px solid #ddd; padding-bottom: 0.2em; }
table { border-collapse: collapse; margin: 0.6em 0; } th, td { border: 1px solid #ccc; padding: 0.25em 0.7em; text-align: right; }
th:first-child, td:first-child { text-align: left; } thead th { background: #f3f3f3; }
tr.all td { font-weight: 600; background: #fafafa; }
.meta { color: #555; font-size: 0.9em; } .meta code { font-size: 0.95em; }
.note { background: #fff6d6; border-left: 4px solid #e0b000; padding: 0.4em 0.8em; margin: 0.4em 0; }
.nothreshold { background: #eef4fb; border-left: 4px solid #2b7bba; padding: 0.6em 0.9em; }
figure { margin: 0.8em 0; } figcaption { font-size: 0.85em; color: #444; }
img { max-width: 100%; height: auto; } .strips figure { margin: 0.5em 0 1em; }
.columns { font-size: 0.85em; color: #444; display: flex; gap: 1em; align-items: center; flex-wrap: wrap; }
"""


def _img(data: bytes, kind: str, alt: str) -> str:
    encoded = base64.b64encode(data).decode("ascii")
    return f'<img src="data:image/{kind};base64,{encoded}" alt="{html.escape(alt)}">'


def _pct(value: Any) -> str:
    return "–" if value is None else f"{100 * float(value):.1f}"


def render_report(result: dict[str, Any], content: Content) -> str:
    """The whole page as one HTML string."""
    render_figures(result, content)
    threshold = threshold_of(result)
    title = f"PRN · {result.get('dataset', '?')} / {result.get('category', '?')}"
    parts = [
        "<!doctype html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{html.escape(title)}</title><style>{STYLE}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        _meta(result),
        *(f'<div class="note">{html.escape(str(note))}</div>' for note in result.get("notes", [])),
        "<h2>Metrics</h2>",
        _metrics_table(result),
        "<h2>Threshold</h2>",
        _threshold_section(result, threshold),
        "<h2>Image scores</h2>",
        _charts(content, ("histogram", "scores_by_type")),
        "<h2>ROC and precision-recall (image level)</h2>",
        _charts(content, ("curves",)),
        _strip_sections(content, threshold),
        "</body></html>",
    ]
    return "\n".join(part for part in parts if part)


def _meta(result: dict[str, Any]) -> str:
    split = (result.get("split") or {}).get("counts") or {}
    facts = [
        ("command", result.get("command")),
        ("seed", result.get("seed")),
        ("commit", result.get("git_commit")),
        ("checkpoint", result.get("checkpoint")),
        ("encoder", result.get("encoder_weights")),
        (
            "test images",
            f"{split.get('test_good', '?')} good + {split.get('test_anomalous', '?')} anomalous" if split else None,
        ),
        ("seen anomalies", split.get("seen_anomalies")),
        ("held-out normals", split.get("val_normal")),
        (
            "inference",
            None
            if result.get("inference_seconds_per_image") is None
            else f"{1000 * result['inference_seconds_per_image']:.1f} ms/image",
        ),
        ("written", datetime.datetime.now().isoformat(timespec="seconds")),
    ]
    cells = " · ".join(f"{name}: <code>{html.escape(str(value))}</code>" for name, value in facts if value is not None)
    return f'<p class="meta">{cells}</p>'


def _metrics_table(result: dict[str, Any]) -> str:
    metrics = result.get("metrics") or {}
    per_defect = result.get("per_defect") or {}
    recall = ((result.get("at_threshold") or {}).get("recall_per_defect_type")) or {}
    keys = [
        key
        for key in METRIC_LABELS
        if key in metrics or any(key in entry.get("metrics", {}) for entry in per_defect.values())
    ]
    header = "".join(f"<th>{html.escape(METRIC_LABELS[key])}</th>" for key in keys) + (
        "<th>recall at threshold</th>" if recall else ""
    )
    counts = ((result.get("split") or {}).get("counts")) or {}
    lines = [f"<table><thead><tr><th>defect type</th><th>images</th>{header}</tr></thead><tbody>"]
    overall = "".join(f"<td>{_pct(metrics.get(key))}</td>" for key in keys)
    overall_recall = f"<td>{_pct((result.get('at_threshold') or {}).get('recall'))}</td>" if recall else ""
    lines.append(f'<tr class="all"><td>all</td><td>{counts.get("test", "")}</td>{overall}{overall_recall}</tr>')
    for name, entry in sorted(per_defect.items()):
        cells = "".join(f"<td>{_pct(entry.get('metrics', {}).get(key))}</td>" for key in keys)
        recall_cell = f"<td>{_pct((recall.get(name) or {}).get('recall'))}</td>" if recall else ""
        lines.append(f"<tr><td>{html.escape(name)}</td><td>{entry.get('images', '')}</td>{cells}{recall_cell}</tr>")
    lines.append("</tbody></table>")
    explained = (
        "Metrics in %. A defect type's row is measured on the good test images plus that type's images; "
        "the images column counts the type's anomalous images (all: every test image)."
    )
    if not per_defect:
        explained = "Metrics in %. No per-defect-type metrics: the test set carried no defect types."
    return "\n".join(lines) + f'<p class="meta">{explained}</p>'


def _threshold_section(result: dict[str, Any], threshold: Threshold | None) -> str:
    if threshold is None:
        return (
            '<p class="nothreshold"><strong>No threshold.</strong> This run held out no normal images '
            "(<code>val_normals=0</code>), so no OK/NG threshold could be fitted without looking at the test set. "
            "The histograms show the score distributions only, and the images below are the highest-scoring good "
            "and lowest-scoring anomalous test images, not decisions. Train with <code>val_normals=</code> "
            "(a fraction or a count of the normal images) to calibrate one.</p>"
        )
    pixel = (
        ""
        if threshold.pixel is None
        else f"; pixel threshold <code>{threshold.pixel:.4g}</code> (outlined in white on the overlays)"
    )
    lines = [f"<p>Image threshold <code>{threshold.image:.4g}</code>, {html.escape(threshold.source)}{pixel}.</p>"]
    at_threshold = result.get("at_threshold")
    if at_threshold:
        lines.append(_at_threshold_table(at_threshold))
    return "\n".join(lines)


def _at_threshold_table(at_threshold: dict[str, Any]) -> str:
    confusion = at_threshold.get("confusion") or {}
    rows = [
        ("good images", confusion.get("true_negatives"), confusion.get("false_positives")),
        ("anomalous images", confusion.get("false_negatives"), confusion.get("true_positives")),
    ]
    body = "".join(f"<tr><td>{name}</td><td>{ok}</td><td>{ng}</td></tr>" for name, ok, ng in rows)
    return (
        f"<table><thead><tr><th>test images at the threshold</th><th>OK (score below)</th><th>NG (score at or above)</th></tr></thead>"
        f"<tbody>{body}</tbody></table>"
        f"<p>False-positive rate on good test images: <strong>{_pct(at_threshold.get('false_positive_rate_on_good'))} %</strong>; "
        f"recall on anomalous ones: <strong>{_pct(at_threshold.get('recall'))} %</strong> (per defect type in the metrics table).</p>"
    )


def _charts(content: Content, names: Sequence[str]) -> str:
    shown = [content.charts[name] for name in names if name in content.charts]
    if not shown:
        return '<p class="meta">Not drawn: the test set lacks good or anomalous images.</p>'
    return "\n".join(f"<figure>{_img(chart, 'png', name)}</figure>" for name, chart in zip(names, shown))


def _strip_sections(content: Content, threshold: Threshold | None) -> str:
    if not content.examples:
        reason = content.images_missing or "the test set is empty"
        return f'<h2>Images</h2><p class="meta">No example images: {html.escape(reason)}.</p>'
    legend = (
        f'<div class="columns"><span>columns: image | anomaly map | overlay | ground truth</span>'
        f"<span>map scale 0 {_img(colour_bar_png(), 'png', 'colour scale')} 1</span></div>"
    )
    if threshold is None:
        fp_text = "Good test images with the highest scores (no threshold, so these are the first false positives any threshold would make)."
        fn_text = "Anomalous test images with the lowest scores (the first a threshold would miss)."
    else:
        fp_text = "Good test images with the highest scores; those at or above the threshold are false positives."
        fn_text = (
            "Anomalous test images with the lowest scores; those below the threshold are missed (false negatives)."
        )
    sections = [
        ("Worst false positives", fp_text, "false_positives"),
        ("Worst false negatives", fn_text, "false_negatives"),
    ]
    sections += [
        (
            f"Defect type: {key.removeprefix('type:')}",
            "The first images of this type by file name, not chosen by score.",
            key,
        )
        for key in content.strips
        if key.startswith("type:")
    ]
    out = []
    for title, text, key in sections:
        strips = content.strips.get(key) or []
        out.append(f'<h2>{html.escape(title)}</h2><p class="meta">{html.escape(text)}</p>{legend}<div class="strips">')
        out.extend(
            f"<figure>{_img(jpeg, 'jpeg', caption)}<figcaption>{html.escape(caption)}</figcaption></figure>"
            for caption, jpeg in strips
        )
        out.append("</div>" if strips else '<p class="meta">none in this test set</p></div>')
    return "\n".join(out)


# --------------------------------------------------------------------------- W&B


def log_to_wandb(run: Any, result: dict[str, Any], content: Content) -> None:
    """The report's charts, picture strips and per-defect table to a W&B run, under ``report/``."""
    import wandb
    from PIL import Image

    render_figures(result, content)
    payload: dict[str, Any] = {
        f"report/{name}": wandb.Image(Image.open(io.BytesIO(png))) for name, png in content.charts.items()
    }
    for section, strips in content.strips.items():
        if strips:
            payload[f"report/{section.replace(':', '/')}"] = [
                wandb.Image(Image.open(io.BytesIO(jpeg)), caption=caption) for caption, jpeg in strips
            ]
    per_defect = result.get("per_defect") or {}
    if per_defect:
        metric_keys = sorted({key for entry in per_defect.values() for key in entry.get("metrics", {})})
        data = [
            [name, entry.get("images"), *(entry.get("metrics", {}).get(key) for key in metric_keys)]
            for name, entry in sorted(per_defect.items())
        ]
        payload["report/per_defect"] = wandb.Table(columns=["defect_type", "images", *metric_keys], data=data)
    run.log(payload)
