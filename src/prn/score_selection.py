"""The image score and map smoothing, chosen on held-out data that never touches a test image.

The paper scores an image by the mean of its top-100 map pixels and never smooths the map;
PatchCore blurs its map with a Gaussian of sigma 4 and scores by the maximum. Which is better
depends on the part (a few-pixel crack wants a small k; a noisy surface wants a blur). A run that
holds normals out (``val_normals``) scores them and one generated anomaly built on each
(``datamodule.selection_dataloader``), and picks, among every (sigma, k) pair, the one with the
best mean of image AUROC (normals against generated anomalies) and pixel AUROC (generated masks).
With patch memory it also picks ``memory_weight``, the share of the memory's own map in the fused
map (:mod:`prn.models.scorer`). Ties keep the paper's choice (sigma 0, k 100, the network alone).
The choice becomes the module's ``map_sigma``, ``top_k`` and ``memory_weight``, so checkpoints,
predictions and exports score the same way.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor

from prn.metrics.image_score import top_k_mean
from prn.metrics.ranking import auroc
from prn.models.scorer import smooth_maps

SIGMAS = (0.0, 2.0, 4.0, 8.0)
TOP_KS = (1, 10, 100, 1000)
MEMORY_WEIGHTS = (0.0, 0.25, 0.5, 0.75, 1.0)
PAPER_CHOICE = (0.0, 100, 0.0)  # sigma, k, memory weight
PIXEL_SAMPLE = 200_000  # pixels per class that pixel AUROC is computed on (seeded)


@dataclass(frozen=True)
class ScoreChoice:
    """The chosen (sigma, k, memory weight), what it scored on the selection set, and every candidate's scores."""

    map_sigma: float
    top_k: int
    val_image_auroc: float
    val_pixel_auroc: float | None
    num_normals: int
    num_anomalies: int
    memory_weight: float = 0.0
    candidates: list[dict[str, float]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> ScoreChoice:
        return cls(**values)


def choose_score(
    maps: Tensor,
    masks: Tensor,
    labels: Tensor,
    sigmas: Sequence[float] = SIGMAS,
    top_ks: Sequence[int] = TOP_KS,
    seed: int = 0,
    memory_maps: Tensor | None = None,
    memory_weights: Sequence[float] = MEMORY_WEIGHTS,
) -> ScoreChoice:
    """Best (sigma, k, memory weight) for ``[N, 1, H, W]`` maps in [0, 1] of held-out normals (label 0) and generated
    anomalies (label 1, mask); ``memory_maps``, the patch memory's maps of the same images, are fused when given."""
    labels_np = labels.cpu().numpy().astype(int)
    if not (labels_np == 0).any() or not (labels_np == 1).any():
        raise ValueError(
            "choosing the image score needs held-out normals and generated anomalies (val_normals > 0 and generation on)"
        )
    pixels = _pixel_sample(masks, seed)
    weights = (0.0,) if memory_maps is None else memory_weights
    candidates = []
    for weight in weights:
        fused = maps.float() if weight == 0 else (1.0 - weight) * maps.float() + weight * memory_maps.float()
        for sigma in sigmas:
            candidates.extend(_candidates(smooth_maps(fused, sigma), sigma, weight, top_ks, labels_np, pixels))
    best = max(
        candidates,
        key=lambda c: (round(c["objective"], 6), (c["map_sigma"], c["top_k"], c["memory_weight"]) == PAPER_CHOICE),
    )
    return ScoreChoice(
        best["map_sigma"],
        best["top_k"],
        best["image_auroc"],
        best["pixel_auroc"],
        int((labels_np == 0).sum()),
        int((labels_np == 1).sum()),
        best["memory_weight"],
        candidates,
    )


def _candidates(
    smoothed: Tensor,
    sigma: float,
    weight: float,
    top_ks: Sequence[int],
    labels: np.ndarray,
    pixels: tuple[np.ndarray, np.ndarray] | None,
) -> list[dict[str, float]]:
    """Every top-k of one smoothed (and fused) map set, with its image AUROC, pixel AUROC and objective."""
    pixel_auroc = None if pixels is None else auroc(smoothed.flatten()[pixels[0]].numpy(), pixels[1])
    rows = []
    for k in top_ks:
        image_auroc = auroc(top_k_mean(smoothed, k).numpy(), labels)
        rows.append(
            {
                "map_sigma": float(sigma),
                "top_k": int(k),
                "memory_weight": float(weight),
                "image_auroc": image_auroc,
                "pixel_auroc": pixel_auroc,
                "objective": image_auroc if pixel_auroc is None else (image_auroc + pixel_auroc) / 2,
            }
        )
    return rows


def _pixel_sample(masks: Tensor, seed: int) -> tuple[np.ndarray, np.ndarray] | None:
    """Flat indices of up to ``PIXEL_SAMPLE`` anomalous and as many normal pixels, and their labels."""
    flat = masks.flatten().cpu().numpy() > 0.5
    positives, negatives = np.flatnonzero(flat), np.flatnonzero(~flat)
    if positives.size == 0 or negatives.size == 0:
        return None
    rng = np.random.default_rng(seed)
    positives = rng.choice(positives, min(PIXEL_SAMPLE, positives.size), replace=False)
    negatives = rng.choice(negatives, min(PIXEL_SAMPLE, negatives.size), replace=False)
    indices = np.concatenate([positives, negatives])
    return torch.from_numpy(indices), np.concatenate([np.ones(positives.size, int), np.zeros(negatives.size, int)])
