import shutil

import numpy as np
import pytest
from PIL import Image

from prn.data.errors import DatasetError
from prn.data.mvtec import scan_mvtec


def test_scan_counts_labels_and_masks(mvtec_root):
    split = scan_mvtec(mvtec_root, "widget")
    assert len(split.train_normal) == 12 and split.train_anomalous == []
    assert [r.defect_type for r in split.test] == ["crack"] * 4 + ["good"] * 3 + ["hole"] * 3
    for record in split.test:
        if record.defect_type == "good":
            assert record.label == 0 and record.mask_path is None
        else:
            assert record.label == 1
            assert (
                record.mask_path
                == mvtec_root / "widget" / "ground_truth" / record.defect_type / f"{record.image_path.stem}_mask.png"
            )


def test_jpg_and_bmp_images_are_found_and_other_files_ignored(mvtec_root):
    good = mvtec_root / "widget" / "train" / "good"
    Image.new("RGB", (64, 64)).save(good / "extra.jpg")
    Image.new("RGB", (64, 64)).save(good / "extra.bmp")
    (good / "notes.txt").write_text("not an image")
    (good / ".hidden.png").write_bytes(b"")
    names = [r.image_path.name for r in scan_mvtec(mvtec_root, "widget").train_normal]
    assert len(names) == 14 and "extra.jpg" in names and "extra.bmp" in names


def test_missing_root_names_option_and_download_helper(tmp_path):
    with pytest.raises(DatasetError, match=r"dataset\.root=.*nowhere.*python -m prn\.data\.download mvtec"):
        scan_mvtec(tmp_path / "nowhere", "widget")


def test_unknown_category_lists_the_categories_found(mvtec_root):
    with pytest.raises(DatasetError, match=r"dataset\.category='screw'.*\['widget'\]"):
        scan_mvtec(mvtec_root, "screw")


@pytest.mark.parametrize("missing", ["train/good", "test"])
def test_missing_layout_folders_are_named(mvtec_root, missing):
    shutil.rmtree(mvtec_root / "widget" / missing)
    with pytest.raises(DatasetError, match=missing):
        scan_mvtec(mvtec_root, "widget")


def test_anomalous_image_without_mask_names_image_and_expected_mask(mvtec_root):
    (mvtec_root / "widget" / "ground_truth" / "hole" / "001_mask.png").unlink()
    with pytest.raises(DatasetError) as caught:
        scan_mvtec(mvtec_root, "widget")
    assert "test/hole/001.png" in str(caught.value) and "ground_truth/hole/001_mask.png" in str(caught.value)


def test_mask_with_other_native_size_names_both_files_and_sizes(mvtec_root):
    mask_path = mvtec_root / "widget" / "ground_truth" / "crack" / "002_mask.png"
    Image.fromarray(np.zeros((32, 48), dtype=np.uint8)).save(mask_path)
    with pytest.raises(DatasetError) as caught:
        scan_mvtec(mvtec_root, "widget")
    message = str(caught.value)
    assert "002_mask.png" in message and "test/crack/002.png" in message and "32x48" in message and "64x64" in message
