"""``prn-predict backend=onnx|openvino`` writes what ``backend=torch`` writes, from an export or a checkpoint.

(The tiny checkpoint and its exports come from the session fixture in tests/conftest.py.)
"""

import csv

import numpy as np
import pytest
from PIL import Image
from tiny_model import PARITY_TOLERANCE, random_images

from prn.prediction.job import predict


def _folder(tmp_path):
    folder = tmp_path / "line"
    (folder / "b").mkdir(parents=True)
    for index, pixels in enumerate(random_images(3, size=(100, 150), seed=5)):
        Image.fromarray(pixels).save(folder / ("b" if index else "") / f"{index}.png")
    (folder / "broken.png").write_bytes(b"\x89PNG not really")
    return folder


def _predict(compose_cfg, model, folder, out, *overrides):
    return predict(
        compose_cfg(
            "predict",
            [
                f"ckpt_path={model}",
                f"input={folder}",
                f"paths.output_dir={out}",
                "on_error=skip",
                "trainer.accelerator=cpu",
                *overrides,
            ],
        )
    )


def _rows(out):
    return list(csv.DictReader((out / "scores.csv").open()))


@pytest.mark.parametrize(("backend", "model"), [("onnx", "export"), ("openvino", "checkpoint")])
def test_exported_backends_write_the_torch_backends_rows_maps_and_decisions(
    tiny_exports, tmp_path, compose_cfg, backend, model
):
    folder = _folder(tmp_path)
    reference = _predict(compose_cfg, tiny_exports.checkpoint, folder, tmp_path / "torch")
    source = tiny_exports.models[backend] if model == "export" else tiny_exports.checkpoint
    outcome = _predict(compose_cfg, source, folder, tmp_path / backend, f"backend={backend}")
    assert (outcome["images"], outcome["skipped"], outcome["backend"]) == (3, 1, backend)
    assert outcome["image_threshold"] == reference["image_threshold"] == tiny_exports.module.calibration.image_threshold
    if model == "checkpoint":
        assert outcome["model"] == str(tmp_path / backend / "prn.xml")  # exported into the run directory first
    expected, got = _rows(tmp_path / "torch"), _rows(tmp_path / backend)
    assert [row["path"] for row in got] == [row["path"] for row in expected]
    assert [row["decision"] for row in got] == [row["decision"] for row in expected]
    np.testing.assert_allclose(
        [float(r["score"]) for r in got], [float(r["score"]) for r in expected], atol=PARITY_TOLERANCE
    )
    for mine, theirs in zip(got, expected):
        saved_maps = [np.asarray(Image.open(row["map"]), dtype=np.float64) / 65535.0 for row in (mine, theirs)]
        np.testing.assert_allclose(saved_maps[0], saved_maps[1], atol=PARITY_TOLERANCE + 1 / 65535)
    assert (tmp_path / backend / "skipped.csv").read_text() == (tmp_path / "torch" / "skipped.csv").read_text()


def test_a_backend_that_does_not_match_the_model_file_or_does_not_exist_is_named(tiny_exports, tmp_path, compose_cfg):
    folder = _folder(tmp_path)
    with pytest.raises(ValueError, match=r"is an export for backend=openvino, not backend=onnx"):
        _predict(compose_cfg, tiny_exports.models["openvino"], folder, tmp_path / "a", "backend=onnx")
    with pytest.raises(ValueError, match=r"backend='tensorrt' is not one of"):
        _predict(compose_cfg, tiny_exports.checkpoint, folder, tmp_path / "b", "backend=tensorrt")
