"""Which test images a report shows, their maps, and the picture strips it shows them in.

A report cannot hold every test map (a test set may have thousands), and does not need
to: it shows the good images that scored highest (the worst false positives), the
anomalous ones that scored lowest (the worst false negatives) and the first few images
of each defect type. Those are picked from the per-image scores once the test is over
and scored again through the same network (a few dozen forward passes), so nothing is
kept while the test runs.
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np
import torch
from PIL import Image, ImageDraw

from prn.utils.heatmap import heat_colours, overlay

PANEL_GAP = 4
MAX_PANEL_SIDE = 256
OUTLINE_COLOUR = (255, 255, 255)


@dataclass(frozen=True)
class Example:
    """One test image as the report shows it; ``mask`` None when the test set has no ground truth."""

    path: str
    defect_type: str
    label: int
    score: float
    image: np.ndarray  # (H, W, 3) uint8, the network's input
    anomaly_map: np.ndarray  # (H, W) float32 in [0, 1]
    mask: np.ndarray | None  # (H, W) bool


@dataclass
class Selection:
    """Row indices (into the per-image rows) of the images a report shows."""

    false_positives: list[int] = field(default_factory=list)  # good images, highest score first
    false_negatives: list[int] = field(default_factory=list)  # anomalous images, lowest score first
    by_type: dict[str, list[int]] = field(default_factory=dict)  # "good" first, then each defect type

    def indices(self) -> list[int]:
        """Every selected row once, in first-selected order."""
        chosen = [*self.false_positives, *self.false_negatives, *(i for rows in self.by_type.values() for i in rows)]
        return list(dict.fromkeys(chosen))


def select_examples(rows: Sequence[dict[str, Any]], worst: int, per_type: int) -> Selection:
    """The ``worst`` highest-scoring good and lowest-scoring anomalous images, and the first
    ``per_type`` images (by path) of the good images and of every defect type."""
    good = [i for i, row in enumerate(rows) if int(row["label"]) == 0]
    anomalous = [i for i, row in enumerate(rows) if int(row["label"]) == 1]
    selection = Selection(
        false_positives=sorted(good, key=lambda i: -float(rows[i]["score"]))[:worst],
        false_negatives=sorted(anomalous, key=lambda i: float(rows[i]["score"]))[:worst],
    )
    groups = {"good": good} if good else {}
    for name in sorted({str(rows[i]["defect_type"]) for i in anomalous}):
        groups[name] = [i for i in anomalous if str(rows[i]["defect_type"]) == name]
    for name, members in groups.items():
        selection.by_type[name] = sorted(members, key=lambda i: str(rows[i]["path"]))[:per_type]
    return selection


def _uint8_image(image: torch.Tensor) -> np.ndarray:
    """(3, H, W) in [0, 1] as (H, W, 3) uint8, unstretched."""
    return (image.detach().float().cpu().clamp(0, 1).permute(1, 2, 0).numpy() * 255 + 0.5).astype(np.uint8)


@torch.no_grad()
def score_examples(module: Any, dataset: Any, paths: Iterable[str], batch_size: int = 8) -> dict[str, Example]:
    """Maps and scores of the test images at ``paths``, scored again in eval mode, keyed by path.

    ``dataset`` is the test set (:class:`prn.data.eval_set.EvalImageSet`: ``records`` and items
    with ``image``, ``label``, ``defect_type`` and, where it has masks, ``mask``).
    """
    index_of = {str(record.image_path): index for index, record in enumerate(dataset.records)}
    missing = [path for path in paths if path not in index_of]
    if missing:
        raise KeyError(f"{len(missing)} report images are not in the test set, e.g. {missing[0]}")
    was_training, device = module.training, next(module.parameters()).device
    module.eval()
    examples: dict[str, Example] = {}
    try:
        wanted = list(paths)
        for start in range(0, len(wanted), batch_size):
            items = [dataset[index_of[path]] for path in wanted[start : start + batch_size]]
            maps, scores = module.predict_maps_and_scores(torch.stack([item["image"] for item in items]).to(device))
            for item, anomaly_map, score in zip(items, maps.float().cpu().numpy(), scores.float().cpu().tolist()):
                mask = item.get("mask")
                examples[str(item["path"])] = Example(
                    path=str(item["path"]),
                    defect_type=str(item["defect_type"]),
                    label=int(item["label"]),
                    score=float(score),
                    image=_uint8_image(item["image"]),
                    anomaly_map=anomaly_map[0].astype(np.float32),
                    mask=None if mask is None else mask.numpy()[0] > 0.5,
                )
    finally:
        module.train(was_training)
    return examples


def _outlined(picture: np.ndarray, region: np.ndarray) -> np.ndarray:
    """``picture`` with the outline of ``region`` drawn in white."""
    contours, _ = cv2.findContours(region.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    drawn = np.ascontiguousarray(picture.copy())
    cv2.drawContours(drawn, contours, -1, OUTLINE_COLOUR, 1)
    return drawn


def _missing_mask_panel(height: int, width: int) -> np.ndarray:
    panel = Image.new("RGB", (width, height), (200, 200, 200))
    ImageDraw.Draw(panel).text((6, height // 2 - 6), "no ground truth", fill=(60, 60, 60))
    return np.asarray(panel)


def example_panels(example: Example, pixel_threshold: float | None = None) -> list[np.ndarray]:
    """image | map (absolute colours, 0 blue to 1 red) | overlay | ground truth, as (H, W, 3) uint8.

    With a pixel threshold the overlay outlines the pixels at or above it (the defect mask predicted there).
    """
    height, width = example.anomaly_map.shape
    heat = np.clip(heat_colours(example.anomaly_map) + 0.5, 0, 255).astype(np.uint8)
    blended = overlay(example.image, example.anomaly_map)
    if pixel_threshold is not None:
        blended = _outlined(blended, example.anomaly_map >= pixel_threshold)
    if example.mask is None:
        truth = _missing_mask_panel(height, width)
    else:
        truth = np.repeat((example.mask[..., None] * 255).astype(np.uint8), 3, axis=2)
    return [example.image, heat, blended, truth]


def strip_jpeg(panels: Sequence[np.ndarray], quality: int = 88) -> bytes:
    """Panels side by side on white, each scaled down to at most ``MAX_PANEL_SIDE`` pixels a side, as JPEG bytes."""
    scaled = [_at_most(Image.fromarray(panel), MAX_PANEL_SIDE) for panel in panels]
    width = sum(panel.width for panel in scaled) + PANEL_GAP * (len(scaled) - 1)
    strip = Image.new("RGB", (width, max(panel.height for panel in scaled)), "white")
    left = 0
    for panel in scaled:
        strip.paste(panel, (left, 0))
        left += panel.width + PANEL_GAP
    buffer = io.BytesIO()
    strip.save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def _at_most(image: Image.Image, side: int) -> Image.Image:
    scale = side / max(image.size)
    return (
        image
        if scale >= 1
        else image.resize((round(image.width * scale), round(image.height * scale)), Image.Resampling.BILINEAR)
    )


def colour_bar_png(width: int = 256, height: int = 14) -> bytes:
    """The anomaly map's colour scale, 0 (blue) to 1 (red), as a small PNG strip for the report's legend."""
    strip = np.repeat(heat_colours(np.linspace(0.0, 1.0, width))[None], height, axis=0)
    buffer = io.BytesIO()
    Image.fromarray(np.clip(strip + 0.5, 0, 255).astype(np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()
