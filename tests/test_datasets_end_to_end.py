"""Train + test end to end on a tiny copy of each dataset layout (BTAD, DAGM, KolektorSDD2, folder)."""

import json
import sys
from pathlib import Path

import pytest
import torch

from prn.pipeline import train

TESTS = Path(__file__).resolve().parent
sys.path.insert(0, str(TESTS / "data"))  # the layout writers live beside the per-dataset tests
from dataset_layouts import write_btad, write_dagm, write_folder, write_ksdd2  # noqa: E402

ALL_METRICS = {"image_auroc", "pixel_auroc", "pixel_aupro", "pixel_ap"}

CASES = {
    "btad": ("01", lambda root: write_btad(root, num_train=6, num_test_ok=2, num_test_ko=4)),
    "dagm": ("Class1", lambda root: write_dagm(root, train=(6, 3), test=(2, 2))),
    "ksdd2": ("ksdd2", lambda root: write_ksdd2(root, train=(6, 3), test=(2, 2))),
    "folder": (
        "widget",
        lambda root: write_folder(
            root, num_train_good=6, num_test_good=2, num_test_anomalous=2, test_masks=False, size=(64, 128)
        ),
    ),
}


@pytest.fixture
def _train(compose_cfg, tiny):
    def run(dataset: str, tmp_path: Path) -> tuple[dict, dict]:
        category, writer = CASES[dataset]
        root = writer(tmp_path / "data")
        train(
            compose_cfg(
                "train",
                [
                    *tiny,
                    f"dataset={dataset}",
                    f"root={root}",
                    f"category={category}",
                    "max_steps=1",
                    "batch_size=2",
                    "seen=2",
                    f"paths.output_dir={tmp_path / 'run'}",
                    f"paths.data_dir={tmp_path / 'unused'}",
                ],
            )
        )
        return _results(tmp_path)

    return run


def _results(tmp_path: Path) -> tuple[dict, dict]:
    run_dir = tmp_path / "run"
    return json.loads((run_dir / "results.json").read_text()), json.loads((run_dir / "split.json").read_text())


@pytest.mark.parametrize("dataset", ["btad", "dagm", "ksdd2"])
def test_train_and_test_with_pixel_metrics(dataset, tmp_path, _train):
    results, split = _train(dataset, tmp_path)
    assert results["dataset"] == dataset and set(results["metrics"]) == ALL_METRICS
    assert all(0.0 <= value <= 1.0 for value in results["metrics"].values())
    seen_from = "test" if dataset == "btad" else "train"
    assert results["split"]["seen_source"]["split"] == seen_from and results["split"]["counts"]["seen_anomalies"] == 2
    # BTAD loses its 2 seen anomalies from the test set; DAGM and KolektorSDD2 keep the test split whole.
    assert split["counts"]["test"] == 4 and split["counts"]["test_anomalous"] == 2
    assert results["steps"] == 1


def test_folder_without_test_masks_reports_image_metrics_only(tmp_path, _train):
    results, split = _train("folder", tmp_path)
    assert set(results["metrics"]) == {"image_auroc"} and 0.0 <= results["metrics"]["image_auroc"] <= 1.0
    skipped = {note.split(" skipped: ")[0] for note in results["notes"] if " skipped: " in note}
    assert {"pixel_auroc", "pixel_aupro", "pixel_ap"} <= skipped
    assert split["pixel_labels"] is False and split["seen_source"]["split"] == "train"
    assert split["image_size"] == [128, 256]  # keep_aspect (the folder default): 2:1 images train at 2:1
    saved = torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert saved["hyper_parameters"]["data_config"]["image_size"] == [128, 256]
    assert saved["hyper_parameters"]["data_config"]["keep_aspect"] is False  # evaluation resizes to what training saw
