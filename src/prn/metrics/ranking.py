"""Exact, memory-bounded ranking metrics (AUROC, average precision).

A test set's pixel scores run to hundreds of millions of values, so neither an
all-pairs comparison nor an argsort over every pixel (8 bytes per pixel) is
affordable. Both metrics here sort the negatives and the positives separately
and count ranks with ``np.searchsorted`` in fixed-size chunks, which keeps the
extra memory to about one copy of the scores and the result exact, ties
included.
"""

from __future__ import annotations

import numpy as np

#: Number of query values handled per ``np.searchsorted`` call; bounds the
#: temporary index arrays to a few megabytes whatever the input size.
CHUNK_SIZE = 1 << 20


def as_score_array(scores: np.ndarray, name: str = "scores") -> np.ndarray:
    """Return ``scores`` as a flat float array, rejecting NaN (which has no rank)."""
    array = np.asarray(scores)
    if not np.issubdtype(array.dtype, np.floating):
        array = array.astype(np.float64)
    flat = array.reshape(-1)
    if np.isnan(flat).any():
        raise ValueError(f"{name} contains NaN; remove or replace NaN values before computing metrics")
    return flat


def as_binary_labels(labels: np.ndarray, expected_size: int, name: str = "labels") -> np.ndarray:
    """Return ``labels`` as a flat bool array, accepting bool or {0, 1} values only."""
    flat = np.asarray(labels).reshape(-1)
    if flat.size != expected_size:
        raise ValueError(f"{name} has {flat.size} values but the scores have {expected_size}; pass one label per score")
    if flat.dtype == np.bool_:
        return flat
    if not np.all((flat == 0) | (flat == 1)):
        raise ValueError(f"{name} must contain only 0 and 1 (or bool); found other values")
    return flat.astype(np.bool_)


def split_sorted(scores: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Split scores by label and sort each part in place: (negatives, positives), ascending."""
    flat_scores = as_score_array(scores)
    positive_mask = as_binary_labels(labels, flat_scores.size)
    positives = flat_scores[positive_mask]
    negatives = flat_scores[~positive_mask]
    del positive_mask
    negatives.sort()
    positives.sort()
    return negatives, positives


def _require_both_classes(negatives: np.ndarray, positives: np.ndarray, metric: str) -> None:
    if positives.size == 0:
        raise ValueError(f"{metric} is undefined without positive samples: labels contain no 1 (anomalous) entries")
    if negatives.size == 0:
        raise ValueError(f"{metric} is undefined without negative samples: labels contain no 0 (normal) entries")


def _count_below_half_ties(sorted_reference: np.ndarray, queries: np.ndarray) -> float:
    """Sum over queries of #(reference < q) + 0.5 * #(reference == q), chunked."""
    total = 0.0
    for start in range(0, queries.size, CHUNK_SIZE):
        chunk = queries[start : start + CHUNK_SIZE]
        below = np.searchsorted(sorted_reference, chunk, side="left")
        below_or_equal = np.searchsorted(sorted_reference, chunk, side="right")
        total += (below.sum(dtype=np.int64) + below_or_equal.sum(dtype=np.int64)) / 2.0
    return total


def auroc_from_sorted(negatives_sorted: np.ndarray, positives_sorted: np.ndarray) -> float:
    """Exact AUROC (Mann-Whitney U / (P*N), ties count 1/2) from ascending-sorted classes.

    The smaller class is used as the queries so the work is O(min * log max).
    """
    _require_both_classes(negatives_sorted, positives_sorted, "AUROC")
    pair_count = float(negatives_sorted.size) * float(positives_sorted.size)
    if positives_sorted.size <= negatives_sorted.size:
        wins = _count_below_half_ties(negatives_sorted, positives_sorted)
        return float(wins / pair_count)
    losses = _count_below_half_ties(positives_sorted, negatives_sorted)
    return float(1.0 - losses / pair_count)


def auroc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Exact area under the ROC curve; ties between a positive and a negative count 1/2.

    ``labels`` are bool or {0, 1} with 1 = positive (anomalous); any shape, same size as
    ``scores``. Raises ValueError when only one class is present.
    """
    negatives, positives = split_sorted(scores, labels)
    return auroc_from_sorted(negatives, positives)


def average_precision_from_sorted(negatives_sorted: np.ndarray, positives_sorted: np.ndarray) -> float:
    """Exact average precision (sklearn definition) from ascending-sorted classes.

    sklearn's AP = sum_t (R_t - R_{t-1}) P_t over distinct thresholds t. Recall only
    moves at thresholds equal to a positive score, by (#positives at t)/P, so AP is the
    mean over positives of the precision at that positive's score, with precision at
    t = TP(>= t) / (TP(>= t) + FP(>= t)) - ties are grouped automatically.
    """
    if positives_sorted.size == 0:
        raise ValueError("average precision is undefined without positive samples: labels contain no 1 entries")
    positive_count = positives_sorted.size
    negative_count = negatives_sorted.size
    precision_sum = 0.0
    for start in range(0, positive_count, CHUNK_SIZE):
        chunk = positives_sorted[start : start + CHUNK_SIZE]
        true_positives = positive_count - np.searchsorted(positives_sorted, chunk, side="left")
        false_positives = negative_count - np.searchsorted(negatives_sorted, chunk, side="left")
        precision_sum += float(np.sum(true_positives / (true_positives + false_positives)))
    return float(precision_sum / positive_count)


def average_precision(scores: np.ndarray, labels: np.ndarray) -> float:
    """Exact average precision, identical to sklearn's ``average_precision_score``.

    Raises ValueError when there are no positives (AP with no negatives is 1.0).
    """
    negatives, positives = split_sorted(scores, labels)
    return average_precision_from_sorted(negatives, positives)
