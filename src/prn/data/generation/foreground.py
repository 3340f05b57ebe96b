"""Foreground masks for target areas: MVTec ships none, so we derive them per category.

Two estimators (``ForegroundEstimator(method=...)``, ``generation.foreground.method=``):

``features`` (default): where frozen ImageNet features differ from everything seen along
the image borders (:mod:`prn.data.generation.border_contrast`). It finds a dark part on a
dark, noisy background, where colour cannot, and returns nothing (hence the whole image)
for a texture that fills the frame. It needs the encoder's ImageNet weights; with a random
encoder (``weights=null``) it falls back to ``colour``, with a warning.

``colour``, for object categories photographed on a plain backdrop:

1. Background colour per image = median colour of a thin band along the image border.
2. Per pixel: Euclidean RGB distance to that colour, lightly blurred to calm noise.
3. One threshold per *category*: Otsu over the distances of all its images pooled, so
   every image is split by the same contrast level (single images can be unimodal).
4. Per image (both methods): morphological closing then opening (kernel ≈ 2 % of the
   image side), holes filled, only the largest connected component kept.
5. Degenerate result (foreground under ``min_fraction`` or over ``max_fraction`` of the
   image; by default 10 % and 98 %) → the whole image, with a logged warning: anomalies
   may then land anywhere, which is the texture behaviour and never blocks training.

Results are cached per category in ``cache_dir`` as ``foreground_<category>_<count>_<hash>.npz``
where the hash covers every image's bytes and the estimator's parameters, so a changed
image set or setting never reuses stale masks.

User masks: ``mask_dir`` (or ``mask_dir/<category>`` when that subfolder exists) holding
one image file per training image replaces estimation. Files are matched **by index
order**: sorted by file name, the i-th file belongs to the i-th image as passed in
(datamodules pass training images sorted by file name, so naming masks like the images,
e.g. ``000.png``, lines them up). Non-zero pixels (>= 128) are foreground. A mask with
the image's aspect ratio but another resolution is resized (nearest neighbour).
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

import cv2
import numpy as np
from PIL import Image
from scipy import ndimage

from prn.data.generation.border_contrast import border_contrast
from prn.models.encoder import ResNet18Encoder

logger = logging.getLogger(__name__)

MASK_SUFFIXES = (".png", ".bmp", ".jpg", ".jpeg", ".tif", ".tiff")
CACHE_VERSION = "v2"
METHODS = ("features", "colour")


def otsu_threshold(values: np.ndarray, bins: int = 256) -> float:
    """Otsu's threshold of a 1-D sample: maximises the between-class variance."""
    histogram, edges = np.histogram(values, bins=bins)
    centres = (edges[:-1] + edges[1:]) / 2
    weight_low = np.cumsum(histogram)
    weight_high = weight_low[-1] - weight_low
    sum_low = np.cumsum(histogram * centres)
    mean_low = sum_low / np.maximum(weight_low, 1)
    mean_high = (sum_low[-1] - sum_low) / np.maximum(weight_high, 1)
    between = weight_low * weight_high * (mean_low - mean_high) ** 2
    return float(edges[int(np.argmax(between)) + 1])


def _largest_component(mask: np.ndarray) -> np.ndarray:
    count, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    if count <= 1:
        return mask
    largest = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    return labels == largest


def _images_digest(images: list[np.ndarray], settings: str) -> str:
    digest = hashlib.sha1(settings.encode())
    for image in images:
        digest.update(str(image.shape).encode())
        digest.update(np.ascontiguousarray(image).tobytes())
    return digest.hexdigest()[:16]


