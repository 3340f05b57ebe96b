"""Generation on the real MVTec bottle with real DTD textures (skipped without ../shared)."""

from pathlib import Path

import numpy as np
import pytest

from prn.data.generation import ExtendedAnomalySource, ForegroundEstimator, SimulatedAnomalySource
from prn.data.mvtec import MVTecDataModule
from prn.data.types import TrainingPool

SHARED = Path(__file__).resolve().parents[3] / ".." / "shared"
BOTTLE = SHARED / "data" / "mvtec_anomaly_detection" / "bottle"
DTD = SHARED / "data" / "dtd" / "images"
SIZE = 128

pytestmark = pytest.mark.shared


@pytest.fixture(scope="module")
def bottle_pool() -> TrainingPool:
    if not (BOTTLE / "train" / "good").is_dir() or not DTD.is_dir():
        pytest.skip(f"real data not found under {SHARED}")
    datamodule = MVTecDataModule(
        BOTTLE.parent, "bottle", image_size=SIZE, num_seen_anomalies=5, foreground=ForegroundEstimator(method="colour")
    )
    datamodule.setup("fit")
    pool = datamodule.pool
    return TrainingPool(pool.normals[::10], pool.seen_images, pool.seen_masks, (SIZE, SIZE), "bottle")


def test_bottle_foreground_covers_the_bottle_not_the_backdrop(bottle_pool):
    for normal in bottle_pool.normals:
        foreground = normal.foreground
        assert 0.5 < foreground.mean() < 0.75  # the round bottle fills ~62 % of the frame
        assert foreground[SIZE // 2, SIZE // 2] and foreground[SIZE // 2, 8]
        assert not foreground[:3, :3].any() and not foreground[-3:, -3:].any()
        assert normal.image[~foreground].mean() > 200  # what is left out is the white backdrop


@pytest.mark.parametrize("kind", ["ea", "hea", "hoa"])
def test_real_anomalies_stay_on_the_bottle_and_change_only_the_mask(bottle_pool, kind):
    source = {
        "ea": lambda: ExtendedAnomalySource(bottle_pool),
        "hea": lambda: SimulatedAnomalySource(bottle_pool, str(DTD), use_homologous=False),
        "hoa": lambda: SimulatedAnomalySource(bottle_pool, None, use_heterologous=False),
    }[kind]()
    for seed in range(8):
        base = bottle_pool.normals[seed % len(bottle_pool.normals)]
        image, mask = source(base, np.random.default_rng(seed))
        assert image.shape == (SIZE, SIZE, 3) and mask.any()
        assert not (mask.astype(bool) & ~base.foreground).any()
        assert np.array_equal(image[mask == 0], base.image[mask == 0])
