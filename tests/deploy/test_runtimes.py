"""Every exported format gives the checkpoint's maps and scores, at any batch size; errors name the fix."""

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from tiny_model import FORMATS, PARITY_TOLERANCE, TINY_SIZE

from prn.deploy import Inferencer
from prn.deploy.runtimes import model_format, open_runtime


@pytest.mark.parametrize("fmt", FORMATS)
def test_export_matches_the_checkpoint_at_any_batch_size(tiny_exports, fmt):
    inferencer = Inferencer(tiny_exports.models[fmt])
    assert inferencer.format == fmt and inferencer.image_size == TINY_SIZE
    assert json.loads(inferencer.runtime.metadata_json)["format"] == fmt  # exported together, each its own metadata
    generator = torch.Generator().manual_seed(1)
    for batch in (1, 5):
        images = torch.rand(batch, 3, *TINY_SIZE, generator=generator)
        with torch.no_grad():
            expected_maps, expected_scores = (t.numpy() for t in tiny_exports.module.predict_maps_and_scores(images))
        maps, scores = inferencer.run(images.numpy())
        assert maps.shape == (batch, 1, *TINY_SIZE) and scores.shape == (batch,)
        assert expected_maps.std() > 0.1  # maps spread over (0, 1): the comparison below can fail
        np.testing.assert_allclose(maps, expected_maps, rtol=0, atol=PARITY_TOLERANCE)
        np.testing.assert_allclose(scores, expected_scores, rtol=0, atol=PARITY_TOLERANCE)


def test_run_rejects_images_of_another_size_and_points_to_predict(tiny_exports):
    inferencer = Inferencer(tiny_exports.models["onnx"])
    with pytest.raises(ValueError, match=r"takes images \[batch, 3, 128, 256\].*use predict\(\)"):
        inferencer.run(np.zeros((1, 3, 256, 128), np.float32))


def test_unknown_suffix_missing_file_and_missing_runtime_say_what_to_do(tiny_exports, monkeypatch, tmp_path):
    with pytest.raises(ValueError, match=r"unknown model format '\.bin'.*\*\.onnx"):
        model_format(Path("model.bin"))
    with pytest.raises(FileNotFoundError, match="prn-export"):
        open_runtime(tmp_path / "absent.onnx")
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # as on a PC without it: the import fails
    with pytest.raises(ModuleNotFoundError, match=r"pip install 'prn-deploy\[onnx\]'"):
        Inferencer(tiny_exports.models["onnx"])


def test_a_checkpoint_runs_through_the_inferencer_like_its_export(tiny_exports):
    """prn-serve and prn-infer take a .ckpt too: the checkpoint's model, with the metadata an export would carry."""
    from_checkpoint, exported = Inferencer(tiny_exports.checkpoint), Inferencer(tiny_exports.models["onnx"])
    assert from_checkpoint.format == "checkpoint" and from_checkpoint.image_size == exported.image_size
    assert from_checkpoint.calibration == exported.calibration is not None
    images = torch.rand(3, 3, *TINY_SIZE, generator=torch.Generator().manual_seed(3)).numpy()
    (maps, scores), (export_maps, export_scores) = from_checkpoint.run(images), exported.run(images)
    np.testing.assert_allclose(maps, export_maps, rtol=0, atol=PARITY_TOLERANCE)
    np.testing.assert_allclose(scores, export_scores, rtol=0, atol=PARITY_TOLERANCE)