class ForegroundEstimator:
    """``ForegroundFn``: one ``bool`` foreground mask per normal training image of a category.

    See the module docstring for the method, the cache and the ``mask_dir`` override.
    ``last_source`` records where the latest masks came from: ``"mask_dir"``,
    ``"cache"`` or ``"estimated"``.
    """

    def __init__(
        self,
        cache_dir: str | None = None,
        mask_dir: str | None = None,
        method: str = "features",
        encoder_weights: str | None = "imagenet",
        border_fraction: float = 0.03,
        kernel_fraction: float = 0.02,
        min_fraction: float = 0.10,
        max_fraction: float = 0.98,
    ) -> None:
        if method not in METHODS:
            raise ValueError(f"generation.foreground.method={method!r} is not one of {list(METHODS)}")
        if not 0.0 < border_fraction < 0.5:
            raise ValueError(f"ForegroundEstimator border_fraction must lie in (0, 0.5), got {border_fraction}")
        if not 0.0 <= min_fraction < max_fraction <= 1.0:
            raise ValueError(
                f"ForegroundEstimator needs 0 <= min_fraction < max_fraction <= 1, got {min_fraction}, {max_fraction}"
            )
        self.cache_dir = Path(cache_dir) if cache_dir else None
        self.mask_dir = Path(mask_dir) if mask_dir else None
        self.border_fraction = border_fraction
        self.kernel_fraction = kernel_fraction
        self.min_fraction = min_fraction
        self.max_fraction = max_fraction
        self.method = method
        self.encoder_weights = encoder_weights
        self.last_source = ""

    def __call__(self, images: list[np.ndarray], category: str) -> list[np.ndarray]:
        if not images:
            raise ValueError(f"ForegroundEstimator got no images for category {category!r}")
        if self.mask_dir is not None:
            self.last_source = "mask_dir"
            return self._load_user_masks(images, category)
        cache_path = self.cache_path(images, category)
        if cache_path is not None and cache_path.is_file():
            self.last_source = "cache"
            with np.load(cache_path) as stored:
                return list(stored["masks"].astype(bool))
        masks = self.estimate(images, category)
        if cache_path is not None:
            cache_path.parent.mkdir(parents=True, exist_ok=True)
            np.savez_compressed(cache_path, masks=np.stack(masks))
        self.last_source = "estimated"
        return masks

    def cache_path(self, images: list[np.ndarray], category: str) -> Path | None:
        """Where masks for exactly these images and settings are cached (None without ``cache_dir``)."""
        if self.cache_dir is None:
            return None
        settings = (
            f"{CACHE_VERSION}:{self.method}:{self.encoder_weights}:{self.border_fraction}:{self.kernel_fraction}:"
            f"{self.min_fraction}:{self.max_fraction}"
        )
        safe_category = "".join(c if c.isalnum() or c in "-_" else "_" for c in category) or "default"
        return self.cache_dir / f"foreground_{safe_category}_{len(images)}_{_images_digest(images, settings)}.npz"

    def estimate(self, images: list[np.ndarray], category: str) -> list[np.ndarray]:
        """One mask per image by the configured method, cleaned and checked (module docstring)."""
        if self.method == "features" and self.encoder_weights is None:
            logger.warning(
                "generation.foreground.method=features needs ImageNet encoder weights, but weights=null: "
                "estimating the foreground of %r from colour instead.",
                category,
            )
        if self.method == "features" and self.encoder_weights is not None:
            contrast, threshold = border_contrast(images, ResNet18Encoder(self.encoder_weights))
            height, width = images[0].shape[:2]
            maps = [cv2.resize(cells, (width, height), interpolation=cv2.INTER_LINEAR) for cells in contrast]
        else:
            maps = [self._background_distance(image) for image in images]
            threshold = otsu_threshold(np.concatenate([d[::4, ::4].ravel() for d in maps]))
        return self._whole_where_implausible([self._clean(values > threshold) for values in maps], category)

    def _background_distance(self, image: np.ndarray) -> np.ndarray:
        if image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"ForegroundEstimator expects HxWx3 RGB images, got shape {image.shape}")
        height, width = image.shape[:2]
        band = max(1, int(round(min(height, width) * self.border_fraction)))
        pixels = image.astype(np.float32)
        border = np.concatenate(
            [
                pixels[:band].reshape(-1, 3),
                pixels[-band:].reshape(-1, 3),
                pixels[:, :band].reshape(-1, 3),
                pixels[:, -band:].reshape(-1, 3),
            ]
        )
        distance = np.linalg.norm(pixels - np.median(border, axis=0), axis=2)
        return cv2.GaussianBlur(distance, (0, 0), sigmaX=max(1.0, min(height, width) / 256))

    def _clean(self, mask: np.ndarray) -> np.ndarray:
        height, width = mask.shape
        size = max(3, int(round(min(height, width) * self.kernel_fraction)) | 1)
        kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (size, size))
        cleaned = cv2.morphologyEx(mask.astype(np.uint8), cv2.MORPH_CLOSE, kernel)
        cleaned = cv2.morphologyEx(cleaned, cv2.MORPH_OPEN, kernel)
        return _largest_component(ndimage.binary_fill_holes(cleaned.astype(bool))).astype(bool)

    def _whole_where_implausible(self, masks: list[np.ndarray], category: str) -> list[np.ndarray]:
        """Masks whose cover lies outside ``[min_fraction, max_fraction]`` become the whole image, with one
        warning for the lot (a texture or a surface falls back on every image, and hundreds of lines bury it)."""
        fractions = np.array([mask.mean() for mask in masks])
        implausible = np.flatnonzero((fractions < self.min_fraction) | (fractions > self.max_fraction))
        if implausible.size:
            logger.warning(
                "Foreground of %r: %d of %d images cover %.1f%%-%.1f%% of the frame (allowed %.0f%%-%.0f%%; first: "
                "image %d); using the whole image for them. Pass your own masks with mask_dir if this category "
                "needs a foreground.",
                category,
                implausible.size,
                len(masks),
                100 * fractions[implausible].min(),
                100 * fractions[implausible].max(),
                100 * self.min_fraction,
                100 * self.max_fraction,
                implausible[0],
            )
        fallback = set(implausible.tolist())
        return [np.ones_like(mask) if index in fallback else mask for index, mask in enumerate(masks)]

    def _load_user_masks(self, images: list[np.ndarray], category: str) -> list[np.ndarray]:
        folder = self.mask_dir / category if (self.mask_dir / category).is_dir() else self.mask_dir
        if not folder.is_dir():
            raise FileNotFoundError(
                f"ForegroundEstimator mask_dir {folder} does not exist; point mask_dir at a folder of masks or set it to null"
            )
        files = sorted(p for p in folder.iterdir() if p.suffix.lower() in MASK_SUFFIXES)
        if len(files) != len(images):
            raise ValueError(
                f"ForegroundEstimator mask_dir {folder} holds {len(files)} mask files for {len(images)} training images of "
                f"{category!r}; masks are matched to images by sorted file order, so provide exactly one per image"
            )
        return [self._read_mask(path, image.shape[:2]) for path, image in zip(files, images)]

    @staticmethod
    def _read_mask(path: Path, shape: tuple[int, int]) -> np.ndarray:
        mask = np.asarray(Image.open(path).convert("L")) >= 128
        if mask.shape == tuple(shape):
            return mask
        height, width = shape
        if abs(mask.shape[0] * width - mask.shape[1] * height) > max(height, width):
            raise ValueError(
                f"Foreground mask {path} is {mask.shape[1]}x{mask.shape[0]} but its image is {width}x{height} (other aspect ratio); resize the mask to the image"
            )
        return cv2.resize(mask.astype(np.uint8), (width, height), interpolation=cv2.INTER_NEAREST).astype(bool)
