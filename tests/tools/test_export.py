"""The exported program runs without prn and gives the module's maps and scores; its metadata says what it needs."""

import json

import lightning as L
import pytest
import torch

from prn.calibration import Calibration
from prn.cli import export_main
from prn.models import PRNet
from prn.tools.export import METADATA_FILE, check_export_options, default_output, export_outputs
from prn.training.module import PRNModule


def _checkpoint(path, size=128, calibration=None, **net):
    torch.manual_seed(0)
    module = PRNModule(
        PRNet(encoder_weights=None, msa_depth=1, **net),  # one MSA block a scale: the graph exports in half the time
        data_config={"name": "synthetic", "category": "discs", "image_size": size},
        top_k=10,
    )
    module.net.set_prototypes([torch.randn(3, c, size // s, size // s) for c, s in [(64, 4), (128, 8), (256, 16)]])
    if module.net.registration is not None:
        module.net.registration.fit(module.net.registration.signals(torch.rand(4, 3, size, size)))
    module.calibration = calibration
    trainer = L.Trainer(accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False)
    trainer.strategy.connect(module)
    path.parent.mkdir(parents=True, exist_ok=True)
    trainer.save_checkpoint(path)
    return module.eval()


def test_exported_program_matches_the_module_at_any_batch_size_and_carries_its_metadata(tmp_path, compose_cfg, capsys):
    calibration = Calibration(image_threshold=0.4, pixel_threshold=0.6, fpr=0.01, num_images=20, normal_median=0.2)
    ckpt = tmp_path / "run" / "checkpoints" / "last.ckpt"
    module = _checkpoint(ckpt, calibration=calibration)
    (tmp_path / "run" / "results.json").write_text(json.dumps({"metrics": {"image_auroc": 0.9}}))
    # a list of formats, as prn-export format=[onnx,openvino] takes it (tests/deploy exports all three at once)
    overrides = [f"ckpt_path={ckpt}", "format=[torch]", "max_batch=8", f"paths.output_dir={tmp_path}"]
    export_main.__wrapped__(compose_cfg("export", overrides))
    assert capsys.readouterr().out.startswith(
        f"wrote {tmp_path / 'prn.pt2'} (torch, fp32): input ['batch', 3, 128, 128]"
    )
    extra = {METADATA_FILE: ""}
    program = torch.export.load(tmp_path / "prn.pt2", extra_files=extra).module()
    metadata = json.loads(extra[METADATA_FILE])
    assert metadata["format"] == "torch" and metadata["input"]["max_batch"] == 8
    assert (
        metadata["input"]["shape"] == ["batch", 3, 128, 128]
        and metadata["top_k"] == 10
        and metadata["image_size"] == [128, 128]
    )
    assert Calibration.from_dict(metadata["calibration"]) == calibration
    training = metadata["training"]
    assert (training["dataset"], training["category"], training["steps"]) == ("synthetic", "discs", 0)
    assert training["prototypes"] == [[3, 64, 32, 32], [3, 128, 16, 16], [3, 256, 8, 8]]
    assert training["test_metrics"] == {"image_auroc": 0.9} and training["encoder_weights"].startswith("random")
    for batch in (1, 3):
        images = torch.rand(batch, 3, 128, 128)
        with torch.no_grad():
            maps, scores = program(images)
            expected_maps, expected_scores = module.predict_maps_and_scores(images)
        torch.testing.assert_close(maps, expected_maps, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(scores, expected_scores, rtol=1e-4, atol=1e-5)


def test_a_pose_registered_network_exports_to_torch_and_onnx_and_matches_the_module(tmp_path, compose_cfg, capsys):
    ort = pytest.importorskip("onnxruntime")
    ckpt = tmp_path / "run" / "checkpoints" / "last.ckpt"
    module = _checkpoint(ckpt, pose_search=60.0)
    overrides = [f"ckpt_path={ckpt}", "format=[torch,onnx]", "max_batch=4", f"paths.output_dir={tmp_path}"]
    export_main.__wrapped__(compose_cfg("export", overrides))
    program = torch.export.load(tmp_path / "prn.pt2").module()
    session = ort.InferenceSession(str(tmp_path / "prn.onnx"), providers=["CPUExecutionProvider"])
    images = torch.rand(2, 3, 128, 128)
    with torch.no_grad():
        expected_maps, expected_scores = module.predict_maps_and_scores(images)
        maps, scores = program(images)
    torch.testing.assert_close(maps, expected_maps, rtol=1e-4, atol=1e-5)
    onnx_maps, onnx_scores = session.run(None, {"images": images.numpy()})
    # the estimate's FFTs and the warps round differently in ONNX Runtime; the real model's maps differ by < 1e-3
    torch.testing.assert_close(torch.from_numpy(onnx_maps), expected_maps, rtol=0, atol=2e-3)
    torch.testing.assert_close(torch.from_numpy(onnx_scores), expected_scores, rtol=0, atol=2e-3)


@pytest.mark.parametrize(
    ("out", "fmt", "precision", "message"),
    [
        ("prn.onnx", "tflite", "fp32", r"format='tflite' is not one of \['torch', 'onnx', 'openvino'\]"),
        ("prn.onnx", "onnx", "fp16", "precision='fp16' is not available for format=onnx"),
        ("prn.onnx", "openvino", "fp32", r"must end in \.xml for format=openvino"),
    ],
)
def test_options_that_cannot_work_together_fail_before_anything_is_exported(tmp_path, out, fmt, precision, message):
    with pytest.raises(ValueError, match=message):
        check_export_options(tmp_path / out, fmt, precision)
    assert default_output(tmp_path, "openvino") == tmp_path / "prn.xml"


def test_prn_export_names_the_formats_and_precisions_before_reading_the_checkpoint(tmp_path, compose_cfg):
    """``prn-export format=tensorrt`` ended in ``KeyError: 'tensorrt'`` from the default output name."""
    cfg = compose_cfg(
        "export", [f"ckpt_path={tmp_path / 'nope.ckpt'}", "format=tensorrt", f"paths.output_dir={tmp_path}"]
    )
    listed = r"torch \(precision=fp32\); onnx \(precision=fp32\); openvino \(precision=fp32 or fp16\)"
    with pytest.raises(
        ValueError, match=rf"format='tensorrt' is not one of \['torch', 'onnx', 'openvino'\]: pass one of {listed}"
    ):
        export_main.__wrapped__(cfg)


def test_a_list_of_formats_goes_to_the_default_names_and_out_names_one_file_only(tmp_path):
    assert export_outputs(["onnx", "openvino"], None, tmp_path, "fp32") == {
        "onnx": tmp_path / "prn.onnx",
        "openvino": tmp_path / "prn.xml",
    }
    assert export_outputs("torch", tmp_path / "a.pt2", tmp_path, "fp32") == {"torch": tmp_path / "a.pt2"}
    with pytest.raises(ValueError, match=r"out=.*a.onnx names one file but format=\['onnx', 'openvino'\] asks for 2"):
        export_outputs(["onnx", "openvino"], tmp_path / "a.onnx", tmp_path, "fp32")
    with pytest.raises(ValueError, match=r"must name each format once"):
        export_outputs(["onnx", "onnx"], None, tmp_path, "fp32")
    with pytest.raises(ValueError, match="precision='fp16' is not available for format=onnx"):
        export_outputs(["openvino", "onnx"], None, tmp_path, "fp16")
