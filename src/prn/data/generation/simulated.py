"""Simulated anomalies (SA, PRN Sec. 3.4): Perlin blobs filled with foreign or self-similar content.

* HEA (heterologous): a random DTD texture, resized to the image and augmented with
  three random DRAEM operations — out-of-distribution content.
* HOA (homologous): another normal image of the pool, colour-jittered, randomly rotated
  by a multiple of 90° and/or flipped, and cyclically shifted by up to half its size —
  in-distribution content in the wrong place or colour (without the shift, centred
  objects such as bottles would paste their own structure back in place, unseen).
* Erase (beyond the paper): a piece of the part removed and inpainted from its
  surroundings (``erased.ErasedAnomalySource``): absences such as cut leads or missing
  pins, which neither pasted kind teaches.
* Lines (beyond the paper): cracks and scratches one to three pixels wide
  (``thin_lines.ThinLineAnomalySource``), thinner and fainter than any blob.

With ``visible_only`` (beyond the paper) a pasted blob is labelled only where it visibly changed the
image (``erased.changed_pixels``, the erase source's rule) and left as the base elsewhere; blobs that
change almost nothing are redrawn. A normal patch pasted on a plain surface, or a texture blended
at high β, otherwise labels pixels that look normal and teaches the decoder to flag normal texture.

With TA on, the Perlin blobs are confined to a random target area and cover at least
``min_mask_fraction`` of it (``perlin_mask_within``: the threshold drops only as far as
needed; plain clipping leaves slivers or nothing). The fill is then blended with
opacity β exactly as for extended anomalies.
"""

from __future__ import annotations

import logging
from collections import Counter, OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from prn.data.generation.augment import (
    apply_random_ops,
    blend_anomaly,
    homologous_color_ops,
    sample_beta,
    seeded_compose,
    texture_ops,
    validate_beta,
)
from prn.data.generation.erased import ErasedAnomalySource, changed_pixels
from prn.data.generation.perlin import perlin_mask, perlin_mask_within
from prn.data.generation.target_area import DEFAULT_TARGET_SCALE, TARGET_SHAPES, random_target_area
from prn.data.generation.thin_lines import ThinLineAnomalySource, resolve_lines
from prn.data.types import NormalImage, TrainingPool

logger = logging.getLogger(__name__)

TEXTURE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff")
TEXTURE_OP_COUNT = 3
MAX_OTHER_NORMAL_TRIES = 10
MIN_VISIBLE_PIXELS = 16  # with visible_only: a paste that visibly changed fewer pixels is redrawn
MAX_VISIBLE_ATTEMPTS = 8


def list_textures(dtd_dir: str | None) -> list[Path]:
    """Every image file below ``dtd_dir`` (sorted), or a clear error naming ``generation.dtd_dir``."""
    fix = "point generation.dtd_dir at the DTD 'dtd/images' folder (one subfolder per texture class) or set generation.hea=false"
    if not dtd_dir:
        raise ValueError(
            f"Heterologous simulated anomalies (HEA) need DTD textures but generation.dtd_dir is not set; {fix}"
        )
    root = Path(dtd_dir).expanduser()
    if not root.is_dir():
        raise FileNotFoundError(f"generation.dtd_dir={root} does not exist; {fix}")
    files = sorted(p for p in root.rglob("*") if p.suffix.lower() in TEXTURE_SUFFIXES and p.is_file())
    if not files:
        raise FileNotFoundError(f"generation.dtd_dir={root} holds no images ({', '.join(TEXTURE_SUFFIXES)}); {fix}")
    return files


def decode_texture(path: Path, shape: tuple[int, int]) -> np.ndarray:
    """A DTD texture as uint8 RGB resized to ``shape``, or an error naming the file and the fix."""
    try:
        with Image.open(path) as image:
            resized = image.convert("RGB").resize((shape[1], shape[0]), Image.BILINEAR)
    except OSError as error:
        raise OSError(f"cannot read DTD texture {path}: {error}; remove the file from generation.dtd_dir") from error
    return np.asarray(resized, dtype=np.uint8)


