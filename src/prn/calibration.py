"""OK/NG thresholds fitted on held-out normal images, and the score scale in which 0.5 is the threshold.

After training, the normal images held out by ``val_normals=`` (never trained on, never in
the prototypes) are scored. From them, at the target false-positive rate ``fpr``:

* ``image_threshold``: the ``1 - fpr`` quantile of their image scores, so about ``fpr`` of
  normal parts are rejected;
* ``pixel_threshold``: the ``1 - fpr`` quantile of their per-image *maximum* map value, so
  about ``fpr`` of normal parts show any defect pixel in the binary mask.

With ``n`` held-out images no rate below ``1/n`` can be resolved: the quantile is then the
largest normal value, and ``resolvable_fpr`` says so. Nothing here ever sees a test image.

The normalised score maps the raw score linearly so that the threshold lands on 0.5 and the
median held-out normal score on 0.25 (clipped to [0, 1]): a reader sees at once how far
past the threshold a part lies, in units of the normal spread.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np

DEFAULT_FPR = 0.01
THRESHOLD_HELP = (
    "auto (the thresholds calibrated on held-out normals at training), a number (the image threshold), "
    "or null (no OK/NG decision)"
)


@dataclass(frozen=True)
class Calibration:
    """Thresholds fitted on held-out normals; stored in the checkpoint under ``"prn_calibration"``."""

    image_threshold: float
    pixel_threshold: float
    fpr: float
    num_images: int
    normal_median: float

    @property
    def resolvable_fpr(self) -> float:
        """The smallest false-positive rate that ``num_images`` held-out normals can resolve."""
        return 1.0 / max(self.num_images, 1)

    def normalize(self, scores: np.ndarray | float) -> np.ndarray:
        """Scores on the scale where 0.5 is the image threshold and 0.25 the median normal score, clipped to [0, 1]."""
        spread = max(self.image_threshold - self.normal_median, 1e-6)
        return np.clip(0.5 + 0.25 * (np.asarray(scores, dtype=np.float64) - self.image_threshold) / spread, 0.0, 1.0)

    def is_anomalous(self, scores: np.ndarray | float) -> np.ndarray:
        """NG decision per image: raw score at or above the image threshold."""
        return np.asarray(scores) >= self.image_threshold

    def defect_mask(self, anomaly_map: np.ndarray) -> np.ndarray:
        """Binary defect mask: map values at or above the pixel threshold."""
        return np.asarray(anomaly_map) >= self.pixel_threshold

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> Calibration:
        return cls(**{key: values[key] for key in cls.__dataclass_fields__})


def fit_calibration(
    image_scores: Sequence[float], map_maxima: Sequence[float], fpr: float = DEFAULT_FPR
) -> Calibration:
    """Thresholds at false-positive rate ``fpr`` from held-out normals' image scores and per-image map maxima."""
    scores = np.asarray(image_scores, dtype=np.float64)
    maxima = np.asarray(map_maxima, dtype=np.float64)
    if not 0.0 < fpr < 1.0:
        raise ValueError(
            f"calibration.fpr={fpr} must lie in (0, 1), e.g. 0.01 for one rejected normal part in a hundred"
        )
    if scores.size == 0 or scores.size != maxima.size:
        raise ValueError(
            f"calibration needs one score and one map maximum per held-out normal image; got {scores.size} and {maxima.size}"
        )
    quantile = 1.0 - fpr
    return Calibration(
        image_threshold=float(np.quantile(scores, quantile, method="higher")),
        pixel_threshold=float(np.quantile(maxima, quantile, method="higher")),
        fpr=float(fpr),
        num_images=int(scores.size),
        normal_median=float(np.median(scores)),
    )


def report_at_threshold(image_threshold: float, rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """OK/NG outcome of test images at ``image_threshold``: confusion counts, FPR on good, recall per defect type.

    ``rows`` hold one test image each: ``label`` (0 good, 1 anomalous), ``score`` and ``defect_type``.
    """
    labels = np.asarray([int(row["label"]) for row in rows])
    flagged = np.asarray([float(row["score"]) >= image_threshold for row in rows], dtype=bool)
    good, bad = labels == 0, labels == 1
    counts = {
        "true_positives": int(np.sum(flagged & bad)),
        "false_negatives": int(np.sum(~flagged & bad)),
        "true_negatives": int(np.sum(~flagged & good)),
        "false_positives": int(np.sum(flagged & good)),
    }
    per_type: dict[str, dict[str, float | int]] = {}
    for defect_type in sorted({row["defect_type"] for row, label in zip(rows, labels) if label == 1}):
        members = np.asarray([row["defect_type"] == defect_type for row in rows]) & bad
        per_type[defect_type] = {"images": int(members.sum()), "recall": float(flagged[members].mean())}
    return {
        "image_threshold": float(image_threshold),
        "false_positive_rate_on_good": float(flagged[good].mean()) if good.any() else None,
        "recall": float(flagged[bad].mean()) if bad.any() else None,
        "confusion": counts,
        "recall_per_defect_type": per_type,
    }


@dataclass(frozen=True)
class ThresholdChoice:
    """How eval and predict set the OK/NG image threshold, parsed once from ``threshold=``.

    ``auto``: the checkpoint's calibrated thresholds (none if it holds no calibration);
    ``fixed``: ``value`` as the image threshold (pixel masks still use the calibrated pixel threshold);
    ``none``: scores and maps only, no decision -- the same meaning in every job.
    """

    mode: Literal["auto", "fixed", "none"]
    value: float | None = None

    def image_threshold(self, calibration: Calibration | None) -> float | None:
        if self.mode == "fixed":
            return self.value
        return calibration.image_threshold if self.mode == "auto" and calibration is not None else None

    def source(self, calibration: Calibration | None) -> str:
        """Where the threshold in force came from, for ``results.json``."""
        if self.mode == "fixed":
            return "command line (threshold=)"
        if self.mode == "none":
            return "none: threshold=null"
        return (
            "calibrated on held-out normals" if calibration is not None else "none: the checkpoint holds no calibration"
        )


def parse_threshold(value: Any, option: str = "threshold") -> ThresholdChoice:
    """``auto`` | a number (or numeric string) | ``null``/``none`` as a :class:`ThresholdChoice`; anything else is an error naming ``option``."""
    if value is None or (isinstance(value, str) and value.strip().lower() in ("none", "null")):
        return ThresholdChoice("none")
    if isinstance(value, str) and value.strip().lower() == "auto":
        return ThresholdChoice("auto")
    if isinstance(value, bool):
        raise ValueError(f"{option}={value!r} must be {THRESHOLD_HELP}")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{option}={value!r} must be {THRESHOLD_HELP}") from None
    if not np.isfinite(number):
        raise ValueError(f"{option}={value!r} must be a finite number, or {THRESHOLD_HELP}")
    return ThresholdChoice("fixed", number)
