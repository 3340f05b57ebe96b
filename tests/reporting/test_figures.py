"""Report charts: curve points that integrate to the exact metrics, and PNGs that show something."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from prn.metrics import auroc, average_precision
from prn.reporting.figures import curves_figure, histogram_figure, pr_points, roc_points, scores_by_type_figure


def scored_images(seed: int, count: int = 40) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = (rng.random(count) < 0.6).astype(int)
    labels[:2] = [0, 1]
    scores = np.round(rng.random(count) + 0.5 * labels, 1)  # rounded: ties within and across classes
    types = np.where(labels == 1, np.where(rng.random(count) < 0.5, "crack", "dent"), "good")
    return scores, labels, types


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_curve_points_integrate_to_the_exact_metrics(seed: int) -> None:
    scores, labels, _ = scored_images(seed)
    fpr, tpr = roc_points(scores, labels)
    assert (fpr[0], tpr[0], fpr[-1], tpr[-1]) == (0, 0, 1, 1) and np.all(np.diff(fpr) >= 0)
    assert np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2) == pytest.approx(auroc(scores, labels), abs=1e-12)
    recall, precision = pr_points(scores, labels)
    assert np.sum(np.diff(recall) * precision[1:]) == pytest.approx(average_precision(scores, labels), abs=1e-12)


def test_a_curve_needs_both_classes() -> None:
    with pytest.raises(ValueError, match="both good"):
        roc_points(np.array([0.1, 0.2]), np.array([1, 1]))


def _drawn_fraction(png: bytes) -> float:
    pixels = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))
    return float(np.mean(pixels.min(axis=2) < 200))


def test_charts_are_pngs_with_content() -> None:
    scores, labels, types = scored_images(3)
    for png in (
        curves_figure(scores, labels, types),
        histogram_figure(scores, labels, 0.9, "test"),
        histogram_figure(scores, labels, None, "no threshold"),
        scores_by_type_figure(scores, labels, types, 0.9),
    ):
        assert png.startswith(b"\x89PNG") and 0.02 < _drawn_fraction(png) < 0.6


def test_the_threshold_line_is_drawn_only_when_there_is_one() -> None:
    scores, labels, _ = scored_images(4)
    with_line, without = histogram_figure(scores, labels, 0.9, "t"), histogram_figure(scores, labels, None, "t")
    assert _drawn_fraction(with_line) > _drawn_fraction(without)
