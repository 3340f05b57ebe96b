import hydra
import pytest
from PIL import Image

from prn.tools.preview_generation import device_samples, preview, selection_samples


@pytest.fixture
def _cfg(compose_cfg, tiny):
    def compose(tmp_path, *overrides):
        return compose_cfg(
            "preview",
            [
                *tiny,
                f"paths.output_dir={tmp_path}",
                f"paths.data_dir={tmp_path / 'data'}",
                "category=discs",
                "synthetic.num_train=8",
                "synthetic.num_test_good=2",
                "synthetic.num_test_per_defect=2",
                "seen=3",
                "num_samples=4",
                *overrides,
            ],
        )

    return compose


def test_preview_renders_generated_samples_of_the_real_batch_plan(tmp_path, _cfg):
    out = preview(_cfg(tmp_path, "val_normals=0"))
    width, height = Image.open(out).size
    assert width == 2 * 3 * 128 + 8 and height == 2 * (128 + 18)


def test_preview_with_held_out_normals_adds_the_score_choices_anomalies(tmp_path, _cfg):
    cfg = _cfg(tmp_path, "val_normals=2")
    out = preview(cfg)
    assert Image.open(out).size[1] == 4 * (128 + 18)  # four training samples, then four held-out ones
    datamodule = hydra.utils.instantiate(cfg.dataset.datamodule, _convert_="partial")
    samples = selection_samples(datamodule, 4)
    assert len(samples) == 4
    assert all(label.startswith("held_out:") and label.endswith(" (score choice)") for label, *_ in samples)
    assert len({label for label, *_ in samples}) > 1  # the kinds take turns
    assert all(mask.any() for _, _, mask, _ in samples)


def test_preview_with_generation_off_shows_seen_anomalies(tmp_path, _cfg):
    out = preview(_cfg(tmp_path, "generation=none", "num_samples=2", "val_normals=0"))
    assert Image.open(out).size[1] == 128 + 18


def test_preview_with_hea_but_no_dtd_names_the_option(tmp_path, _cfg):
    with pytest.raises(Exception, match="generation.dtd_dir"):
        preview(_cfg(tmp_path, "generation.hea=true", f"generation.dtd_dir={tmp_path / 'missing'}"))


def test_preview_shows_the_device_paths_samples(tmp_path, _cfg):
    cfg = _cfg(tmp_path, "generation.on_device=true", "val_normals=0")
    out = preview(cfg)
    assert Image.open(out).size[1] == 2 * (128 + 18)
    datamodule = hydra.utils.instantiate(cfg.dataset.datamodule, _convert_="partial")
    datamodule.setup("fit")
    samples = device_samples(datamodule, 4)
    assert {label for label, *_ in samples} == {"ea (device)", "sa (device)"}
    assert all(mask.any() for _, _, mask, _ in samples)
