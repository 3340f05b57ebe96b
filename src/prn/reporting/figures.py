"""The charts of a run's report (and of W&B): image-level ROC and PR curves, score histograms.

Each chart is a PNG (bytes), so the HTML report can embed it and W&B can take it as an
image. Matplotlib is used through its object API (``Figure`` + Agg canvas), never pyplot:
no global state, no display needed, safe inside notebooks and worker processes.
"""

from __future__ import annotations

import io
from collections.abc import Sequence

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

GOOD_COLOUR = "#2b7bba"
ANOMALOUS_COLOUR = "#d7301f"
THRESHOLD_COLOUR = "#222222"
FIGURE_SIZE = (6.4, 4.2)
DPI = 100


def _counts_at_thresholds(scores: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """True and false positives when flagging every score >= t, for each distinct score t, highest first."""
    scores, labels = np.asarray(scores, dtype=np.float64), np.asarray(labels, dtype=bool)
    if labels.all() or not labels.any():
        raise ValueError("a curve needs both good (label 0) and anomalous (label 1) images")
    order = np.argsort(-scores, kind="stable")
    ranked_scores, ranked_labels = scores[order], labels[order]
    last_of_tie = np.append(np.diff(ranked_scores) != 0, True)
    return np.cumsum(ranked_labels)[last_of_tie], np.cumsum(~ranked_labels)[last_of_tie]


def roc_points(scores: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(false-positive rate, true-positive rate) from (0, 0) to (1, 1); the trapezoids under it add up to the AUROC."""
    true_positives, false_positives = _counts_at_thresholds(scores, labels)
    return np.append(0.0, false_positives / false_positives[-1]), np.append(0.0, true_positives / true_positives[-1])


def pr_points(scores: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(recall, precision) from recall 0 up to the first threshold that finds every anomaly (as sklearn stops);
    ``sum(diff(recall) * precision[1:])`` is the average precision (sklearn's)."""
    true_positives, false_positives = _counts_at_thresholds(scores, labels)
    full_recall = int(np.searchsorted(true_positives, true_positives[-1])) + 1
    true_positives, false_positives = true_positives[:full_recall], false_positives[:full_recall]
    precision = true_positives / (true_positives + false_positives)
    return np.append(0.0, true_positives / true_positives[-1]), np.append(1.0, precision)


def _png(figure: Figure) -> bytes:
    FigureCanvasAgg(figure)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=DPI, bbox_inches="tight")
    return buffer.getvalue()


def _curve_groups(scores: np.ndarray, labels: np.ndarray, defect_types: np.ndarray) -> list[tuple[str, np.ndarray]]:
    """("all", every image) then (type, good + that type's images) for every defect type."""
    good = labels == 0
    groups = [("all", np.ones_like(good))]
    groups += [(str(name), good | (defect_types == name)) for name in sorted(set(defect_types[~good]))]
    return groups


def curves_figure(scores: Sequence[float], labels: Sequence[int], defect_types: Sequence[str]) -> bytes:
    """ROC (left) and precision-recall (right) of the image scores: all images, and each defect type against the good ones."""
    scores, labels, defect_types = (
        np.asarray(scores, dtype=np.float64),
        np.asarray(labels),
        np.asarray(defect_types, dtype=object),
    )
    figure = Figure(figsize=(FIGURE_SIZE[0] * 2, FIGURE_SIZE[1]))
    roc_axes, pr_axes = figure.subplots(1, 2)
    for name, members in _curve_groups(scores, labels, defect_types):
        width = 2.4 if name == "all" else 1.2
        fpr, tpr = roc_points(scores[members], labels[members])
        recall, precision = pr_points(scores[members], labels[members])
        auroc = float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2))
        average_precision = float(np.sum(np.diff(recall) * precision[1:]))
        roc_axes.plot(
            fpr, tpr, linewidth=width, label=f"{name}  AUROC {100 * auroc:.1f}"
        )  # straight: ties are trapezoids
        pr_axes.step(recall, precision, where="pre", linewidth=width, label=f"{name}  AP {100 * average_precision:.1f}")
    roc_axes.plot([0, 1], [0, 1], color="#999999", linestyle=":", linewidth=1)
    roc_axes.set(
        xlabel="false-positive rate (good images flagged)",
        ylabel="true-positive rate (anomalies found)",
        title="ROC, image scores",
        xlim=(-0.01, 1.01),
        ylim=(-0.01, 1.01),
    )
    pr_axes.set(
        xlabel="recall",
        ylabel="precision",
        title="precision-recall, image scores",
        xlim=(-0.01, 1.01),
        ylim=(-0.01, 1.01),
    )
    for axes in (roc_axes, pr_axes):
        axes.legend(loc="lower right" if axes is roc_axes else "lower left", fontsize="small")
        axes.grid(alpha=0.3)
    return _png(figure)


