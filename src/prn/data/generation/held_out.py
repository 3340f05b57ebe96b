"""Held-out anomalies: kinds the network never trains on, made only for the score choice.

A generator the network trains on is one it learns to segment: on its own kinds the network's map
reaches 0.99 region-balanced pixel AUROC, better than the patch memory's, so a score chosen on them
learns to trust the network alone and to leave its sharp maps unsmoothed. Real defects are kinds
the network never saw, and there the test ranks the other way (on shifted transistor seed 0, the
selection's pixel AUROC fell from 98.7 to 98.2 as the memory's weight rose from 0 to 0.5, while test
PRO rose from 76.3 to 80.8). The score is therefore chosen on anomalies no training source
makes, which measure how a score generalises rather than how well the network learnt its lessons:

* ``displaced``: a piece of the part copied to another place on the part. Its content is normal, only
  its position is wrong (a misplaced component), which a position-blind patch search cannot see;
* ``turned``: a piece of the part rotated in place (a component mounted askew, a twisted lead): normal
  content in a wrong orientation;
* ``bent``: a piece of the part pushed sideways by a smooth displacement (a bent lead, a dent);
* ``covered``: a piece of the part covered by a copy of the surroundings nearby, off the part where
  possible, as a clone stamp covers (a cut lead, a missing pin, a broken corner): an absence. The
  training source of absences (:mod:`prn.data.generation.erased`) fills by inpainting with added
  grain; this one copies real texture from elsewhere in the image, so it is not a lesson the network
  learnt. Without it, every held-out kind puts something where it should not be, and a
  position-aware map wins the choice even where real absences show better in the fused map
  (registered, moved transistor seed 1: the network alone chosen; its cut leads fell to 79.5 pixel
  AUROC).

Each piece is drawn where the part has structure, as erased anomalies are
(:func:`prn.data.generation.erased.structure_region`), and the mask is only what visibly changed.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from prn.data.generation.erased import (
    DEFAULT_ERASE_SCALE,
    part_and_extent,
    structure_region,
    structure_weights,
    visible_change,
)
from prn.data.generation.target_area import TARGET_SHAPES
from prn.data.types import NormalImage

HELD_OUT_KINDS = ("displaced", "turned", "bent", "covered")
SHIFT = (0.15, 0.4)  # displaced: how far a piece moves, as a fraction of the part's extent
TURN_DEGREES = (20.0, 160.0)
BEND = (0.3, 0.6)  # bent: the largest push, as a fraction of the piece's diameter
COVER_DISTANCE = (1.0, 2.0)  # covered: how far the copied surroundings lie, in the piece's diameters
COVER_DIRECTIONS = 8  # covered: candidate sources, the one least on the part (then plainest) taken
DEFECT_TYPE_PREFIX = "held_out:"  # a selection anomaly's defect type: the prefix, then its kind


def defect_type(kind: str) -> str:
    """The defect type a selection anomaly of ``kind`` is recorded under (``held_out:<kind>``)."""
    return f"{DEFECT_TYPE_PREFIX}{kind}"


def kind_of(recorded: str | None) -> str | None:
    """The held-out kind of a recorded defect type (:func:`defect_type`), None for anything else (a normal)."""
    if not recorded or not recorded.startswith(DEFECT_TYPE_PREFIX):
        return None
    return recorded[len(DEFECT_TYPE_PREFIX) :]


def _centre_and_radius(region: np.ndarray) -> tuple[tuple[float, float], float]:
    rows, cols = np.nonzero(region)
    return (float(cols.mean()), float(rows.mean())), max(float(np.sqrt(region.sum() / np.pi)), 1.0)


def displaced(
    image: np.ndarray, foreground: np.ndarray | None, region: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """``region``'s content copied to a random place on the part; the changed destination is the anomaly."""
    allowed, extent = part_and_extent(foreground, image.shape[:2])
    angle = rng.uniform(0.0, 2 * np.pi)
    distance = rng.uniform(*SHIFT) * extent
    shift = np.float32([[1, 0, distance * np.cos(angle)], [0, 1, distance * np.sin(angle)]])
    height, width = image.shape[:2]
    moved = cv2.warpAffine(image, shift, (width, height), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    destination = cv2.warpAffine(region.astype(np.uint8), shift, (width, height), flags=cv2.INTER_NEAREST) > 0
    destination &= allowed
    return np.where(destination[..., None], moved, image), destination


def turned(
    image: np.ndarray, foreground: np.ndarray | None, region: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """``region`` rotated about its centre by 20-160 degrees either way."""
    centre, _ = _centre_and_radius(region)
    degrees = rng.uniform(*TURN_DEGREES) * rng.choice([-1.0, 1.0])
    rotation = cv2.getRotationMatrix2D(centre, degrees, 1.0)
    height, width = image.shape[:2]
    rotated = cv2.warpAffine(image, rotation, (width, height), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    return np.where(region[..., None], rotated, image), region


def bent(
    image: np.ndarray, foreground: np.ndarray | None, region: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """The part round ``region`` pushed one way by a smooth (Gaussian) displacement that peaks at its centre."""
    (x0, y0), radius = _centre_and_radius(region)
    height, width = image.shape[:2]
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    falloff = np.exp(-((xs - x0) ** 2 + (ys - y0) ** 2) / (2 * radius**2)).astype(np.float32)
    angle = rng.uniform(0.0, 2 * np.pi)
    push = rng.uniform(*BEND) * 2 * radius
    map_x = (xs - push * np.cos(angle) * falloff).astype(np.float32)
    map_y = (ys - push * np.sin(angle) * falloff).astype(np.float32)
    warped = cv2.remap(image, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    return warped, falloff > np.exp(-2.0)  # within two radii of the centre


def covered(
    image: np.ndarray, foreground: np.ndarray | None, region: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """``region`` covered by a copy of one of ``COVER_DIRECTIONS`` equally sized areas nearby: the one that overlaps
    the part least (the board beside a lead, not the body), and of those the plainest."""
    _, radius = _centre_and_radius(region)
    on_part = np.zeros(image.shape[:2], dtype=bool) if foreground is None else foreground.astype(bool)
    height, width = image.shape[:2]
    structure = structure_weights(image, np.ones((height, width), dtype=bool))
    rows, cols = np.nonzero(region)
    first = rng.uniform(0.0, 2 * np.pi)
    best_offset, best_cost = (0, 0), (np.inf, np.inf)
    for step in range(COVER_DIRECTIONS):
        angle = first + 2 * np.pi * step / COVER_DIRECTIONS
        distance = rng.uniform(*COVER_DISTANCE) * 2 * radius
        dx, dy = int(round(distance * np.cos(angle))), int(round(distance * np.sin(angle)))
        source_rows, source_cols = rows + dy, cols + dx
        inside = (source_rows >= 0) & (source_rows < height) & (source_cols >= 0) & (source_cols < width)
        if not inside.all():
            continue
        cost = (float(on_part[source_rows, source_cols].mean()), float(structure[source_rows, source_cols].mean()))
        if cost < best_cost:
            best_offset, best_cost = (dx, dy), cost
    if not np.isfinite(best_cost[0]):
        return image, region  # no source inside the frame: unchanged, redrawn by the caller
    copy = np.float32([[1, 0, -best_offset[0]], [0, 1, -best_offset[1]]])  # copy(x) = image(x + offset)
    source = cv2.warpAffine(image, copy, (width, height), flags=cv2.INTER_NEAREST, borderMode=cv2.BORDER_REFLECT)
    return np.where(region[..., None], source, image), region


_MAKERS = {"displaced": displaced, "turned": turned, "bent": bent, "covered": covered}


class HeldOutAnomalySource:
    """``AnomalySource`` of one held-out kind per call, evenly drawn: (image, visibly changed mask).

    Only the score choice's selection set uses it (``AnomalyDataModule.selection_dataloader``); no
    training batch ever does, which is what makes it held out."""

    def __init__(
        self,
        kinds: Sequence[str] = HELD_OUT_KINDS,
        shapes: Sequence[str] = TARGET_SHAPES,
        scale: Sequence[float] = DEFAULT_ERASE_SCALE,
    ) -> None:
        unknown = [kind for kind in kinds if kind not in _MAKERS]
        if not kinds or unknown:
            raise ValueError(
                f"held-out anomaly kinds must be a non-empty subset of {HELD_OUT_KINDS}, got {tuple(kinds)}"
            )
        self.kinds, self.shapes, self.scale = tuple(kinds), tuple(shapes), (float(scale[0]), float(scale[1]))

    def __call__(self, base: NormalImage, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """One held-out anomaly on ``base``: (image, mask) as every ``AnomalySource`` returns."""
        image, mask, _ = self.draw(base, rng)
        return image, mask

    def draw(self, base: NormalImage, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, str]:
        """One held-out anomaly on ``base`` and its kind, redrawn while it changes too little
        (:func:`erased.visible_change`); the kind lets the selection be read per kind."""
        image, foreground = base.image, base.foreground
        kind = self.kinds[int(rng.integers(len(self.kinds)))]
        make = _MAKERS[kind]

        def change_once() -> tuple[np.ndarray, np.ndarray]:
            return make(image, foreground, structure_region(image, foreground, rng, self.shapes, self.scale), rng)

        changed, mask = visible_change(image, change_once)
        return changed, mask, kind
