"""The one heat-map renderer of prn: predict's overlays and W&B's test images.

The colour scale is absolute (0 blue, 0.5 green, 1 red), never stretched per image, so a
normal image looks calm and two pictures can be compared by colour. The blend weight grows
with the score, so normal regions keep their own colours and only suspicious ones are tinted.
"""

from __future__ import annotations

import numpy as np

ANCHORS = np.array([[0, 0, 255], [0, 255, 0], [255, 0, 0]], dtype=np.float32)  # blue, green, red


def heat_colours(values: np.ndarray) -> np.ndarray:
    """``[0, 1]`` values to RGB floats in ``[0, 255]``: blue (0) through green to red (1)."""
    v = np.clip(values, 0.0, 1.0)[..., None]
    low = ANCHORS[0] + (ANCHORS[1] - ANCHORS[0]) * np.clip(2 * v, 0, 1)
    return np.where(v < 0.5, low, ANCHORS[1] + (ANCHORS[2] - ANCHORS[1]) * np.clip(2 * v - 1, 0, 1))


def overlay(image: np.ndarray, anomaly_map: np.ndarray, alpha: float = 0.6) -> np.ndarray:
    """``image`` (H, W, 3 uint8) with ``anomaly_map`` (H, W in [0, 1]) blended in as ``alpha * sqrt(map)``; uint8."""
    values = np.clip(anomaly_map, 0.0, 1.0)
    weight = alpha * np.sqrt(values)[..., None]
    blended = (1 - weight) * image.astype(np.float32) + weight * heat_colours(values)
    return np.clip(blended + 0.5, 0, 255).astype(np.uint8)
