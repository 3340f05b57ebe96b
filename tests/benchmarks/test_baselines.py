"""benchmarks/baselines.py: anomalib's PatchCore on prn's split, end to end on a tiny MVTec-layout dataset.

anomalib comes with the ``test`` extra (``prn[baselines]``), so this runs in ``make test``.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import hydra
import pytest
import torch
from torchvision.models import resnet18

from prn.models.encoder import ResNet18Encoder

TESTS = Path(__file__).resolve().parents[1]
REPO = TESTS.parent
METRICS = ("image_auroc", "pixel_auroc", "pixel_aupro", "pixel_ap")


def _load(name: str, path: Path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


baselines = _load("baselines_script", REPO / "benchmarks" / "baselines.py")
write_mvtec_category = _load("mvtec_layout", TESTS / "data" / "conftest.py").write_mvtec_category


@pytest.fixture(scope="module")
def widget(tmp_path_factory) -> dict[str, Path]:
    """12 normal training images, test 3 good + 4 crack + 3 hole (64 px), and a random resnet18 state dict."""
    folder = tmp_path_factory.mktemp("baselines")
    root = write_mvtec_category(folder / "data", category="widget")
    torch.manual_seed(0)
    weights = folder / "resnet18_random.pth"
    torch.save(resnet18(weights=None).state_dict(), weights)
    return {"root": root, "weights": weights, "folder": folder}


DATA = ["--category", "widget", "--image-size", "128", "--seen", "2", "--seed", "3"]


@pytest.fixture(scope="module")
def run(widget):
    """One CLI run (JSON, maps, table) with an extra Hydra override passed through after ``--``."""
    out = widget["folder"] / "out" / "patchcore.json"
    argv = [
        "--root",
        str(widget["root"]),
        "--weights",
        str(widget["weights"]),
        *DATA,
        "--out",
        str(out),
        "--maps",
        "3",
        "--",
        "dataset.datamodule.eval_batch_size=3",
    ]
    return {"result": baselines.main(argv), "out": out}


def test_metrics_in_unit_interval_and_split_is_prns(run, widget, compose_cfg):
    result = run["result"]
    assert set(METRICS) <= set(result["metrics"])
    assert all(0.0 <= result["metrics"][key] <= 1.0 for key in METRICS)

    cfg = compose_cfg(
        "train",
        [
            "dataset=mvtec",
            "category=widget",
            f"root={widget['root']}",
            "seed=3",
            "seen=2",
            "image_size=128",
            "generation=none",
        ],
    )
    datamodule = hydra.utils.instantiate(cfg.dataset.datamodule, _convert_="partial")
    expected = datamodule.split_summary()
    assert (
        result["split"]["counts"]
        == expected["counts"]
        == {"train_normal": 12, "val_normal": 0, "seen_anomalies": 2, "test": 8, "test_good": 3, "test_anomalous": 5}
    )
    assert result["split_files"]["test"] == expected["test"]
    assert result["split_files"]["seen_anomalies"] == expected["seen_anomalies"]
    assert result["test_images"] == 8 and result["train_images"] == 12

    saved = json.loads(run["out"].read_text())
    assert saved["split"]["counts"] == expected["counts"]
    assert saved["command"].startswith("python ") and "--category widget" in saved["command"]
    assert saved["metrics"] == pytest.approx(result["metrics"])


def test_patchcore_setup_weights_override_timings_and_maps(run):
    result = run["result"]
    assert result["encoder_weights"]["loaded_keys"] == 90
    assert set(result["encoder_weights"]["loaded_prefixes"]) == {"conv1", "bn1", "layer1", "layer2", "layer3"}
    assert set(result["encoder_weights"]["unused_prefixes"]) == {"layer4", "fc"}
    assert result["patches"] == 12 * 16 * 16  # layer2 of a 128 px image: 16 x 16 patches
    assert result["memory_bank"] == [int(0.01 * result["patches"]), 128 + 256]
    assert result["patchcore"]["image_size"] == [128, 128]
    assert result["config"]["dataset"]["eval_batch_size"] == 3  # the override after -- reached prn's datamodule
    assert result["fit_seconds"] > 0 and result["ms_per_image"] > 0
    assert len(result["maps"]) == 3 and all(Path(path).is_file() for path in result["maps"])
    assert any("_good_" in Path(path).name for path in result["maps"])
    assert (
        set(result["per_defect"]) == {"crack", "hole"} and "image_auroc" in result["per_defect"]["crack"]["metrics"]
    ), "per defect type, like prn's results.json"


def test_table_prints_split_and_prn_row(run, widget, capsys):
    result = dict(run["result"])
    counts = result["split"]["counts"]
    prn = {
        "category": "widget",
        "metrics": {"image_auroc": 0.9, "pixel_auroc": 0.95, "pixel_aupro": 0.8, "pixel_ap": 0.5},
        "inference_seconds_per_image": 0.012,
        "seconds_per_step": 0.5,
        "steps": 10,
        "train_seconds": 5.0,
        "split": {"counts": dict(counts)},
        "config": {},
    }
    same = widget["folder"] / "prn_same.json"
    same.write_text(json.dumps(prn))
    result["prn"] = baselines.prn_row(same, result)
    assert result["prn"]["split_matches"] and result["prn"]["ms_per_image"] == 12.0
    baselines.print_table(result)
    printed = capsys.readouterr().out
    assert "PatchCore" in printed and "PRN" in printed and "90.00" in printed
    assert "never sees the 2 seen anomalies" in printed and "8 test images" in printed

    other = widget["folder"] / "prn_other.json"
    other.write_text(json.dumps({**prn, "split": {"counts": {**counts, "test": counts["test"] + 2}}}))
    result["prn"] = baselines.prn_row(other, result)
    assert not result["prn"]["split_matches"] and result["prn"]["split_mismatch"] == ["test"]
    baselines.print_table(result)
    printed = capsys.readouterr().out
    assert "PRN*" in printed and "PRN* split differs (test)" in printed

    resized = {**result["split"], "image_size": [256, 256], "counts": dict(counts)}
    other.write_text(json.dumps({**prn, "split": resized}))
    assert baselines.prn_row(other, result)["split_mismatch"] == ["image_size"]


def test_trunk_computes_prns_encoder_features(widget):
    """Same file, same numbers: PatchCore's layer2/layer3 equal prn's frozen encoder's."""
    model, report = baselines.build_patchcore(widget["weights"])
    encoder = ResNet18Encoder(weights=str(widget["weights"])).eval()
    images = torch.rand(2, 3, 128, 128)
    features = model.feature_extractor(baselines._normalise(images))
    _, layer2, layer3 = encoder.frozen_features(images)
    torch.testing.assert_close(features["layer2"], layer2, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(features["layer3"], layer3, rtol=1e-4, atol=1e-4)
    assert report["strict"] and report["loaded_keys"] == 90
