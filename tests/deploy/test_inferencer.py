"""The inferencer on files and arrays of any size: the checkpoint's scores, native-size maps, calibrated decisions."""

import csv
import logging
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image
from tiny_model import PARITY_TOLERANCE, TINY_SIZE, as_model_input, random_images, save_checkpoint, tiny_module

from prn.data.image_io import load_image
from prn.deploy import Inferencer
from prn.deploy.__main__ import main as cli_main
from prn.tools.export import export_checkpoint


def _checkpoint_outputs(module, images):
    with torch.no_grad():
        maps, scores = module.predict_maps_and_scores(as_model_input(np.stack(images)))
    return maps.numpy()[:, 0], scores.numpy()


def test_files_of_other_sizes_score_as_the_checkpoint_scores_them_after_trainings_resize(tiny_exports, tmp_path):
    pixels = random_images(3, size=(200, 300), seed=2)
    files = [tmp_path / "wide.png", tmp_path / "gray.png", tmp_path / "native.png"]
    Image.fromarray(pixels[0]).save(files[0])
    Image.fromarray(pixels[1]).convert("L").save(files[1])
    Image.fromarray(random_images(1, seed=3)[0]).save(files[2])  # already at the training size
    expected_maps, expected_scores = _checkpoint_outputs(tiny_exports.module, [load_image(f, TINY_SIZE) for f in files])
    predictions = Inferencer(tiny_exports.models["openvino"]).predict(files)
    assert [p.source for p in predictions] == [str(f) for f in files]
    assert [p.anomaly_map.shape for p in predictions] == [(200, 300), (200, 300), TINY_SIZE]
    np.testing.assert_allclose([p.score for p in predictions], expected_scores, rtol=0, atol=PARITY_TOLERANCE)
    np.testing.assert_allclose(predictions[2].anomaly_map, expected_maps[2], rtol=0, atol=PARITY_TOLERANCE)


def test_decisions_and_masks_follow_the_thresholds_calibrated_before_export(tiny_exports):
    calibration = tiny_exports.module.calibration
    inferencer = Inferencer(tiny_exports.models["onnx"], batch_size=4)
    assert inferencer.calibration == calibration
    predictions = inferencer.predict(random_images(6))  # the images the thresholds sit in the middle of
    assert [p.is_anomalous for p in predictions] == [p.score >= calibration.image_threshold for p in predictions]
    assert sum(p.is_anomalous for p in predictions) == 3
    masks_with_defects = 0
    for p in predictions:
        np.testing.assert_array_equal(p.defect_mask, p.anomaly_map >= calibration.pixel_threshold)
        assert p.normalized_score == pytest.approx(float(calibration.normalize(p.score)))
        masks_with_defects += bool(p.defect_mask.any())
    assert 0 < masks_with_defects < 6


def test_without_calibration_there_is_no_decision_and_the_inferencer_says_why(tmp_path, caplog):
    checkpoint = save_checkpoint(tiny_module(), tmp_path / "last.ckpt")
    export_checkpoint(checkpoint, tmp_path / "prn.pt2", format="torch", max_batch=4)
    with caplog.at_level(logging.WARNING, logger="prn.deploy.inferencer"):
        inferencer = Inferencer(tmp_path / "prn.pt2")
    assert "carries no calibration" in caplog.text and "val_normals" in caplog.text
    prediction = inferencer.predict(random_images(1)[0])[0]
    assert prediction.is_anomalous is None and prediction.defect_mask is None and prediction.normalized_score is None
    assert prediction.anomaly_map.shape == TINY_SIZE and 0.0 < prediction.score < 1.0


def test_command_line_scores_a_folder_and_writes_the_csv(tiny_exports, tmp_path, capsys):
    folder = tmp_path / "parts"
    (folder / "line2").mkdir(parents=True)
    for index, pixels in enumerate(random_images(3, size=(100, 120), seed=4)):
        Image.fromarray(pixels).save(folder / ("line2" if index == 2 else "") / f"{index}.png")
    assert (
        cli_main(
            [str(tiny_exports.models["onnx"]), str(folder), "--csv", str(tmp_path / "scores.csv"), "--batch-size", "2"]
        )
        == 0
    )
    rows = list(csv.DictReader((tmp_path / "scores.csv").open()))
    assert [row["path"] for row in rows] == [
        str(folder / "0.png"),
        str(folder / "1.png"),
        str(folder / "line2" / "2.png"),
    ]
    assert all(row["decision"] in ("OK", "NG") and 0.0 < float(row["score"]) < 1.0 for row in rows)
    assert "scored 3 images" in capsys.readouterr().out


def test_scoring_an_onnx_or_openvino_model_never_imports_torch_lightning_or_hydra(tiny_exports):
    models = [str(tiny_exports.models["onnx"]), str(tiny_exports.models["openvino"])]
    code = (
        "import sys, numpy as np\n"
        "from prn.deploy import Inferencer\n"
        f"for model in {models!r}:\n"
        "    Inferencer(model).predict(np.zeros((50, 60, 3), np.uint8))\n"
        "loaded = [name for name in ('torch', 'lightning', 'hydra', 'omegaconf') if name in sys.modules]\n"
        "assert not loaded, f'prn.deploy imported {loaded}'\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
