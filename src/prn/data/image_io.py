"""Decoding images and masks into the arrays of ``prn.data.types``.

Everything goes through PIL so that gray, palette, RGBA and 16-bit files all arrive as
``uint8`` RGB; any decoding failure becomes a :class:`DatasetError` naming the file,
because a bare PIL traceback from inside a worker does not say which file is broken.
:func:`decode_images` and :func:`decode_masks` decode whole lists in a thread pool.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image

from prn.data.errors import DatasetError

_SIXTEEN_BIT_MODES = {"I", "I;16", "I;16B", "I;16L", "I;16N"}
_DECODE_ERRORS = (OSError, ValueError, SyntaxError, Image.DecompressionBombError)


def parse_image_size(value: int | Sequence[int], option: str = "dataset.image_size") -> tuple[int, int]:
    """Turn ``256`` or ``[h, w]`` into ``(h, w)``; anything else is a config error."""
    if isinstance(value, bool):
        raise DatasetError(f"{option}={value!r} is not a size; use an int like 256 or a pair [h, w].")
    if isinstance(value, (int, np.integer)):
        size = (int(value), int(value))
    elif isinstance(value, Sequence) and not isinstance(value, str) and len(value) == 2:
        if not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in value):
            raise DatasetError(f"{option}={list(value)!r} must hold two ints [h, w], e.g. [256, 256].")
        size = (int(value[0]), int(value[1]))
    else:
        raise DatasetError(f"{option}={value!r} is not a size; use an int like 256 or a pair [h, w].")
    if min(size) < 1:
        raise DatasetError(f"{option}={value!r} must be positive; use e.g. 256.")
    return size


def aspect_image_size(native_sizes: Sequence[tuple[int, int]], side: int, multiple: int = 128) -> tuple[int, int]:
    """``(h, w)`` in multiples of ``multiple`` near ``side * side`` pixels with the images' median aspect ratio.

    A long part squashed into a square loses its thin defects across the long axis (a 4:1 strip at
    256 x 256 keeps a quarter of its resolution along its length and all of it across); the same
    pixel budget at 128 x 512 keeps half of both. The size minimises twice the log error of the
    aspect plus that of the area (the shape matters more than the budget), over areas within half
    and twice the budget; ties go to the smaller size.
    """
    if not native_sizes:
        raise DatasetError("keep_aspect needs training images to read their aspect ratio from; none were found.")
    aspect = float(np.median([width / height for height, width in native_sizes]))
    budget = float(side) * side
    steps = range(1, max(2, int(4 * side / multiple)) + 1)
    candidates = [
        (height * multiple, width * multiple)
        for height in steps
        for width in steps
        if 0.5 <= height * width * multiple * multiple / budget <= 2.0
    ]
    if not candidates:
        raise DatasetError(f"image_size={side} is smaller than one {multiple}-pixel cell; use at least {multiple}.")

    def error(size: tuple[int, int]) -> float:
        height, width = size
        return 2 * abs(np.log(width / height / aspect)) + abs(np.log(height * width / budget))

    return min(candidates, key=lambda size: (round(error(size), 6), size[0] * size[1]))  # ties: the cheaper size


def image_size_of(path: Path) -> tuple[int, int]:
    """Native ``(h, w)`` of an image file, read from its header only (no decoding)."""
    try:
        with Image.open(path) as image:
            width, height = image.size
    except FileNotFoundError:
        raise DatasetError(f"image file {path} does not exist; restore it or fix dataset.root.") from None
    except _DECODE_ERRORS as error:
        raise _unreadable(path, error) from error
    return height, width


def require_same_size(image_path: Path, mask_path: Path) -> None:
    """Fail unless the mask has its image's native size (a swapped or resized file is a data bug)."""
    image_size, mask_size = image_size_of(image_path), image_size_of(mask_path)
    if image_size != mask_size:
        raise DatasetError(
            f"mask {mask_path} is {mask_size[0]}x{mask_size[1]} (h x w) but its image {image_path} is "
            f"{image_size[0]}x{image_size[1]}; masks must have their image's native size, fix or replace one of them."
        )


