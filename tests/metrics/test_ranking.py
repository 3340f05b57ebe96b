"""Exact AUROC / AP against all-pairs and every-threshold references."""

from __future__ import annotations

import numpy as np
import pytest
from metrics_references import pairwise_auroc, stepwise_average_precision

from prn.metrics import ranking
from prn.metrics.ranking import auroc, average_precision


def random_case(seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    size = int(rng.integers(2, 400))
    labels = rng.random(size) < rng.uniform(0.05, 0.95)
    labels[0], labels[1] = True, False
    scores = rng.normal(size=size) + labels * rng.uniform(0, 2)
    if seed % 2 == 0:  # heavy ties: only a handful of distinct values
        scores = np.round(scores * rng.integers(1, 4)) / 2
    return scores.astype(np.float32 if seed % 3 == 0 else np.float64), labels


@pytest.mark.parametrize("seed", range(60))
def test_auroc_matches_pairwise_reference(seed: int) -> None:
    scores, labels = random_case(seed)
    assert auroc(scores, labels) == pytest.approx(pairwise_auroc(scores, labels), abs=1e-12)


@pytest.mark.parametrize("seed", range(60))
def test_average_precision_matches_stepwise_reference(seed: int) -> None:
    scores, labels = random_case(seed)
    expected = stepwise_average_precision(scores, labels)
    assert average_precision(scores, labels) == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize("seed", range(6))
def test_chunk_boundaries_do_not_change_results(seed: int, monkeypatch: pytest.MonkeyPatch) -> None:
    scores, labels = random_case(seed)
    expected = (auroc(scores, labels), average_precision(scores, labels))
    monkeypatch.setattr(ranking, "CHUNK_SIZE", 3)
    assert (auroc(scores, labels), average_precision(scores, labels)) == pytest.approx(expected, abs=1e-12)


def test_more_positives_than_negatives_uses_the_symmetric_count() -> None:
    rng = np.random.default_rng(5)
    labels = rng.random(300) < 0.9
    scores = np.round(rng.normal(size=300) + labels, 1)
    assert auroc(scores, labels) == pytest.approx(pairwise_auroc(scores, labels), abs=1e-12)


def test_known_values() -> None:
    labels = np.array([0, 0, 1, 1])
    assert auroc(np.array([0.1, 0.2, 0.8, 0.9]), labels) == 1.0
    assert auroc(np.array([0.9, 0.8, 0.2, 0.1]), labels) == 0.0
    assert auroc(np.full(4, 0.3), labels) == 0.5
    assert average_precision(np.array([0.1, 0.2, 0.8, 0.9]), labels) == 1.0
    # Ranking 1, 0, 1, 0 (high to low): precisions at the positives are 1 and 2/3.
    assert average_precision(np.array([0.9, 0.8, 0.7, 0.1]), np.array([1, 0, 1, 0])) == pytest.approx(5 / 6)
    # All tied: one threshold, precision = prevalence.
    assert average_precision(np.zeros(4), np.array([1, 0, 0, 0])) == 0.25


def test_accepts_any_shape_and_bool_labels() -> None:
    scores = np.arange(12, dtype=np.float32).reshape(3, 4)
    labels = scores >= 6
    assert auroc(scores, labels) == 1.0


@pytest.mark.parametrize("labels", [np.zeros(5), np.ones(5)])
def test_single_class_is_rejected_for_auroc(labels: np.ndarray) -> None:
    with pytest.raises(ValueError, match="undefined without"):
        auroc(np.arange(5.0), labels)


def test_average_precision_needs_positives_but_not_negatives() -> None:
    with pytest.raises(ValueError, match="no 1"):
        average_precision(np.arange(5.0), np.zeros(5))
    assert average_precision(np.arange(5.0), np.ones(5)) == 1.0


def test_bad_inputs_are_rejected() -> None:
    with pytest.raises(ValueError, match="only 0 and 1"):
        auroc(np.arange(3.0), np.array([0, 1, 2]))
    with pytest.raises(ValueError, match="NaN"):
        auroc(np.array([0.0, np.nan]), np.array([0, 1]))
    with pytest.raises(ValueError, match="one label per score"):
        auroc(np.arange(3.0), np.array([0, 1]))
