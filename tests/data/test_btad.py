import json

import numpy as np
import pytest
from dataset_layouts import write_btad
from PIL import Image

from prn.data.btad import BTADDataModule, normalise_category, scan_btad
from prn.data.errors import DatasetError


@pytest.mark.parametrize(("image_suffix", "mask_suffix"), [(".bmp", ".png"), (".png", ".png"), (".bmp", ".bmp")])
def test_scan_lists_ok_and_ko_with_masks_matched_by_stem(tmp_path, image_suffix, mask_suffix):
    root = write_btad(tmp_path, image_suffix=image_suffix, mask_suffix=mask_suffix)
    split = scan_btad(root, "01")
    assert len(split.train_normal) == 8 and split.train_anomalous == [] and split.pixel_labels
    assert [(r.label, r.defect_type) for r in split.test] == [(0, "ok")] * 3 + [(1, "ko")] * 4
    for record in split.test[3:]:
        assert record.mask_path.parent.name == "ko" and record.mask_path.stem == record.image_path.stem
        assert record.mask_path.suffix == mask_suffix and record.image_path.suffix == image_suffix


def test_seen_anomalies_come_from_test_ko_and_leave_the_test_set(tmp_path):
    root = write_btad(tmp_path / "btad")
    module = BTADDataModule(root, "01", num_seen_anomalies=2, image_size=64, output_dir=tmp_path / "run")
    module.setup("fit")
    seen = {r.image_path for r in module.split.seen}
    assert len(seen) == 2 and all(p.parent.name == "ko" for p in seen)
    assert not seen & {r.image_path for r in module.split.test}
    assert module.pool.seen_masks[0][16:32, 16:32].all() and not module.pool.seen_masks[0][:16].any()
    written = json.loads((tmp_path / "run" / "split.json").read_text())
    assert written["counts"] == {
        "train_normal": 8,
        "val_normal": 0,
        "seen_anomalies": 2,
        "test": 5,
        "test_good": 3,
        "test_anomalous": 2,
    }
    assert written["seen_source"] == {
        "split": "test",
        "candidates": 4,
        "drawn": 2,
        "not_drawn": 2,
        "not_drawn_go_to": "test",
    }


def test_bmp_images_decode_as_rgb(tmp_path):
    module = BTADDataModule(write_btad(tmp_path), "01", num_seen_anomalies=1, image_size=32)
    module.setup("test")
    item = module.test_dataloader().dataset[0]
    assert item["image"].shape == (3, 32, 32) and item["mask"].shape == (1, 32, 32)


@pytest.mark.parametrize("given", [1, "1", "01"])
def test_category_written_as_a_number_means_the_zero_padded_folder(given):
    assert normalise_category(given) == "01"
    assert normalise_category("Class1") == "Class1"


def test_missing_root_says_how_to_download(tmp_path):
    with pytest.raises(DatasetError, match=r"does not exist.*python -m prn\.data\.download btad"):
        scan_btad(tmp_path / "nowhere", "01")


def test_unknown_category_lists_those_found(tmp_path):
    write_btad(tmp_path, "01")
    write_btad(tmp_path, "03")
    with pytest.raises(DatasetError, match=r"dataset\.category='02' not found.*\['01', '03'\]"):
        scan_btad(tmp_path, "02")


def test_ko_image_without_mask_is_named(tmp_path):
    root = write_btad(tmp_path)
    (root / "01" / "ground_truth" / "ko" / "0002.png").unlink()
    with pytest.raises(DatasetError, match=r"0002\.bmp has no mask.*ground_truth/ko/0002\.png"):
        scan_btad(root, "01")


def test_mask_of_another_size_is_rejected(tmp_path):
    root = write_btad(tmp_path)
    Image.fromarray(np.zeros((32, 32), np.uint8)).save(root / "01" / "ground_truth" / "ko" / "0001.png")
    with pytest.raises(DatasetError, match=r"mask .*0001\.png is 32x32 .* image .*0001\.bmp is 64x64"):
        scan_btad(root, "01")


def test_unreadable_image_is_named(tmp_path):
    root = write_btad(tmp_path)
    (root / "01" / "test" / "ko" / "0003.bmp").write_bytes(b"BM not really a bitmap")
    with pytest.raises(DatasetError, match=r"cannot decode image file .*0003\.bmp"):
        scan_btad(root, "01")


def test_missing_test_ko_folder_names_the_layout(tmp_path):
    root = write_btad(tmp_path, num_test_ko=0)
    with pytest.raises(DatasetError, match=r"missing folder .*test/ko .*BTAD"):
        scan_btad(root, "01")


def test_too_few_anomalies_for_the_requested_seen(tmp_path):
    module = BTADDataModule(write_btad(tmp_path), "01", num_seen_anomalies=5)
    with pytest.raises(DatasetError, match=r"num_seen_anomalies=5 but only 4"):
        module.setup("fit")
