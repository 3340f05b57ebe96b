"""Exact, memory-bounded anomaly detection metrics: image/pixel AUROC, pixel AP and AUPRO."""

from prn.metrics.accumulator import PIXEL_METRICS, AnomalyMetrics
from prn.metrics.image_score import top_k_mean
from prn.metrics.per_defect import per_defect_metrics
from prn.metrics.pro import anomalous_pixel_region_sizes, aupro, aupro_from_sorted, aupro_from_split
from prn.metrics.ranking import auroc, auroc_from_sorted, average_precision, average_precision_from_sorted

__all__ = [
    "PIXEL_METRICS",
    "AnomalyMetrics",
    "anomalous_pixel_region_sizes",
    "aupro",
    "aupro_from_sorted",
    "aupro_from_split",
    "auroc",
    "auroc_from_sorted",
    "average_precision",
    "average_precision_from_sorted",
    "per_defect_metrics",
    "top_k_mean",
]
