"""Thin-line anomalies: cracks and scratches one to three pixels wide.

Blobs (HEA, HOA) and erased patches teach anomalies that cover an area; a crack or a scratch
covers a line, often fainter than any blob and narrower than a feature cell (a layer-1 cell
is 4 pixels). This source draws such lines on a normal image: wandering random walks (a
crack's jagged path, with an occasional branch) to nearly straight strokes (a scratch), dark
or bright, sometimes with the lit rim a crack's edge catches, with a contrast drawn from
faint to strong. The mask is the line's core.

Two rules keep the labels honest: a line is never fainter than ``MIN_NOISE_RATIO`` times the
fine grain around it (fainter lines are not visible, so labelling them teaches noise), and
only pixels that really changed by half the line's contrast are labelled (a line clipped at
white or black, or leaving the part, labels nothing there).

The geometry (``draw_line_profile``) is plain numpy and shared with the device twin, which
shades on the training device (``prn.data.device.lines``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from prn.data.generation.erased import grain_spread, value_range

DEFAULT_LENGTH = (0.08, 0.45)  # line length as a fraction of the part's (or image's) extent
DEFAULT_WIDTH = (1, 3)  # core width in pixels at the training resolution
DEFAULT_CONTRAST = (0.08, 0.45)  # change at the core as a fraction of the image's 1-99 % value range
MIN_NOISE_RATIO = 2.5  # a line at least this many times the local fine grain's spread
TURN_SPREAD = (0.02, 0.3)  # radians per step, log-uniform: a straight scratch .. a jagged crack
BRANCH_PROBABILITY = 0.35
RIM_PROBABILITY = 0.4  # a lit (or shadowed) rim beside the core, as a crack's edge catches light
DARK_PROBABILITY = 0.7  # cracks and most scratches read dark
LABEL_FRACTION = 0.5  # a pixel is labelled when it moved by this share of the line's contrast
MIN_LABELLED_PIXELS = 12
MAX_LINE_ATTEMPTS = 8
SUBPIXEL_BITS = 3


FILLS_FRAME = 0.95  # median foreground share at which a part counts as a surface filling the image


def fills_frame(coverages: Sequence[float]) -> bool:
    """Whether a category is a surface or texture: its normals' median foreground covers the image.

    ``coverages`` is each normal's foreground share (1.0 where it has none, or the estimate fell back
    to the whole image). ``generation.lines=auto`` draws lines on such parts only: measured, they lift
    thin cracks on a surface and cost an object's cut leads some localisation (docs/own-parts.md).
    """
    return bool(len(coverages)) and float(np.median(coverages)) >= FILLS_FRAME


def resolve_lines(use_lines: bool | str, coverages: Sequence[float]) -> bool:
    """``generation.lines`` as a bool: ``true``/``false`` as given, ``auto`` on surfaces only."""
    if isinstance(use_lines, str):
        if use_lines != "auto":
            raise ValueError(f"generation.lines must be true, false or auto, got {use_lines!r}")
        return fills_frame(coverages)
    return bool(use_lines)


@dataclass(frozen=True)
class LineShading:
    """How a drawn line changes the image: sign, strength and an optional rim."""

    polarity: float  # -1 dark, +1 bright
    contrast: float  # fraction of the value range at the core
    rim: float  # rim strength as a fraction of the core's (0: none), opposite sign


def checked_line_options(
    length: Sequence[float], width: Sequence[int], contrast: Sequence[float]
) -> tuple[tuple[float, float], tuple[int, int], tuple[float, float]]:
    """The line options as stored, or the error naming the bad one (both the CPU and the device source)."""
    if not 0.0 < length[0] <= length[1] <= 2.0:
        raise ValueError(f"line length must satisfy 0 < low <= high <= 2 (fractions of the part), got {tuple(length)}")
    if not 1 <= int(width[0]) <= int(width[1]):
        raise ValueError(f"line width must satisfy 1 <= low <= high pixels, got {tuple(width)}")
    if not 0.0 < contrast[0] <= contrast[1] <= 1.0:
        raise ValueError(f"line contrast must satisfy 0 < low <= high <= 1, got {tuple(contrast)}")
    return (
        (float(length[0]), float(length[1])),
        (int(width[0]), int(width[1])),
        (float(contrast[0]), float(contrast[1])),
    )


def random_walk(
    start: np.ndarray, heading: float, length: float, turn: float, step: float, rng: np.random.Generator
) -> np.ndarray:
    """``[n, 2]`` (x, y) points of a walk from ``start``: each step turns by N(0, ``turn``) radians."""
    count = max(2, int(math.ceil(length / step)) + 1)
    headings = heading + np.cumsum(rng.normal(0.0, turn, size=count - 1))
    moves = step * np.stack([np.cos(headings), np.sin(headings)], axis=1)
    return np.vstack([start[None], start[None] + np.cumsum(moves, axis=0)])


def line_paths(start: np.ndarray, length: float, rng: np.random.Generator, step: float = 2.0) -> list[np.ndarray]:
    """One crack or scratch from ``start``: a main walk, sometimes a shorter branch off it."""
    turn = float(np.exp(rng.uniform(np.log(TURN_SPREAD[0]), np.log(TURN_SPREAD[1]))))
    heading = float(rng.uniform(0.0, 2.0 * np.pi))
    paths = [random_walk(start, heading, length, turn, step, rng)]
    if rng.random() < BRANCH_PROBABILITY and len(paths[0]) > 4:
        fork = paths[0][int(rng.integers(1, len(paths[0]) - 1))]
        branch_heading = heading + float(rng.choice((-1.0, 1.0))) * float(rng.uniform(0.5, 1.3))
        paths.append(random_walk(fork, branch_heading, length * float(rng.uniform(0.2, 0.6)), turn, step, rng))
    return paths


def draw_core(canvas: np.ndarray, path: np.ndarray, width: int) -> None:
    """``path`` drawn anti-aliased on ``canvas`` with a core ``width`` pixels across.

    OpenCV's anti-aliased thickness t gives a core of 2t - 1 pixels, so odd widths are one stroke of
    thickness (width + 1) / 2 and even widths two strokes of thickness width / 2, offset half a pixel
    either way along the path's normal.
    """
    scale = 1 << SUBPIXEL_BITS
    if width % 2:
        strokes, thickness = [path], (width + 1) // 2
    else:
        tangent = np.gradient(path, axis=0)
        normal = np.stack([-tangent[:, 1], tangent[:, 0]], axis=1)
        normal /= np.maximum(np.linalg.norm(normal, axis=1, keepdims=True), 1e-9)
        strokes, thickness = [path - 0.5 * normal, path + 0.5 * normal], width // 2
    for stroke in strokes:
        points = np.round(stroke * scale).astype(np.int32)[:, None, :]
        cv2.polylines(canvas, [points], False, 255, thickness=thickness, lineType=cv2.LINE_AA, shift=SUBPIXEL_BITS)


def draw_line_profile(
    shape: tuple[int, int],
    allowed: np.ndarray | None,
    rng: np.random.Generator,
    length_range: Sequence[float] = DEFAULT_LENGTH,
    width_range: Sequence[int] = DEFAULT_WIDTH,
) -> np.ndarray:
    """``float32`` ``[H, W]`` in [0, 1]: one line drawn anti-aliased, 1 on its core, cut to ``allowed``.

    The line starts at a random ``allowed`` pixel (anywhere when None or empty); its length is a
    fraction of ``allowed``'s extent, so a line on a small part stays on the part.
    """
    region = np.ones(shape, dtype=bool) if allowed is None or not allowed.any() else allowed.astype(bool)
    rows, cols = np.nonzero(region)
    extent = float(max(rows.max() - rows.min(), cols.max() - cols.min()) + 1)
    pick = int(rng.integers(len(rows)))
    start = np.array([cols[pick], rows[pick]], dtype=np.float64) + rng.uniform(-0.5, 0.5, size=2)
    length = float(rng.uniform(*length_range)) * extent
    width = int(rng.integers(int(width_range[0]), int(width_range[1]) + 1))
    canvas = np.zeros(shape, dtype=np.uint8)
    for path in line_paths(start, length, rng):
        draw_core(canvas, path, width)
    profile = canvas.astype(np.float32) / 255.0
    return profile * region


def random_shading(rng: np.random.Generator, contrast_range: Sequence[float] = DEFAULT_CONTRAST) -> LineShading:
    """Dark or bright, contrast log-uniform in ``contrast_range`` (faint lines as often as strong ones)."""
    low, high = np.log(contrast_range[0]), np.log(contrast_range[1])
    return LineShading(
        polarity=-1.0 if rng.random() < DARK_PROBABILITY else 1.0,
        contrast=float(np.exp(rng.uniform(low, high))),
        rim=float(rng.uniform(0.3, 0.7)) if rng.random() < RIM_PROBABILITY else 0.0,
    )


def rim_profile(profile: np.ndarray) -> np.ndarray:
    """The band just beside a line's core (a blurred copy minus the core), in [0, 1]."""
    spread = cv2.GaussianBlur(profile, (0, 0), 1.5)
    return np.clip(2.0 * spread - profile, 0.0, 1.0) * (profile < 0.5)


