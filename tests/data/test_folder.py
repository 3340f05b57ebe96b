import json
import logging

import numpy as np
import pytest
import torch
from dataset_layouts import write_folder
from PIL import Image

from prn.data.errors import DatasetError
from prn.data.folder import FolderDataModule, scan_folder
from prn.metrics import AnomalyMetrics


def test_scan_with_test_masks(tmp_path):
    split = scan_folder(write_folder(tmp_path), "widget")
    assert len(split.train_normal) == 8 and len(split.train_anomalous) == 3 and split.pixel_labels
    assert [(r.label, r.defect_type) for r in split.test] == [(0, "good")] * 3 + [(1, "anomalous")] * 3
    assert all(r.mask_path.parent.name == "anomalous_masks" for r in split.train_anomalous + split.test[3:])
    assert {r.image_path.suffix for r in split.train_normal} == {".jpg"}


def test_seen_from_train_anomalous_and_recorded(tmp_path):
    module = FolderDataModule(
        write_folder(tmp_path / "data"), "widget", num_seen_anomalies=2, image_size=64, output_dir=tmp_path / "run"
    )
    module.setup("fit")
    assert all(r.image_path.parent.parent.name == "train" for r in module.split.seen)
    written = json.loads((tmp_path / "run" / "split.json").read_text())
    assert written["counts"] == {
        "train_normal": 8,
        "val_normal": 0,
        "seen_anomalies": 2,
        "test": 6,
        "test_good": 3,
        "test_anomalous": 3,
    }
    assert written["seen_source"]["split"] == "train" and written["seen_source"]["not_drawn_go_to"] == "unused"
    assert written["pixel_labels"] is True


def test_without_test_masks_the_loader_yields_no_mask_and_pixel_metrics_are_skipped(tmp_path, caplog):
    root = write_folder(tmp_path / "data", test_masks=False)
    module = FolderDataModule(
        root, "widget", num_seen_anomalies=2, image_size=64, eval_batch_size=6, output_dir=tmp_path / "run"
    )
    with caplog.at_level(logging.WARNING, logger="prn.data.base"):
        module.setup("test")
    assert "no ground-truth masks" in caplog.text and "pixel AUROC, AUPRO and pixel AP are skipped" in caplog.text
    batch = next(iter(module.test_dataloader()))
    assert "mask" not in batch and batch["label"].tolist() == [0, 0, 0, 1, 1, 1]
    metrics = AnomalyMetrics()
    metrics.update(torch.rand(6, 1, 64, 64), batch.get("mask"), batch["label"].float(), batch["label"])
    assert set(metrics.compute()) == {"image_auroc"} and "pixel_auroc" in metrics.skipped
    assert json.loads((tmp_path / "run" / "split.json").read_text())["pixel_labels"] is False


def test_seen_from_test_draws_from_test_anomalies(tmp_path):
    module = FolderDataModule(
        write_folder(tmp_path, num_train_anomalous=0), "widget", seen_from="test", num_seen_anomalies=2, image_size=64
    )
    assert all(r.image_path.parent.parent.name == "test" for r in module.split.seen) and len(module.split.test) == 4


def test_stem_mask_suffix_and_other_extensions_are_accepted(tmp_path):
    root = write_folder(tmp_path)
    masks = root / "widget" / "test" / "anomalous_masks"
    (masks / "scratch_01.png").rename(masks / "scratch_01_mask.png")
    Image.open(masks / "scratch_02.png").save(masks / "scratch_02.bmp")
    (masks / "scratch_02.png").unlink()
    names = [r.mask_path.name for r in scan_folder(root, "widget").test[3:]]
    assert names == ["scratch_00.png", "scratch_01_mask.png", "scratch_02.bmp"]


def test_test_masks_are_all_or_nothing(tmp_path):
    root = write_folder(tmp_path)
    (root / "widget" / "test" / "anomalous_masks" / "scratch_01.png").unlink()
    with pytest.raises(DatasetError, match=r"scratch_01\.png has no mask.*all or nothing"):
        scan_folder(root, "widget")


