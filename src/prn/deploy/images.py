"""Inputs of the deployed model, prepared exactly as training prepared its images.

Files are decoded and resized by :func:`prn.data.image_io.load_image`, the very function the
training and test sets use (Pillow, RGB, bilinear with antialiasing), and arrays go through
the same conversion (:func:`prn.data.image_io.rgb_at_size`), so a deployed score equals the
checkpoint's on the same file. Maps go back to each input's native size bilinearly.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from prn.data.image_io import image_size_of, load_image, rgb_at_size
from prn.data.records import IMAGE_SUFFIXES, list_image_files

ImageInput = str | Path | np.ndarray | Image.Image


@dataclass(frozen=True)
class PreparedImage:
    """One input at the model's size (``[3, H, W]`` float32 in ``[0, 1]``), its native ``(h, w)`` and a name for it."""

    pixels: np.ndarray
    native_size: tuple[int, int]
    source: str


def image_files(folder: Path) -> list[Path]:
    """Image files below ``folder`` (recursively, sorted, hidden files left out)."""
    files = list_image_files(folder, recursive=True)
    if not files:
        raise ValueError(f"{folder} holds no image files ({', '.join(IMAGE_SUFFIXES)}): check the folder")
    return files


def expand_inputs(inputs: ImageInput | Iterable[ImageInput]) -> Iterator[ImageInput]:
    """Single inputs, folders (their image files) and ``[N, h, w, (c)]`` arrays as a flat stream of images."""
    if isinstance(inputs, (str, Path)):
        path = Path(inputs)
        yield from image_files(path) if path.is_dir() else [path]
    elif isinstance(inputs, Image.Image) or (isinstance(inputs, np.ndarray) and inputs.ndim in (2, 3)):
        yield inputs
    elif isinstance(inputs, np.ndarray) and inputs.ndim == 4:
        yield from inputs
    elif isinstance(inputs, np.ndarray):
        raise ValueError(f"an image array must be (h, w), (h, w, c) or a batch (n, h, w, c); got shape {inputs.shape}")
    else:
        for item in inputs:
            yield from expand_inputs(item)


def prepare(image: ImageInput, size: tuple[int, int], index: int) -> PreparedImage:
    """``image`` (a file, an RGB/gray array of any size, or a PIL image) as the model's input."""
    if isinstance(image, (str, Path)):
        path = Path(image)
        return PreparedImage(to_model_layout(load_image(path, size)), image_size_of(path), str(path))
    if isinstance(image, np.ndarray):
        image = array_as_image(image)
    if not isinstance(image, Image.Image):
        raise TypeError(f"input {index} is a {type(image).__name__}: pass a file path, a numpy array or a PIL image")
    return PreparedImage(to_model_layout(rgb_at_size(image, size)), (image.height, image.width), f"image[{index}]")


def array_as_image(array: np.ndarray) -> Image.Image:
    """An RGB (or gray, or RGBA) array as a PIL image: ``uint8`` as it is, ``uint16`` gray, floats in ``[0, 1]``.

    Floats are rounded to ``uint8``, as a decoded file would be, so that the resize is training's.
    Arrays are read as RGB: OpenCV's ``imread`` gives BGR, pass ``image[..., ::-1]``.
    """
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[..., 0]
    if array.ndim == 3 and array.shape[2] not in (3, 4):
        raise ValueError(f"an image array needs 1, 3 (RGB) or 4 (RGBA) channels last; got shape {array.shape}")
    if np.issubdtype(array.dtype, np.floating):
        if array.size and (np.nanmin(array) < 0.0 or np.nanmax(array) > 1.0):
            raise ValueError("a float image array must hold values in [0, 1]; pass uint8 for 0..255")
        array = np.clip(array * 255.0 + 0.5, 0, 255).astype(np.uint8)
    if array.dtype != np.uint8 and not (array.dtype == np.uint16 and array.ndim == 2):
        raise ValueError(f"image arrays must be uint8, uint16 (gray) or float in [0, 1]; got {array.dtype}")
    return Image.fromarray(np.ascontiguousarray(array))


def to_model_layout(image: np.ndarray) -> np.ndarray:
    """``uint8 (H, W, 3)`` to float32 ``(3, H, W)`` in ``[0, 1]``, as :func:`prn.data.training.image_tensor` does."""
    return np.ascontiguousarray(image.transpose(2, 0, 1)).astype(np.float32) / np.float32(255.0)


def native_size_map(anomaly_map: np.ndarray, native_size: tuple[int, int]) -> np.ndarray:
    """A model-size map ``(H, W)`` resized bilinearly to the input's native ``(h, w)``."""
    if anomaly_map.shape == tuple(native_size):
        return anomaly_map.astype(np.float32, copy=True)
    resized = Image.fromarray(anomaly_map.astype(np.float32)).resize(native_size[::-1], Image.Resampling.BILINEAR)
    return np.asarray(resized, dtype=np.float32)
