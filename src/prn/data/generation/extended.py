"""Extended anomalies (EA, PRN Sec. 3.4, Fig. 5): seen defects re-coloured, moved and re-shaped.

Steps per sample: pick a seen anomaly → Aug_1 (two random colour operations) → Aug_2
(random rotate / shear / shift of image and mask together) → clip by a random target
area inside the base's foreground, redrawing Aug_2 until the region overlaps it →
binarise to M → blend with opacity β (Eq. 4).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import albumentations as A
import cv2
import numpy as np

from prn.data.generation.augment import (
    apply_random_ops,
    blend_anomaly,
    extended_color_ops,
    sample_beta,
    seeded_compose,
    validate_beta,
)
from prn.data.generation.target_area import DEFAULT_TARGET_SCALE, TARGET_SHAPES, random_target_area
from prn.data.types import NormalImage, TrainingPool

logger = logging.getLogger(__name__)

AUG1_OP_COUNT = 2


def _shift_onto(
    image: np.ndarray, mask: np.ndarray, target: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Translate so that a random region pixel lands on a random target pixel: overlap is certain."""
    region_rows, region_cols = np.nonzero(mask)
    target_rows, target_cols = np.nonzero(target)
    source = int(rng.integers(len(region_rows)))
    destination = int(rng.integers(len(target_rows)))
    shift_x = float(target_cols[destination] - region_cols[source])
    shift_y = float(target_rows[destination] - region_rows[source])
    matrix = np.array([[1.0, 0.0, shift_x], [0.0, 1.0, shift_y]])
    height, width = mask.shape
    moved_image = cv2.warpAffine(
        image, matrix, (width, height), flags=cv2.INTER_NEAREST, borderMode=cv2.BORDER_CONSTANT, borderValue=0
    )
    moved_mask = cv2.warpAffine(
        mask.astype(np.uint8),
        matrix,
        (width, height),
        flags=cv2.INTER_NEAREST,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=0,
    )
    return moved_image, moved_mask.astype(bool)


class ExtendedAnomalySource:
    """``AnomalySource`` pasting augmented seen-anomaly regions onto normal images.

    ``rotate`` / ``shear`` are degree ranges and ``shift`` a fraction of the image side
    for Aug_2. Aug_2 is redrawn (at most ``max_placement_tries`` times) until the region
    overlaps the target area by ``min_overlap_fraction`` of the smaller of the two (a
    bare touch would leave a sliver), else the best overlapping draw is kept; if every
    draw misses, the Aug_1 region is placed with a plain shift that puts one of its
    pixels in the target.
    With ``use_target_area=False`` the target area is the whole image.
    """

    def __init__(
        self,
        pool: TrainingPool,
        use_target_area: bool = True,
        beta: Sequence[float] = (0.0, 0.5),
        rotate: Sequence[float] = (-90.0, 90.0),
        shear: Sequence[float] = (-15.0, 15.0),
        shift: Sequence[float] = (-0.25, 0.25),
        target_shapes: Sequence[str] = TARGET_SHAPES,
        target_scale: Sequence[float] = DEFAULT_TARGET_SCALE,
        max_placement_tries: int = 10,
        min_overlap_fraction: float = 0.3,
    ) -> None:
        self.anomalies = self._usable_anomalies(pool)
        self.use_target_area = use_target_area
        self.beta = validate_beta(beta, "ExtendedAnomalySource")
        self.target_shapes = tuple(target_shapes)
        self.target_scale = (float(target_scale[0]), float(target_scale[1]))
        self.max_placement_tries = max(1, int(max_placement_tries))
        self.min_overlap_fraction = float(min_overlap_fraction)
        self.color_ops = extended_color_ops()
        self.spatial_op = A.Affine(
            rotate=tuple(rotate),
            shear=tuple(shear),
            translate_percent=tuple(shift),
            border_mode=cv2.BORDER_CONSTANT,
            fill=0,
            fill_mask=0,
            p=1.0,
        )

    @staticmethod
    def _usable_anomalies(pool: TrainingPool) -> list[tuple[np.ndarray, np.ndarray]]:
        if len(pool.seen_images) != len(pool.seen_masks):
            raise ValueError(
                f"TrainingPool has {len(pool.seen_images)} seen images but {len(pool.seen_masks)} seen masks"
            )
        pairs = []
        for image, mask in zip(pool.seen_images, pool.seen_masks):
            if image.shape[:2] != mask.shape:
                raise ValueError(f"seen anomaly image {image.shape[:2]} and mask {mask.shape} differ in size")
            if mask.any():
                pairs.append((image, mask.astype(bool)))
        if not pairs:
            raise ValueError(
                f"Extended anomalies need seen anomalies, but category {pool.category!r} has none with a non-empty mask; "
                "set num_seen_anomalies > 0 or turn extended anomalies (ea) off"
            )
        return pairs

    def __call__(self, base: NormalImage, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        image, mask = self.anomalies[int(rng.integers(len(self.anomalies)))]
        if image.shape != base.image.shape:
            raise ValueError(
                f"seen anomaly shape {image.shape} differs from the normal image shape {base.image.shape}; resize both to the pool's image_size"
            )
        recoloured = apply_random_ops(image, self.color_ops, AUG1_OP_COUNT, rng)
        target = self._target_area(base, rng)
        region_image, region_mask = self._place(recoloured, mask, target, rng)
        clipped = region_mask & target
        blended = blend_anomaly(base.image, region_image, clipped, sample_beta(self.beta, rng))
        return blended, clipped.astype(np.float32)

    def _target_area(self, base: NormalImage, rng: np.random.Generator) -> np.ndarray:
        shape = base.image.shape[:2]
        if not self.use_target_area:
            return np.ones(shape, dtype=bool)
        return random_target_area(shape, rng, base.foreground, self.target_shapes, self.target_scale)

    def _place(
        self, image: np.ndarray, mask: np.ndarray, target: np.ndarray, rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray]:
        """Aug_2 redrawn until the region overlaps ``target`` enough; best overlap, then a plain shift."""
        mask_uint8 = mask.astype(np.uint8)
        wanted = self.min_overlap_fraction * min(int(mask.sum()), int(target.sum()))
        best, best_overlap = None, 0
        for _ in range(self.max_placement_tries):
            moved = seeded_compose([self.spatial_op], rng)(image=image, mask=mask_uint8)
            moved_mask = moved["mask"].astype(bool)
            overlap = int((moved_mask & target).sum())
            if overlap >= max(1.0, wanted):
                return moved["image"], moved_mask
            if overlap > best_overlap:
                best, best_overlap = (moved["image"], moved_mask), overlap
        if best is not None:
            return best
        logger.debug("EA: %d Aug_2 draws missed the target area; placing by plain shift", self.max_placement_tries)
        return _shift_onto(image, mask, target, rng)
