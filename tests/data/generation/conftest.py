"""Fixtures for the generation tests (helpers live in generation_helpers.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from generation_helpers import make_pool
from PIL import Image

from prn.data.types import TrainingPool


@pytest.fixture
def generation_pool() -> TrainingPool:
    """Six normals and three seen anomalies (red bars) of a 64x64 disc category, foregrounds set."""
    return make_pool()


@pytest.fixture
def texture_dir(tmp_path: Path) -> Path:
    """A DTD-like ``images/<class>/*.jpg`` folder with four random textures."""
    rng = np.random.default_rng(1)
    for cls in ("striped", "dotted"):
        folder = tmp_path / "images" / cls
        folder.mkdir(parents=True)
        for index in range(2):
            pixels = rng.integers(0, 256, (40 + 10 * index, 48, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(folder / f"{cls}_{index:04d}.jpg")
    return tmp_path / "images"
