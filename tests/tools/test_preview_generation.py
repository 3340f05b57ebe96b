from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from PIL import Image

from prn.tools.preview_generation import preview

CONF = Path(__file__).resolve().parents[2] / "conf"


def _cfg(tmp_path, *overrides):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose("preview", overrides=[
            f"paths.output_dir={tmp_path}", f"paths.data_dir={tmp_path / 'data'}", "schedule=smoke",
            "category=discs", "dataset.datamodule.num_train=8", "dataset.datamodule.num_test_good=2",
            "dataset.datamodule.num_test_per_defect=2", "seen=3", "num_samples=4", *overrides,
        ])


def test_preview_renders_generated_samples_of_the_real_batch_plan(tmp_path):
    out = preview(_cfg(tmp_path))
    width, height = Image.open(out).size
    assert width == 2 * 3 * 128 + 8 and height == 2 * (128 + 18)


def test_preview_with_generation_off_shows_seen_anomalies(tmp_path):
    out = preview(_cfg(tmp_path, "generation=none", "num_samples=2"))
    assert Image.open(out).size[1] == 128 + 18


def test_preview_with_hea_but_no_dtd_names_the_option(tmp_path):
    with pytest.raises(Exception, match="generation.dtd_dir"):
        preview(_cfg(tmp_path, "generation.hea=true", f"generation.dtd_dir={tmp_path / 'missing'}"))
