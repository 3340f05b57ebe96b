import json

import pytest
from dataset_layouts import dagm_labels_text, write_dagm

from prn.data.dagm import DAGMDataModule, LabelRow, read_labels, scan_dagm
from prn.data.errors import DatasetError


def test_labels_file_in_the_distributed_format(tmp_path):
    path = tmp_path / "Labels.txt"
    path.write_text(dagm_labels_text([(1, 0, "0576.PNG", "0"), (2, 1, "0595.PNG", "0595_label.PNG")]))
    assert read_labels(path) == [LabelRow(2, False, "0576.PNG", None), LabelRow(3, True, "0595.PNG", "0595_label.PNG")]


def test_labels_file_tolerates_spaces_crlf_blank_lines_and_a_bom(tmp_path):
    path = tmp_path / "Labels.txt"
    text = "\ufeff\r\n7\r\n1   0  0001.PNG  0  0\r\n\r\n2 1 0002.PNG 0 0002_label.PNG   \r\n3\t1\t0003.PNG\r\n"
    path.write_bytes(text.encode("utf-8"))
    rows = read_labels(path)
    assert [(r.defective, r.image_name, r.label_name) for r in rows] == [
        (False, "0001.PNG", None),
        (True, "0002.PNG", "0002_label.PNG"),
        (True, "0003.PNG", None),
    ]


@pytest.mark.parametrize("row", ["1\tyes\t0001.PNG\t0\t0", "one\t0\t0001.PNG\t0\t0", "1\t0"])
def test_malformed_row_names_file_and_line(tmp_path, row):
    path = tmp_path / "Labels.txt"
    path.write_text(f"1\n1\t0\t0000.PNG\t0\t0\n{row}\n")
    with pytest.raises(DatasetError, match=r"Labels\.txt:3: .* is not 'index flag filename"):
        read_labels(path)


def test_scan_separates_train_defects_and_keeps_test_whole(tmp_path):
    split = scan_dagm(write_dagm(tmp_path), "Class1")
    assert len(split.train_normal) == 8 and len(split.train_anomalous) == 4 and len(split.test) == 6
    assert all(r.image_path.parent.name == "Train" for r in split.train_normal + split.train_anomalous)
    assert [r.label for r in split.test] == [0, 0, 0, 1, 1, 1]
    for record in split.train_anomalous + split.test[3:]:
        assert record.mask_path.name == f"{record.image_path.stem}_label.PNG" and record.defect_type == "defect"
    assert all(r.mask_path is None and r.defect_type == "good" for r in split.train_normal)


def test_seen_from_train_defects_rest_unused_and_recorded(tmp_path):
    module = DAGMDataModule(
        write_dagm(tmp_path / "dagm"), "Class1", num_seen_anomalies=2, image_size=64, output_dir=tmp_path / "run"
    )
    module.setup("fit")
    assert {r.image_path.parent.name for r in module.split.seen} == {"Train"}
    assert all(mask.any() for mask in module.pool.seen_masks)
    assert all(r.image_path.parent.name == "Test" for r in module.split.test) and len(module.split.test) == 6
    written = json.loads((tmp_path / "run" / "split.json").read_text())
    assert (
        written["seen_from"] == "train" and written["counts"]["test"] == 6 and written["counts"]["test_anomalous"] == 3
    )
    assert written["seen_source"] == {
        "split": "train",
        "candidates": 4,
        "drawn": 2,
        "not_drawn": 2,
        "not_drawn_go_to": "unused",
    }


def test_grey_images_become_rgb_and_ellipse_masks_survive_resizing(tmp_path):
    module = DAGMDataModule(write_dagm(tmp_path), "Class1", num_seen_anomalies=1, image_size=32)
    module.setup("test")
    items = [module.test_dataloader().dataset[i] for i in range(6)]
    assert items[0]["image"].shape == (3, 32, 32)
    assert [int(item["mask"].sum() > 0) for item in items] == [0, 0, 0, 1, 1, 1]


def test_defect_listed_without_its_label_file(tmp_path):
    root = write_dagm(tmp_path)
    (root / "Class1" / "Test" / "Label" / "0016_label.PNG").unlink()
    with pytest.raises(
        DatasetError, match=r"Labels\.txt:5 marks 0016\.PNG defective but its label .*0016_label\.PNG does not exist"
    ):
        scan_dagm(root, "Class1")


def test_image_missing_from_labels_file(tmp_path):
    root = write_dagm(tmp_path)
    (root / "Class1" / "Train" / "0001.PNG").rename(root / "Class1" / "Train" / "0999.PNG")
    with pytest.raises(DatasetError, match=r"\['0999\.PNG'\] in .*Train are not listed in"):
        scan_dagm(root, "Class1")


def test_missing_labels_file(tmp_path):
    root = write_dagm(tmp_path)
    (root / "Class1" / "Test" / "Label" / "Labels.txt").unlink()
    with pytest.raises(DatasetError, match=r"missing .*Test/Label/Labels\.txt"):
        scan_dagm(root, "Class1")


def test_unknown_class_lists_the_classes_found(tmp_path):
    write_dagm(tmp_path, "Class3")
    with pytest.raises(DatasetError, match=r"dataset\.category='Class11' not found.*\['Class3'\]"):
        scan_dagm(tmp_path, "Class11")


def test_missing_root_points_at_the_download_helper(tmp_path):
    with pytest.raises(DatasetError, match=r"prn\.data\.download dagm"):
        scan_dagm(tmp_path / "missing", "Class1")


def test_too_few_training_defects(tmp_path):
    module = DAGMDataModule(write_dagm(tmp_path, train=(8, 2)), "Class1", num_seen_anomalies=3)
    with pytest.raises(DatasetError, match=r"num_seen_anomalies=3 but only 2"):
        module.setup("fit")
