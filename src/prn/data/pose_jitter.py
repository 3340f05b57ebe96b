"""Pose jitter: one seeded random rotation + shift per image file, the same for its mask.

A stress test for PRN, whose prototypes are whole normal feature maps: when a part sits
at a different position and angle in every image, no whole map fits. ``pose_jitter``
(``{shift: 0.1, rotation: 30}``) reproduces that on aligned data such as MVTec: every
decoded image and its mask get the similarity transform drawn by :func:`jitter_params`
from the run's seed and the file's path, so a run (and an evaluation from its
checkpoint) sees exactly the same perturbed images. :func:`apply_pose` warps an image
bilinearly and its mask nearest-neighbour, both with the edge replicated into the
uncovered border, so no black wedge appears that a model could call an anomaly.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from prn.data.errors import DatasetError

OPTION = "dataset.pose_jitter"
MAX_SHIFT = 0.5
MAX_ROTATION = 180.0
_SALT = 0x9E3779B97F4A7C15  # keeps these draws apart from every other use of the run seed


@dataclass(frozen=True)
class PoseParams:
    """Rotate ``angle`` degrees (counter-clockwise) about the centre, then shift by ``dx``/``dy`` image sides."""

    angle: float = 0.0
    dx: float = 0.0
    dy: float = 0.0

    @property
    def is_identity(self) -> bool:
        return self.angle == 0.0 and self.dx == 0.0 and self.dy == 0.0


def checked_pose_jitter(value: Mapping[str, Any] | None) -> dict[str, float] | None:
    """``None`` or ``{shift, rotation}`` as floats; missing keys are 0, anything else is a config error."""
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise DatasetError(
            f"{OPTION}={value!r} must be null or a mapping like {{shift: 0.1, rotation: 30}} "
            f"(e.g. 'pose_jitter={{shift:0.1,rotation:30}}' on the command line)."
        )
    unknown = sorted(str(key) for key in value if key not in ("shift", "rotation"))
    if unknown:
        raise DatasetError(
            f"{OPTION} has unknown keys {unknown}; use only shift and rotation, e.g. {{shift: 0.1, rotation: 30}}."
        )
    shift = _checked_amount(
        value.get("shift", 0.0), f"{OPTION}.shift", MAX_SHIFT, "a fraction of the image side, e.g. 0.1"
    )
    rotation = _checked_amount(value.get("rotation", 0.0), f"{OPTION}.rotation", MAX_ROTATION, "degrees, e.g. 30")
    return {"shift": shift, "rotation": rotation}


def jitter_params(key: str, seed: int, shift: float, rotation: float) -> PoseParams:
    """The pose of file ``key`` (its path relative to the dataset root) in a run with ``seed``.

    ``angle`` is uniform in ``[-rotation, rotation]`` degrees, ``dx`` and ``dy`` each uniform
    in ``[-shift, shift]``. The same three uniform draws are scaled for every setting, so a
    larger jitter moves each image further in the same direction.
    """
    digest = int.from_bytes(hashlib.blake2b(str(key).encode("utf-8"), digest_size=16).digest(), "little")
    rng = np.random.default_rng(np.random.SeedSequence([_SALT, int(seed), digest]))
    angle, dx, dy = rng.uniform(-1.0, 1.0, size=3)
    return PoseParams(angle=float(angle * rotation), dx=float(dx * shift), dy=float(dy * shift))


def pose_matrix(size: tuple[int, int], params: PoseParams) -> np.ndarray:
    """The 2x3 affine matrix (output = M @ [x, y, 1] of the input) for an ``(h, w)`` image."""
    height, width = size
    centre = ((width - 1) / 2.0, (height - 1) / 2.0)
    matrix = cv2.getRotationMatrix2D(centre, params.angle, 1.0)
    matrix[0, 2] += params.dx * width
    matrix[1, 2] += params.dy * height
    return matrix


def apply_pose(image: np.ndarray, mask: np.ndarray | None, params: PoseParams) -> tuple[np.ndarray, np.ndarray | None]:
    """Warp a ``uint8`` ``(h, w, 3)`` image (bilinear) and its ``bool`` ``(h, w)`` mask (nearest, stays binary).

    The uncovered border replicates the edge in both, so image and mask stay consistent
    (a defect touching the edge is smeared into the border in both). ``mask=None`` (a good
    image) stays ``None``. New arrays are returned; the inputs are not modified.
    """
    size = image.shape[:2]
    if mask is not None and mask.shape != size:
        raise ValueError(f"mask shape {mask.shape} does not match image shape {image.shape}")
    if params.is_identity:
        return image.copy(), None if mask is None else mask.copy()
    matrix = pose_matrix(size, params)
    dsize = (size[1], size[0])
    warped = cv2.warpAffine(image, matrix, dsize, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    if mask is None:
        return np.ascontiguousarray(warped, dtype=image.dtype), None
    warped_mask = cv2.warpAffine(
        mask.astype(np.uint8), matrix, dsize, flags=cv2.INTER_NEAREST, borderMode=cv2.BORDER_REPLICATE
    )
    return np.ascontiguousarray(warped, dtype=image.dtype), warped_mask > 0


def _checked_amount(value: Any, option: str, maximum: float, unit: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise DatasetError(f"{option}={value!r} must be a number in [0, {maximum:g}] ({unit}); use 0 to switch it off.")
    amount = float(value)
    if not math.isfinite(amount) or not 0.0 <= amount <= maximum:
        raise DatasetError(f"{option}={value!r} must be in [0, {maximum:g}] ({unit}); use 0 to switch it off.")
    return amount