class TextureCache:
    """Decoded textures resized to one size, kept in a bounded least-recently-used cache."""

    def __init__(self, files: list[Path], max_items: int = 64) -> None:
        self.files = files
        self.max_items = max(1, int(max_items))
        self._items: OrderedDict[tuple[int, int, int], np.ndarray] = OrderedDict()

    def __len__(self) -> int:
        return len(self._items)

    def get(self, index: int, shape: tuple[int, int]) -> np.ndarray:
        key = (index, shape[0], shape[1])
        if key in self._items:
            self._items.move_to_end(key)
            return self._items[key]
        texture = decode_texture(self.files[index], shape)
        self._items[key] = texture
        if len(self._items) > self.max_items:
            self._items.popitem(last=False)
        return texture


def foreground_coverages(pool: TrainingPool) -> list[float]:
    """Each pool normal's foreground share of the image (1.0 without one, as for textures)."""
    if pool.is_texture:
        return [1.0] * max(len(pool.normals), 1)
    return [1.0 if normal.foreground is None else float(normal.foreground.mean()) for normal in pool.normals]


class SimulatedAnomalySource:
    """``AnomalySource`` for HEA / HOA / erase / lines; each sample picks one of the kinds switched on, evenly.

    ``usage`` counts how many samples each kind (``"hea"`` / ``"hoa"`` / ``"erase"`` / ``"lines"``) produced.
    ``dtd_dir`` is only read when HEA is on.
    """

    def __init__(
        self,
        pool: TrainingPool,
        dtd_dir: str | None = None,
        use_heterologous: bool = True,
        use_homologous: bool = True,
        use_target_area: bool = True,
        beta: Sequence[float] = (0.0, 0.8),
        perlin_threshold: float = 0.5,
        target_shapes: Sequence[str] = TARGET_SHAPES,
        target_scale: Sequence[float] = DEFAULT_TARGET_SCALE,
        texture_cache_size: int = 64,
        min_mask_fraction: float = 0.3,
        use_erase: bool = False,
        use_lines: bool | str = False,
        visible_only: bool = False,
    ) -> None:
        if use_lines == "auto":
            coverages = foreground_coverages(pool)
            use_lines = resolve_lines(use_lines, coverages)
            logger.info(
                "generation.lines=auto: %s (median foreground %.0f%% of the frame)",
                "on, a surface" if use_lines else "off, an object",
                100 * float(np.median(coverages)) if coverages else 100.0,
            )
        use_lines = resolve_lines(use_lines, [])
        switches = (("hea", use_heterologous), ("hoa", use_homologous), ("erase", use_erase), ("lines", use_lines))
        self.kinds = [kind for kind, on in switches if on]
        if not self.kinds:
            raise ValueError(
                "SimulatedAnomalySource needs generation.hea, hoa, erase or lines on; with all off, leave simulated anomalies out"
            )
        self.eraser = ErasedAnomalySource(target_shapes) if use_erase else None
        self.liner = ThinLineAnomalySource() if use_lines else None
        if use_homologous and not pool.normals:
            raise ValueError(
                f"Homologous anomalies (generation.hoa) need normal images, but the pool of {pool.category!r} has none"
            )
        self.pool = pool
        self.textures = TextureCache(list_textures(dtd_dir), texture_cache_size) if use_heterologous else None
        self.use_target_area = use_target_area
        self.visible_only = visible_only
        self.beta = validate_beta(beta, "SimulatedAnomalySource")
        self.perlin_threshold = perlin_threshold
        self.min_mask_fraction = min_mask_fraction
        self.target_shapes = tuple(target_shapes)
        self.target_scale = (float(target_scale[0]), float(target_scale[1]))
        self.texture_ops = texture_ops()
        self.homologous_ops = homologous_color_ops()
        self.usage: Counter[str] = Counter()

    @staticmethod
    def check_inputs(dtd_dir: str | None = None, use_heterologous: bool = True, **_: Any) -> None:
        """With HEA on, the DTD folder's error (unset, missing, no images) before the pool is decoded.

        The datamodule calls it with the configured options (``check_source_inputs``) at the start of training.
        """
        if use_heterologous:
            list_textures(dtd_dir)

    def __call__(self, base: NormalImage, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        kind = self.kinds[int(rng.integers(len(self.kinds)))]
        self.usage[kind] += 1
        if kind == "erase":
            return self.eraser(base.image, base.foreground if self.use_target_area else None, rng)
        if kind == "lines":
            return self.liner(base.image, base.foreground if self.use_target_area else None, rng)
        if not self.visible_only:
            image, mask = self._pasted(kind, base, rng)
            return image, mask.astype(np.float32)
        return self._visibly_pasted(kind, base, rng)

    def _pasted(self, kind: str, base: NormalImage, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """A Perlin blob of ``kind``'s fill blended on ``base`` with opacity β (PRN Eq. 4), and the blob."""
        shape = base.image.shape[:2]
        fill = self._heterologous_fill(shape, rng) if kind == "hea" else self._homologous_fill(base, rng)
        mask = self._anomaly_mask(base, rng)
        return blend_anomaly(base.image, fill, mask, sample_beta(self.beta, rng)), mask

    def _visibly_pasted(self, kind: str, base: NormalImage, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """A paste labelled (and kept) only where it visibly changed ``base``; redrawn while it hardly did."""
        best = (base.image, np.zeros(base.image.shape[:2], dtype=bool))
        for _ in range(MAX_VISIBLE_ATTEMPTS):
            pasted, blob = self._pasted(kind, base, rng)
            visible = changed_pixels(base.image, pasted, blob)
            if visible.sum() > best[1].sum():
                best = (np.where(visible[..., None], pasted, base.image), visible)
            if visible.sum() >= MIN_VISIBLE_PIXELS:
                break
        return best[0], best[1].astype(np.float32)

    def _heterologous_fill(self, shape: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
        texture = self.textures.get(int(rng.integers(len(self.textures.files))), shape)
        return apply_random_ops(texture, self.texture_ops, TEXTURE_OP_COUNT, rng)

    def _homologous_fill(self, base: NormalImage, rng: np.random.Generator) -> np.ndarray:
        other = self._other_normal(base, rng)
        if other.shape != base.image.shape:
            raise ValueError(
                f"pool normal of shape {other.shape} differs from the base shape {base.image.shape}; resize all to the pool's image_size"
            )
        recoloured = seeded_compose([self.homologous_ops], rng)(image=other)["image"]
        square = other.shape[0] == other.shape[1]
        quarter_turns = int(rng.integers(4)) if square else 2 * int(rng.integers(2))
        turned = np.rot90(recoloured, quarter_turns)
        if rng.random() < 0.5:
            turned = turned[:, ::-1]
        height, width = turned.shape[:2]
        offset = (int(rng.integers(-height // 2, height // 2 + 1)), int(rng.integers(-width // 2, width // 2 + 1)))
        return np.ascontiguousarray(np.roll(turned, offset, axis=(0, 1)))

    def _other_normal(self, base: NormalImage, rng: np.random.Generator) -> np.ndarray:
        """A random pool normal, avoiding the base itself whenever the pool has another one."""
        normals = self.pool.normals
        candidate = normals[int(rng.integers(len(normals)))].image
        for _ in range(MAX_OTHER_NORMAL_TRIES):
            if candidate is not base.image or len(normals) == 1:
                break
            candidate = normals[int(rng.integers(len(normals)))].image
        return candidate

    def _anomaly_mask(self, base: NormalImage, rng: np.random.Generator) -> np.ndarray:
        shape = base.image.shape[:2]
        if not self.use_target_area:
            return perlin_mask(shape, rng, self.perlin_threshold)
        target = random_target_area(shape, rng, base.foreground, self.target_shapes, self.target_scale)
        return perlin_mask_within(target, rng, self.perlin_threshold, self.min_mask_fraction)