def _draw_threshold(axes, threshold: float | None) -> None:
    """The threshold as a dashed line (when there is one); few score ticks, so close scores stay legible."""
    axes.xaxis.set_major_locator(MaxNLocator(nbins=6))
    if threshold is not None:
        axes.axvline(
            threshold, color=THRESHOLD_COLOUR, linestyle="--", linewidth=1.5, label=f"threshold {threshold:.4g}"
        )


def histogram_figure(scores: Sequence[float], labels: Sequence[int], threshold: float | None, caption: str) -> bytes:
    """Histograms of good and anomalous image scores on shared bins, the threshold as a dashed line when there is one."""
    scores, labels = np.asarray(scores, dtype=np.float64), np.asarray(labels)
    bins = np.histogram_bin_edges(
        np.append(scores, [] if threshold is None else [threshold]), bins=min(40, max(10, scores.size // 3))
    )
    figure = Figure(figsize=FIGURE_SIZE)
    axes = figure.subplots()
    axes.hist(scores[labels == 0], bins=bins, alpha=0.65, color=GOOD_COLOUR, label=f"good ({int(np.sum(labels == 0))})")
    axes.hist(
        scores[labels == 1],
        bins=bins,
        alpha=0.65,
        color=ANOMALOUS_COLOUR,
        label=f"anomalous ({int(np.sum(labels == 1))})",
    )
    _draw_threshold(axes, threshold)
    axes.set(xlabel="image score (mean of the top-k map values)", ylabel="test images", title=caption)
    axes.legend(fontsize="small")
    axes.grid(alpha=0.3)
    return _png(figure)


def scores_by_type_figure(
    scores: Sequence[float], labels: Sequence[int], defect_types: Sequence[str], threshold: float | None
) -> bytes:
    """Every test image as a dot on its defect type's line (good first): how far each type lies from the good images."""
    scores, labels, defect_types = (
        np.asarray(scores, dtype=np.float64),
        np.asarray(labels),
        np.asarray(defect_types, dtype=object),
    )
    names = _type_order(labels, defect_types)
    figure = Figure(figsize=(FIGURE_SIZE[0], max(2.0, 0.45 * len(names) + 1.2)))
    axes = figure.subplots()
    jitter = np.random.default_rng(0).uniform(-0.18, 0.18, scores.size)  # seeded: the same picture every time
    for row, (name, members) in enumerate(names.items()):
        colour = GOOD_COLOUR if name == "good" else ANOMALOUS_COLOUR
        axes.scatter(scores[members], row + jitter[members], s=14, color=colour, alpha=0.75, edgecolors="none")
    _draw_threshold(axes, threshold)
    axes.set_yticks(range(len(names)), [f"{name} ({int(members.sum())})" for name, members in names.items()])
    axes.invert_yaxis()
    axes.set(xlabel="image score", title="image scores per defect type")
    if threshold is not None:
        axes.legend(fontsize="small", loc="lower right")
    axes.grid(alpha=0.3, axis="x")
    return _png(figure)


def _type_order(labels: np.ndarray, defect_types: np.ndarray) -> dict[str, np.ndarray]:
    """ "good" (every label-0 image) first, then the defect types alphabetically."""
    order: dict[str, np.ndarray] = {}
    if np.any(labels == 0):
        order["good"] = labels == 0
    for name in sorted(set(defect_types[labels == 1])):
        order[str(name)] = (labels == 1) & (defect_types == name)
    return order
