from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from prn.tools.preview_generation import main


def _write_category(root: Path, size: int = 48) -> None:
    rng = np.random.default_rng(0)
    category = root / "puck"
    disc = np.zeros((size, size), np.uint8)
    cv2.circle(disc, (size // 2, size // 2), size // 3, 1, -1)

    def picture() -> np.ndarray:
        image = np.full((size, size, 3), 230, np.uint8)
        image[disc > 0] = rng.integers(40, 90, (int(disc.sum()), 3))
        return image

    for folder in ("train/good", "test/dent", "ground_truth/dent"):
        (category / folder).mkdir(parents=True)
    for index in range(5):
        Image.fromarray(picture()).save(category / "train" / "good" / f"{index:03d}.png")
    for index in range(3):
        image, mask = picture(), np.zeros((size, size), np.uint8)
        mask[20:28, 20:30] = 255
        image[mask > 0] = (255, 0, 0)
        Image.fromarray(image).save(category / "test" / "dent" / f"{index:03d}.png")
        Image.fromarray(mask).save(category / "ground_truth" / "dent" / f"{index:03d}_mask.png")


@pytest.mark.parametrize("switches", [[], ["--no-ea", "--no-ta"]])
def test_preview_writes_a_grid(tmp_path, switches):
    _write_category(tmp_path / "data")
    out = main(["--root", str(tmp_path / "data"), "--category", "puck", "--no-hea", "--n", "4", "--size", "48",
                "--out", str(tmp_path / "grid.png"), "--cache-dir", str(tmp_path / "cache"), *switches])
    width, height = Image.open(out).size
    assert width == 2 * 3 * 48 + 8 and height == 2 * (48 + 18)


def test_preview_without_dtd_but_hea_on_names_the_option(tmp_path):
    _write_category(tmp_path / "data")
    with pytest.raises(ValueError, match="generation.dtd_dir"):
        main(["--root", str(tmp_path / "data"), "--category", "puck", "--n", "2", "--size", "48", "--out", str(tmp_path / "g.png")])


def test_preview_missing_category_is_reported(tmp_path):
    with pytest.raises(FileNotFoundError, match="train/good"):
        main(["--root", str(tmp_path), "--category", "nothing", "--out", str(tmp_path / "g.png")])