def shade_line(image: np.ndarray, profile: np.ndarray, shading: LineShading) -> tuple[np.ndarray, np.ndarray]:
    """(``image`` with the line, ``bool`` mask of the pixels that moved by ``LABEL_FRACTION`` of its contrast)."""
    near = cv2.dilate((profile > 0).astype(np.uint8), np.ones((9, 9), np.uint8)).astype(bool)
    strength = max(shading.contrast * value_range(image), MIN_NOISE_RATIO * grain_spread(image, near))
    change = shading.polarity * strength * (profile - shading.rim * rim_profile(profile))
    lined = np.clip(image.astype(np.float32) + change[..., None], 0, 255)
    moved = np.abs(lined - image.astype(np.float32)).max(axis=2)
    mask = moved >= LABEL_FRACTION * strength
    return lined.round().astype(np.uint8), mask


class ThinLineAnomalySource:
    """``AnomalySource`` for cracks and scratches: returns (image with a thin line, its core's mask)."""

    def __init__(
        self,
        length: Sequence[float] = DEFAULT_LENGTH,
        width: Sequence[int] = DEFAULT_WIDTH,
        contrast: Sequence[float] = DEFAULT_CONTRAST,
    ) -> None:
        self.length, self.width, self.contrast = checked_line_options(length, width, contrast)

    def __call__(
        self, image: np.ndarray, foreground: np.ndarray | None, rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray]:
        """A line on ``foreground`` (None: anywhere); redrawn while fewer than ``MIN_LABELLED_PIXELS`` changed."""
        best = (image, np.zeros(image.shape[:2], dtype=bool))
        for _ in range(MAX_LINE_ATTEMPTS):
            profile = draw_line_profile(image.shape[:2], foreground, rng, self.length, self.width)
            lined, mask = shade_line(image, profile, random_shading(rng, self.contrast))
            if mask.sum() >= MIN_LABELLED_PIXELS:
                return lined, mask.astype(np.float32)
            if mask.sum() > best[1].sum():
                best = (lined, mask)
        return best[0], best[1].astype(np.float32)
