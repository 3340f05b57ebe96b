"""MVTec-layout fixtures written into ``tmp_path``: tiny noise images with rectangle masks."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

DEFAULT_DEFECTS = {"crack": 4, "hole": 3}


def write_mvtec_category(
    root: Path,
    category: str = "widget",
    num_train: int = 12,
    num_test_good: int = 3,
    defects: Mapping[str, int] = DEFAULT_DEFECTS,
    size: int = 64,
    seed: int = 0,
) -> Path:
    """Write one category and return ``root``; defect masks are a known rectangle."""
    rng = np.random.default_rng(seed)
    base = root / category

    def save(path: Path, pixels: np.ndarray) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(pixels).save(path)

    for index in range(num_train):
        save(base / "train" / "good" / f"{index:03d}.png", rng.integers(0, 256, (size, size, 3), dtype=np.uint8))
    for index in range(num_test_good):
        save(base / "test" / "good" / f"{index:03d}.png", rng.integers(0, 256, (size, size, 3), dtype=np.uint8))
    for defect_type, count in defects.items():
        for index in range(count):
            save(
                base / "test" / defect_type / f"{index:03d}.png", rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
            )
            mask = np.zeros((size, size), dtype=np.uint8)
            mask[size // 4 : size // 2, size // 4 : size // 2] = 255
            save(base / "ground_truth" / defect_type / f"{index:03d}_mask.png", mask)
    return root


@pytest.fixture
def make_mvtec(tmp_path: Path) -> Callable[..., Path]:
    """Factory: ``make_mvtec(category=..., num_train=...)`` writes under a fresh folder of ``tmp_path``."""
    counter = iter(range(1_000))

    def make(**options) -> Path:
        return write_mvtec_category(tmp_path / f"data{next(counter)}", **options)

    return make


@pytest.fixture
def mvtec_root(make_mvtec: Callable[..., Path]) -> Path:
    """Category ``widget``: 12 train, 3 good + 4 crack + 3 hole test images, 64x64."""
    return make_mvtec()