def mask_is_empty(path: Path) -> bool:
    """True when no pixel of the mask is non-zero (KolektorSDD2 labels normal images by empty masks)."""
    values = np.asarray(_open_decoded(path))
    return not values.any()


def load_image(path: Path, size: tuple[int, int]) -> np.ndarray:
    """Decode ``path`` as RGB ``uint8`` ``(h, w, 3)``, resized bilinearly with antialiasing."""
    return rgb_at_size(_open_decoded(path), size)


def rgb_at_size(image: Image.Image, size: tuple[int, int]) -> np.ndarray:
    """Any decoded PIL image as RGB ``uint8`` ``(h, w, 3)`` at ``size``: the one conversion and
    resize of training, testing and the deployed inferencer (:mod:`prn.deploy`), so their inputs agree."""
    image = _to_rgb(image)
    height, width = size
    if image.size != (width, height):
        image = image.resize((width, height), Image.Resampling.BILINEAR)
    return np.asarray(image, dtype=np.uint8).copy()


def load_mask(path: Path, size: tuple[int, int]) -> np.ndarray:
    """Decode a ground-truth mask as ``bool`` ``(h, w)``: any non-zero pixel is anomalous.

    Binarised before resizing (nearest neighbour) so that no interpolated grey values
    can shift the boundary.
    """
    image = _open_decoded(path)
    values = np.asarray(image)
    binary = values.any(axis=2) if values.ndim == 3 else values > 0
    height, width = size
    if binary.shape != (height, width):
        resized = Image.fromarray(binary.astype(np.uint8) * 255).resize((width, height), Image.Resampling.NEAREST)
        binary = np.asarray(resized) > 0
    return np.ascontiguousarray(binary, dtype=bool)


def decode_images(paths: Sequence[Path], size: tuple[int, int]) -> list[np.ndarray]:
    """Decode and resize in a thread pool (PIL releases the GIL while decoding)."""
    with ThreadPoolExecutor(max_workers=_decode_threads()) as executor:
        return list(executor.map(lambda path: load_image(path, size), paths))


def decode_masks(paths: Sequence[Path | None], size: tuple[int, int]) -> list[np.ndarray | None]:
    """Decode masks; ``None`` paths (good images) stay ``None`` to save memory."""
    with ThreadPoolExecutor(max_workers=_decode_threads()) as executor:
        return list(executor.map(lambda path: None if path is None else load_mask(path, size), paths))


def _decode_threads() -> int:
    return max(1, min(8, os.cpu_count() or 1))


def _open_decoded(path: Path) -> Image.Image:
    """Open and fully decode ``path`` (PIL is lazy: corrupt pixel data fails only in ``load``)."""
    try:
        with Image.open(path) as image:
            image.load()
            return image.copy()
    except FileNotFoundError:
        raise DatasetError(f"image file {path} does not exist; restore it or fix dataset.root.") from None
    except _DECODE_ERRORS as error:
        raise _unreadable(path, error) from error


def _to_rgb(image: Image.Image) -> Image.Image:
    """Convert any PIL mode to 8-bit RGB; 16-bit gray is rescaled, not clipped at 255."""
    if image.mode in _SIXTEEN_BIT_MODES:
        values = np.asarray(image, dtype=np.float64)
        scale = 255.0 / 65535.0 if values.max(initial=0) > 255 else 1.0
        image = Image.fromarray(np.clip(values * scale + 0.5, 0, 255).astype(np.uint8), mode="L")
    if image.mode in {"RGBA", "LA", "PA"} or (image.mode == "P" and "transparency" in image.info):
        image = image.convert("RGBA")
    return image.convert("RGB")


def _unreadable(path: Path, error: BaseException) -> DatasetError:
    return DatasetError(f"cannot decode image file {path} ({error}); replace or delete the corrupt file.")
