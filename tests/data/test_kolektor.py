import json

import numpy as np
import pytest
from dataset_layouts import write_ksdd2
from PIL import Image

from prn.data.errors import DatasetError
from prn.data.image_io import load_mask
from prn.data.kolektor import KolektorSDD2DataModule, scan_ksdd2


def test_defective_means_a_non_empty_mask_binary_or_graded(tmp_path):
    split = scan_ksdd2(write_ksdd2(tmp_path), "ksdd2")
    assert len(split.train_normal) == 8 and len(split.train_anomalous) == 4 and len(split.test) == 6
    assert [r.label for r in split.test] == [0, 0, 0, 1, 1, 1]
    graded = [np.asarray(Image.open(r.mask_path)) for r in split.train_anomalous]
    assert any(set(np.unique(m)) == {0, 255} for m in graded) and any(len(np.unique(m)) > 2 for m in graded)
    assert all(r.mask_path is None and r.defect_type == "good" for r in split.train_normal)
    assert all(r.mask_path.name == f"{r.image_path.stem}_GT.png" for r in split.train_anomalous)


def test_graded_masks_are_binarised_above_zero(tmp_path):
    root = write_ksdd2(tmp_path)
    record = next(
        r for r in scan_ksdd2(root).train_anomalous if len(np.unique(np.asarray(Image.open(r.mask_path)))) > 2
    )
    raw = np.asarray(Image.open(record.mask_path))
    assert np.array_equal(load_mask(record.mask_path, raw.shape), raw > 0)


def test_seen_from_defective_training_images_test_whole(tmp_path):
    module = KolektorSDD2DataModule(
        write_ksdd2(tmp_path / "ksdd2"), num_seen_anomalies=3, image_size=64, output_dir=tmp_path / "run"
    )
    module.setup("fit")
    assert all(r.image_path.parent.name == "train" and r.label == 1 for r in module.split.seen)
    assert all(mask.any() for mask in module.pool.seen_masks) and len(module.pool.normals) == 8
    written = json.loads((tmp_path / "run" / "split.json").read_text())
    assert written["category"] == "ksdd2"
    assert written["counts"] == {
        "train_normal": 8,
        "val_normal": 0,
        "seen_anomalies": 3,
        "test": 6,
        "test_good": 3,
        "test_anomalous": 3,
    }
    assert written["seen_source"] == {
        "split": "train",
        "candidates": 4,
        "drawn": 3,
        "not_drawn": 1,
        "not_drawn_go_to": "unused",
    }


def test_non_square_images_are_resized_with_their_masks(tmp_path):
    module = KolektorSDD2DataModule(write_ksdd2(tmp_path), num_seen_anomalies=1, image_size=64)
    module.setup("test")
    item = module.test_dataloader().dataset[5]
    assert item["image"].shape == (3, 64, 64) and item["label"] == 1 and item["mask"].sum() > 0


def test_other_category_names_the_only_one(tmp_path):
    with pytest.raises(DatasetError, match=r"dataset\.category='bottle' not found.*one category, 'ksdd2'"):
        scan_ksdd2(write_ksdd2(tmp_path), "bottle")


def test_image_without_gt_mask_is_named(tmp_path):
    root = write_ksdd2(tmp_path)
    (root / "test" / "10013_GT.png").unlink()
    with pytest.raises(DatasetError, match=r"10013\.png has no ground-truth mask .*10013_GT\.png"):
        scan_ksdd2(root)


def test_mask_size_mismatch_is_rejected(tmp_path):
    root = write_ksdd2(tmp_path)
    Image.fromarray(np.zeros((10, 10), np.uint8)).save(root / "train" / "10000_GT.png")
    with pytest.raises(DatasetError, match=r"10000_GT\.png is 10x10 .*train/10000\.png is 80x32"):
        scan_ksdd2(root)


def test_unreadable_mask_is_named(tmp_path):
    root = write_ksdd2(tmp_path)
    (root / "train" / "10002_GT.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    with pytest.raises(DatasetError, match=r"cannot decode image file .*10002_GT\.png"):
        scan_ksdd2(root)


def test_missing_root_points_at_the_download_helper(tmp_path):
    with pytest.raises(DatasetError, match=r"prn\.data\.download ksdd2"):
        scan_ksdd2(tmp_path / "missing")


def test_too_few_training_defects(tmp_path):
    with pytest.raises(DatasetError, match=r"num_seen_anomalies=10 but only 4"):
        KolektorSDD2DataModule(write_ksdd2(tmp_path)).setup("fit")
