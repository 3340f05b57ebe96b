"""Writers of tiny datasets in the exact official layouts of BTAD, DAGM 2007, KolektorSDD2
and the documented folder layout: same file names, extensions and mask conventions, small
noise images with a bright rectangle (or ellipse) where the mask says "defect".

Shared by ``tests/data/test_{btad,dagm,kolektor,folder}.py`` and the end-to-end test.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw


def noise_image(rng: np.random.Generator, size: tuple[int, int], grey: bool = False) -> np.ndarray:
    """Dark noise, ``(h, w)`` grey or ``(h, w, 3)`` RGB ``uint8``."""
    shape = size if grey else (*size, 3)
    return rng.integers(0, 96, shape, dtype=np.uint8)


def rectangle_mask(size: tuple[int, int], value: int = 255) -> np.ndarray:
    """A ``uint8`` mask with ``value`` on the second quarter of each axis."""
    height, width = size
    mask = np.zeros(size, dtype=np.uint8)
    mask[height // 4 : height // 2, width // 4 : width // 2] = value
    return mask


def with_defect(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Paint the masked pixels white so a model could in principle see the defect."""
    painted = image.copy()
    painted[mask > 0] = 255
    return painted


def save(path: Path, pixels: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path)
    return path


def write_btad(
    root: Path,
    category: str = "01",
    num_train: int = 8,
    num_test_ok: int = 3,
    num_test_ko: int = 4,
    size: int = 64,
    image_suffix: str = ".bmp",
    mask_suffix: str = ".png",
    seed: int = 0,
) -> Path:
    """``<root>/<category>/{train/ok, test/ok, test/ko, ground_truth/ko}`` with 0/255 masks named by stem."""
    rng, base, shape = np.random.default_rng(seed), root / category, (size, size)
    for index in range(num_train):
        save(base / "train" / "ok" / f"{index:04d}{image_suffix}", noise_image(rng, shape))
    for index in range(num_test_ok):
        save(base / "test" / "ok" / f"{index:04d}{image_suffix}", noise_image(rng, shape))
    for index in range(num_test_ko):
        mask = rectangle_mask(shape)
        save(base / "test" / "ko" / f"{index:04d}{image_suffix}", with_defect(noise_image(rng, shape), mask))
        save(base / "ground_truth" / "ko" / f"{index:04d}{mask_suffix}", mask)
    return root


def dagm_labels_text(rows: list[tuple[int, int, str, str]], header: str = "1", separator: str = "\t") -> str:
    """``Labels.txt`` as distributed: a header line, then ``index flag filename 0 label_filename``."""
    lines = [header] + [separator.join([str(index), str(flag), name, "0", label]) for index, flag, name, label in rows]
    return "\n".join(lines) + "\n"


def write_dagm_split(
    split_dir: Path, first_index: int, num_normal: int, num_defect: int, size: int, rng: np.random.Generator
) -> None:
    """Grey ``NNNN.PNG`` images, ``Label/NNNN_label.PNG`` ellipses (0/255) and ``Label/Labels.txt``."""
    rows = []
    for offset in range(num_normal + num_defect):
        number = first_index + offset
        name, defective = f"{number:04d}.PNG", offset >= num_normal
        image = noise_image(rng, (size, size), grey=True)
        label_name = "0"
        if defective:
            mask = _ellipse_mask(size)
            label_name = f"{number:04d}_label.PNG"
            save(split_dir / "Label" / label_name, mask)
            image = with_defect(image, mask)
        save(split_dir / name, image)
        rows.append((offset + 1, int(defective), name, label_name))
    (split_dir / "Label").mkdir(parents=True, exist_ok=True)
    (split_dir / "Label" / "Labels.txt").write_text(dagm_labels_text(rows))


def _ellipse_mask(size: int) -> np.ndarray:
    mask = Image.new("L", (size, size), 0)
    ImageDraw.Draw(mask).ellipse((size // 4, size // 3, size // 2 + 4, size // 2 + 8), fill=255)
    return np.asarray(mask)


def write_dagm(
    root: Path,
    category: str = "Class1",
    train: tuple[int, int] = (8, 4),
    test: tuple[int, int] = (3, 3),
    size: int = 64,
    seed: int = 0,
) -> Path:
    """``<root>/ClassN/{Train,Test}``; ``train``/``test`` are ``(normal, defective)`` counts."""
    rng = np.random.default_rng(seed)
    write_dagm_split(root / category / "Train", 1, *train, size, rng)
    write_dagm_split(root / category / "Test", 1 + sum(train), *test, size, rng)
    return root


def write_ksdd2(
    root: Path,
    train: tuple[int, int] = (8, 4),
    test: tuple[int, int] = (3, 3),
    size: tuple[int, int] = (80, 32),
    seed: int = 0,
) -> Path:
    """``<root>/{train,test}/NNNNN.png`` + ``NNNNN_GT.png``: empty masks for good images; defect
    masks alternate between 0/255 and graded non-binary values (1..200) as in the release."""
    rng, number = np.random.default_rng(seed), 10000
    for split, (num_normal, num_defect) in (("train", train), ("test", test)):
        for offset in range(num_normal + num_defect):
            mask = np.zeros(size, dtype=np.uint8)
            if offset >= num_normal:
                mask = rectangle_mask(size) if offset % 2 == 0 else _graded(size)
            save(root / split / f"{number}.png", with_defect(noise_image(rng, size), mask))
            save(root / split / f"{number}_GT.png", mask)
            number += 1
    return root


def _graded(size: tuple[int, int]) -> np.ndarray:
    """A blob whose values fall from 200 to 1 towards its edge, and 0 outside."""
    height, width = size
    rows, cols = np.mgrid[0:height, 0:width]
    distance = np.hypot((rows - height / 2) / (height / 6), (cols - width / 2) / (width / 6))
    return np.where(distance < 1, np.clip(200 * (1 - distance), 1, 200), 0).astype(np.uint8)


def write_folder(
    root: Path,
    category: str = "widget",
    num_train_good: int = 8,
    num_train_anomalous: int = 3,
    num_test_good: int = 3,
    num_test_anomalous: int = 3,
    test_masks: bool = True,
    size: int | tuple[int, int] = 64,
    seed: int = 0,
) -> Path:
    """The documented folder layout; train images are ``.jpg``, the rest ``.png``; ``size`` int or ``(h, w)``."""
    rng, base = np.random.default_rng(seed), root / category
    shape = (size, size) if isinstance(size, int) else tuple(size)
    for index in range(num_train_good):
        save(base / "train" / "good" / f"good_{index:02d}.jpg", noise_image(rng, shape))
    for index in range(num_test_good):
        save(base / "test" / "good" / f"good_{index:02d}.png", noise_image(rng, shape))
    for split, count, with_masks in (("train", num_train_anomalous, True), ("test", num_test_anomalous, test_masks)):
        for index in range(count):
            mask = rectangle_mask(shape)
            save(base / split / "anomalous" / f"scratch_{index:02d}.png", with_defect(noise_image(rng, shape), mask))
            if with_masks:
                save(base / split / "anomalous_masks" / f"scratch_{index:02d}.png", mask)
    return root
