import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from prn.data import synthetic
from prn.data.errors import DatasetError
from prn.data.mvtec import scan_mvtec
from prn.data.synthetic import MARKER, SyntheticDataModule, ensure_synthetic_dataset

SMALL = {"image_size": 64, "num_train": 4, "num_test_good": 2, "num_test_per_defect": 2}


def _files(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("category", ["tiles", "discs"])
def test_same_seed_gives_identical_bytes_other_seed_differs(tmp_path, category):
    first = _files(ensure_synthetic_dataset(tmp_path / "a", category, seed=3, **SMALL))
    again = _files(ensure_synthetic_dataset(tmp_path / "b", category, seed=3, **SMALL))
    other = _files(ensure_synthetic_dataset(tmp_path / "c", category, seed=4, **SMALL))
    assert first == again
    assert first.keys() == other.keys() and first != other


@pytest.mark.parametrize("category", ["tiles", "discs"])
def test_layout_scans_as_mvtec_with_visible_exact_defects(tmp_path, category):
    root = tmp_path / "synthetic"
    ensure_synthetic_dataset(root, category, **SMALL)
    split = scan_mvtec(root, category)
    assert len(split.train_normal) == 4 and len(split.test) == 2 + 3 * 2
    good = np.asarray(Image.open(split.train_normal[0].image_path)).astype(float)
    for record in (r for r in split.test if r.label == 1):
        mask = np.asarray(Image.open(record.mask_path)) > 0
        image = np.asarray(Image.open(record.image_path)).astype(float)
        assert mask.sum() >= 12 and not mask.all()
        inside, outside = image[mask].mean(axis=0), image[~mask].mean(axis=0)
        assert np.abs(inside - outside).max() > 40, record.image_path  # clearly visible
    assert good.shape == (64, 64, 3)


def test_disc_defects_stay_on_the_object(tmp_path):
    root = tmp_path / "synthetic"
    ensure_synthetic_dataset(root, "discs", **SMALL)
    for mask_path in (root / "discs" / "ground_truth").rglob("*.png"):
        rows, cols = np.nonzero(np.asarray(Image.open(mask_path)))
        assert np.hypot(rows - 32, cols - 32).max() < 64 * 0.36


def test_complete_dataset_is_reused_and_mismatch_is_refused(tmp_path):
    target = ensure_synthetic_dataset(tmp_path, "tiles", **SMALL)
    stamp = (target / MARKER).stat().st_mtime_ns
    assert ensure_synthetic_dataset(tmp_path, "tiles", **SMALL) == target
    assert (target / MARKER).stat().st_mtime_ns == stamp
    with pytest.raises(DatasetError, match="delete it or use another dataset.root"):
        ensure_synthetic_dataset(tmp_path, "tiles", **{**SMALL, "num_train": 5})


def test_folder_without_marker_is_not_taken_for_complete(tmp_path):
    (tmp_path / "tiles" / "train" / "good").mkdir(parents=True)
    with pytest.raises(DatasetError, match=MARKER):
        ensure_synthetic_dataset(tmp_path, "tiles", **SMALL)


def test_failure_while_writing_leaves_nothing_behind(tmp_path, monkeypatch):
    def fail_halfway(folder, params):
        (folder / "train").mkdir()
        raise RuntimeError("disk full")

    monkeypatch.setattr(synthetic, "_write_dataset", fail_halfway)
    with pytest.raises(RuntimeError, match="disk full"):
        ensure_synthetic_dataset(tmp_path, "tiles", **SMALL)
    assert list(tmp_path.iterdir()) == []


def test_abandoned_partial_folder_of_a_dead_process_is_cleaned(tmp_path):
    dead = tmp_path / ".tiles.partial-999999999-x"
    (dead / "train").mkdir(parents=True)
    alive = tmp_path / f".tiles.partial-{os.getpid()}-y"
    alive.mkdir()
    ensure_synthetic_dataset(tmp_path, "tiles", **SMALL)
    assert not dead.exists() and alive.exists() and (tmp_path / "tiles" / MARKER).is_file()


def test_unknown_category_is_refused(tmp_path):
    with pytest.raises(DatasetError, match=r"dataset\.category='bottle'.*\['tiles', 'discs'\]"):
        ensure_synthetic_dataset(tmp_path, "bottle")


@pytest.mark.parametrize(("category", "foreground_calls"), [("tiles", 0), ("discs", 1)])
def test_datamodule_generates_on_setup_and_treats_tiles_as_texture(tmp_path, category, foreground_calls):
    calls = []

    def everywhere(images, name):
        calls.append(name)
        return [np.ones(image.shape[:2], dtype=bool) for image in images]

    module = SyntheticDataModule(
        tmp_path,
        category,
        source_size=64,
        num_train=4,
        num_test_good=2,
        num_test_per_defect=2,
        image_size=32,
        num_seen_anomalies=2,
        batch_size=4,
        foreground=everywhere,
    )
    batch = next(iter(module.train_dataloader()))
    assert batch["image"].shape == (4, 3, 32, 32) and len(calls) == foreground_calls
    assert module.split_summary()["counts"] == {
        "train_normal": 4,
        "val_normal": 0,
        "seen_anomalies": 2,
        "test": 6,
        "test_good": 2,
        "test_anomalous": 4,
    }
