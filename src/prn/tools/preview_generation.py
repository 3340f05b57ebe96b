"""Render a PNG grid of the anomalies that training would generate, for any dataset/category.

It composes the same Hydra config as ``src/train.py`` (so every override works the same),
builds the configured datamodule and draws batches from the real batch plan; each
generated sample shows (image, mask, image with the target-area outline in green and the
mask outline in red), labelled by its source. A run that holds normals out (``val_normals``) also
shows the held-out anomalies its score is chosen on, which training never sees
(``prn.data.generation.held_out``, labelled ``held_out:<kind> (score choice)``)::

    prn-preview dataset=mvtec category=bottle \
        root=../shared/data/mvtec_anomaly_detection generation.dtd_dir=../shared/data/dtd/images \
        out=preview.png
"""

from __future__ import annotations

from pathlib import Path

import cv2
import hydra
import numpy as np
from omegaconf import DictConfig
from PIL import Image, ImageDraw

from prn.data.training import NORMAL, ComposedBatchSampler, ComposedTrainingSet, SlotPlan

SAMPLES_PER_ROW = 2
HELD_OUT_SAMPLES = 4
LABEL_HEIGHT = 18
GAP = 8


def generated_samples(
    train_set: ComposedTrainingSet, plans: list[SlotPlan], count: int
) -> list[tuple[str, np.ndarray, np.ndarray, np.ndarray | None]]:
    """``(label, image uint8, mask float, target area)`` for the first ``count`` non-normal slots."""
    samples = []
    for name, index, seed in _round_robin_by_source(plans):
        kind, item = _generate_with_kind(train_set, (name, index, seed))
        image = (item["image"].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
        samples.append((f"{name}{kind}", image, item["mask"][0].numpy(), train_set.pool.normals[index].foreground))
        if len(samples) == count:
            break
    return samples


def device_samples(datamodule, count: int) -> list[tuple[str, np.ndarray, np.ndarray, np.ndarray | None]]:
    """As :func:`generated_samples`, from the batches ``generation.on_device`` makes (labelled ``name (device)``)."""
    by_source: dict[str, list[tuple[str, np.ndarray, np.ndarray, np.ndarray | None]]] = {}
    pool = datamodule.pool
    for plan in datamodule.train_dataloader():
        batch = datamodule.on_after_batch_transfer(plan, 0)
        for index, name in enumerate(batch["source"]):
            if name == NORMAL:
                continue
            image = (batch["image"][index].permute(1, 2, 0).cpu().numpy() * 255).round().astype(np.uint8)
            base = int(batch["base"][index])
            area = pool.normals[base].foreground if base >= 0 else None
            by_source.setdefault(name, []).append(
                (f"{name} (device)", image, batch["mask"][index, 0].cpu().numpy(), area)
            )
        if sum(map(len, by_source.values())) >= count:
            break
    return _interleave(list(by_source.values()))[:count]


def selection_samples(datamodule, count: int) -> list[tuple[str, np.ndarray, np.ndarray, np.ndarray | None]]:
    """``count`` anomalies of the score choice's selection set, alternating between its kinds so that each shows
    up early (none without held-out normals)."""
    loader = datamodule.selection_dataloader() if hasattr(datamodule, "selection_dataloader") else None
    if loader is None:
        return []
    selection = loader.dataset
    by_kind: dict[str, list[int]] = {}
    for index, record in enumerate(selection.records):
        if record.label == 1:
            by_kind.setdefault(record.defect_type, []).append(index)
    return [
        (
            f"{selection.records[index].defect_type} (score choice)",
            selection.images[index],
            selection.masks[index],
            None,
        )
        for index in _interleave(list(by_kind.values()))[:count]
    ]


def _round_robin_by_source(plans: list[SlotPlan]) -> list[SlotPlan]:
    """Non-normal slots, alternating between sources so every strategy shows up early."""
    by_source: dict[str, list[SlotPlan]] = {}
    for plan in plans:
        if plan[0] != NORMAL:
            by_source.setdefault(plan[0], []).append(plan)
    return _interleave(list(by_source.values()))


def _interleave(queues: list[list]) -> list:
    """The first of every queue, then the second of every queue, and so on."""
    return [queue[i] for i in range(max(map(len, queues), default=0)) for queue in queues if i < len(queue)]


def _generate_with_kind(train_set: ComposedTrainingSet, plan: SlotPlan) -> tuple[str, dict]:
    """The item for ``plan`` and ``/hea`` or ``/hoa`` for simulated anomalies (read off the source's usage counters)."""
    usage = getattr(train_set.sources[plan[0]], "usage", None)
    before = dict(usage or {})
    item = train_set[plan]
    if usage is None:
        return "", item
    changed = [kind for kind, count in usage.items() if count != before.get(kind, 0)]
    return (f"/{changed[0]}" if changed else ""), item


def render_grid(samples: list[tuple[str, np.ndarray, np.ndarray, np.ndarray | None]]) -> Image.Image:
    """Tiles of (image, mask, outlines), two samples per row."""
    tiles = [
        _sample_tile(f"#{i} {label}  mask {100 * float((mask > 0).mean()):.1f}%", image, mask, area)
        for i, (label, image, mask, area) in enumerate(samples)
    ]
    rows = (len(tiles) + SAMPLES_PER_ROW - 1) // SAMPLES_PER_ROW
    width, height = tiles[0].size
    grid = Image.new("RGB", (SAMPLES_PER_ROW * width + (SAMPLES_PER_ROW - 1) * GAP, rows * height), "white")
    for index, tile in enumerate(tiles):
        grid.paste(tile, ((index % SAMPLES_PER_ROW) * (width + GAP), (index // SAMPLES_PER_ROW) * height))
    return grid


def _outline_overlay(image: np.ndarray, area: np.ndarray | None, mask: np.ndarray) -> np.ndarray:
    overlay = image.copy()
    if area is not None:
        contours, _ = cv2.findContours(area.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
        cv2.drawContours(overlay, contours, -1, (0, 255, 0), 1)
    contours, _ = cv2.findContours((mask > 0).astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    cv2.drawContours(overlay, contours, -1, (255, 0, 0), 1)
    return overlay


def _sample_tile(label: str, image: np.ndarray, mask: np.ndarray, area: np.ndarray | None) -> Image.Image:
    mask_rgb = np.repeat((mask[..., None] * 255).astype(np.uint8), 3, axis=2)
    strip = np.concatenate([image, mask_rgb, _outline_overlay(image, area, mask)], axis=1)
    tile = Image.new("RGB", (strip.shape[1], strip.shape[0] + LABEL_HEIGHT), "white")
    tile.paste(Image.fromarray(strip), (0, LABEL_HEIGHT))
    ImageDraw.Draw(tile).text((4, 3), label, fill="black")
    return tile


def preview(cfg: DictConfig) -> Path:
    """Build the configured datamodule, draw batches as training would, write the grid."""
    if cfg.num_samples < 1:
        raise ValueError(f"num_samples={cfg.num_samples} must be >= 1")
    datamodule = hydra.utils.instantiate(cfg.dataset.datamodule, _convert_="partial")
    datamodule.setup("fit")
    if getattr(datamodule, "generate_on_device", False):
        samples = device_samples(datamodule, cfg.num_samples)
    else:
        train_set = datamodule.train_dataloader().dataset
        sampler = ComposedBatchSampler(
            len(train_set.pool.normals), datamodule.composition, datamodule.batch_size, cfg.seed
        )
        plans = [plan for batch in sampler for plan in batch]
        samples = generated_samples(train_set, plans, cfg.num_samples)
    if not samples:
        raise ValueError("the configured composition has no anomalous slots to preview (only normal images)")
    samples += selection_samples(datamodule, HELD_OUT_SAMPLES)
    out = Path(cfg.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    render_grid(samples).save(out)
    print(f"wrote {out}")
    return out