def test_training_anomaly_needs_a_mask(tmp_path):
    root = write_folder(tmp_path)
    (root / "widget" / "train" / "anomalous_masks" / "scratch_00.png").unlink()
    with pytest.raises(DatasetError, match=r"train/anomalous/scratch_00\.png has no mask") as error:
        scan_folder(root, "widget")
    assert "all or nothing" not in str(error.value)


def test_mask_size_mismatch(tmp_path):
    root = write_folder(tmp_path)
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(root / "widget" / "train" / "anomalous_masks" / "scratch_02.png")
    with pytest.raises(DatasetError, match=r"scratch_02\.png is 8x8"):
        scan_folder(root, "widget")


def test_unknown_category_and_missing_root(tmp_path):
    write_folder(tmp_path, "gears")
    with pytest.raises(DatasetError, match=r"'widget' not found.*\['gears'\]"):
        scan_folder(tmp_path, "widget")
    with pytest.raises(DatasetError, match=r"does not exist.*docs/datasets\.md"):
        scan_folder(tmp_path / "missing", "gears")


def test_empty_training_folder(tmp_path):
    root = write_folder(tmp_path, num_train_good=0)
    with pytest.raises(DatasetError, match=r"missing folder .*train/good"):
        scan_folder(root, "widget")
    (root / "widget" / "train" / "good").mkdir()
    with pytest.raises(DatasetError, match=r"train/good holds no images"):
        scan_folder(root, "widget")


def test_too_few_training_anomalies(tmp_path):
    with pytest.raises(DatasetError, match=r"num_seen_anomalies=10 but only 3"):
        FolderDataModule(write_folder(tmp_path), "widget").setup("fit")


def test_sub_folders_of_anomalous_are_defect_types_with_mirrored_masks(tmp_path):
    root = write_folder(tmp_path)
    test_dir = root / "widget" / "test"
    for defect_type, stem in (("scratch", "scratch_00"), ("dent", "scratch_01")):
        for folder in ("anomalous", "anomalous_masks"):
            (test_dir / folder / defect_type).mkdir()
            (test_dir / folder / f"{stem}.png").rename(test_dir / folder / defect_type / f"{stem}.png")
    split = scan_folder(root, "widget")
    typed = {r.image_path.name: (r.defect_type, r.mask_path.parent.name) for r in split.test if r.label == 1}
    assert typed == {
        "scratch_02.png": ("anomalous", "anomalous_masks"),
        "scratch_00.png": ("scratch", "scratch"),
        "scratch_01.png": ("dent", "dent"),
    }


def test_a_typed_test_image_without_its_mirrored_mask_is_named(tmp_path):
    root = write_folder(tmp_path)
    test_dir = root / "widget" / "test"
    (test_dir / "anomalous" / "scratch").mkdir()
    (test_dir / "anomalous" / "scratch_00.png").rename(test_dir / "anomalous" / "scratch" / "scratch_00.png")
    with pytest.raises(
        DatasetError,
        match=r"scratch_00.png has no mask: expected .*anomalous_masks/scratch/scratch_00.png.*all or nothing",
    ):
        scan_folder(root, "widget")


def test_keep_aspect_trains_a_long_part_at_its_shape_and_records_it(tmp_path):
    root = write_folder(tmp_path / "data", size=(32, 128), num_train_anomalous=2)
    module = FolderDataModule(
        root, "widget", num_seen_anomalies=2, image_size=256, keep_aspect=True, output_dir=tmp_path / "run"
    )
    assert module.image_size == (128, 512)
    module.setup("test")
    batch = next(iter(module.test_dataloader()))
    assert tuple(batch["image"].shape[-2:]) == (128, 512) and tuple(batch["mask"].shape[-2:]) == (128, 512)
    assert json.loads((tmp_path / "run" / "split.json").read_text())["image_size"] == [128, 512]


def test_keep_aspect_leaves_an_explicit_pair_alone(tmp_path):
    root = write_folder(tmp_path / "data", size=(32, 128))
    assert FolderDataModule(root, "widget", image_size=[128, 128], keep_aspect=True).image_size == (128, 128)
