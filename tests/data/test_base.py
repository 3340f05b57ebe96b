"""The generic datamodule (``prn.data.base``), exercised through the MVTec layout."""

import json
from collections import Counter
from functools import partial
from pathlib import Path
from types import SimpleNamespace

import lightning
import numpy as np
import pytest
import torch

from prn.data.base import SELECTION_DRAWS, AnomalyDataModule, resolve_num_workers
from prn.data.errors import DatasetError
from prn.data.eval_set import ShardSampler
from prn.data.generation import SimulatedAnomalySource
from prn.data.generation.held_out import HELD_OUT_KINDS
from prn.data.mvtec import MVTecDataModule, scan_mvtec
from prn.data.records import DatasetSplit


def _module(root: Path, **options) -> MVTecDataModule:
    defaults = {"image_size": 128, "num_seen_anomalies": 3, "batch_size": 4, "eval_batch_size": 5}
    return MVTecDataModule(root, "widget", **{**defaults, **options})


def test_fit_setup_decodes_normals_and_seen_once_at_the_requested_size(mvtec_root):
    module = _module(mvtec_root)
    module.setup("fit")
    pool = module.pool
    assert len(pool.normals) == 12 and len(pool.seen_images) == len(pool.seen_masks) == 3
    assert pool.image_size == (128, 128) and pool.category == "widget" and not pool.is_texture
    assert pool.normals[0].image.shape == (128, 128, 3) and pool.normals[0].image.dtype == np.uint8
    assert pool.seen_masks[0].dtype == bool and pool.seen_masks[0][40:60, 40:60].all()
    module.setup("fit")
    assert module.pool is pool


def test_split_json_records_counts_and_files(mvtec_root, tmp_path):
    module = _module(mvtec_root, output_dir=tmp_path / "run")
    module.setup("fit")
    written = json.loads((tmp_path / "run" / "split.json").read_text())
    assert written == module.split_summary()
    assert written["counts"] == {
        "train_normal": 12,
        "val_normal": 0,
        "seen_anomalies": 3,
        "test": 7,
        "test_good": 3,
        "test_anomalous": 4,
    }
    assert written["seed"] == 0 and written["num_seen_anomalies"] == 3 and written["category"] == "widget"
    assert written["train_normal"][0] == "widget/train/good/000.png"
    assert not set(written["seen_anomalies"]) & set(written["test"])
    assert [p.name for p in (tmp_path / "run").iterdir()] == ["split.json"]


def test_corrupt_image_fails_setup_naming_it_and_writes_no_split(mvtec_root, tmp_path):
    (mvtec_root / "widget" / "train" / "good" / "005.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    module = _module(mvtec_root, output_dir=tmp_path / "run")
    with pytest.raises(DatasetError, match="005.png"):
        module.setup("fit")
    assert not (tmp_path / "run").exists() or not any((tmp_path / "run").iterdir())


@pytest.mark.parametrize(
    ("options", "pattern"),
    [
        ({"num_seen_anomalies": 8}, r"dataset\.num_seen_anomalies=8 but only 7"),
        ({"num_seen_anomalies": 0}, r"dataset\.composition\.seen > 0 but dataset\.num_seen_anomalies=0"),
        ({"composition": {"normal": 0.5, "ea": 0.5}}, r"dataset\.composition names unknown sources \['ea'\]"),
        ({"composition": {"normal": 0.7, "seen": 0.2}}, r"dataset\.composition fractions sum to 0\.9"),
        ({"seen_from": "val"}, r"dataset\.seen_from='val'"),
        ({"image_size": 0}, r"dataset\.image_size"),
        ({"batch_size": 0}, r"dataset\.batch_size"),
    ],
)
def test_bad_options_name_the_option(mvtec_root, options, pattern):
    with pytest.raises(DatasetError, match=pattern):
        _module(mvtec_root, **options).setup("fit")


def test_seen_from_train_leaves_the_test_set_whole(mvtec_root):
    def scanner_with_train_anomalies(root: Path, category: str) -> DatasetSplit:
        found = scan_mvtec(root, category)
        anomalous = [r for r in found.test if r.defect_type == "crack"]
        return DatasetSplit(found.train_normal, anomalous, [r for r in found.test if r.defect_type != "crack"])

    module = AnomalyDataModule(
        mvtec_root,
        "widget",
        scanner=scanner_with_train_anomalies,
        num_seen_anomalies=2,
        seen_from="train",
        image_size=64,
    )
    module.setup("fit")
    module.setup("test")
    assert {r.defect_type for r in module.split.seen} == {"crack"} and len(module.pool.seen_images) == 2
    assert len(module.test_dataloader().dataset) == 6


def test_generator_factory_gets_the_pool_and_fills_its_slots(mvtec_root):
    calls = []

    def white_square_factory(pool):
        calls.append(pool)

        def white_square(base, rng):
            image, mask = base.image.copy(), np.zeros(pool.image_size, dtype=np.float32)
            top = int(rng.integers(0, 64))
            image[top : top + 8, :8], mask[top : top + 8, :8] = 255, 1.0
            return image, mask

        return white_square

    module = _module(
        mvtec_root,
        generators={"square": white_square_factory},
        composition={"normal": 0.5, "seen": 0.25, "square": 0.25},
    )
    batch = next(iter(module.train_dataloader()))
    assert calls == [module.pool]
    assert Counter(batch["source"]) == {"normal": 2, "seen": 1, "square": 1}
    assert batch["image"].shape == (4, 3, 128, 128) and batch["mask"].shape == (4, 1, 128, 128)
    assert batch["label"].tolist() == [0, 0, 1, 1]


def test_foreground_fn_is_used_for_objects_only(mvtec_root):
    calls = []

    def left_half(images, category):
        calls.append((len(images), category))
        masks = [np.zeros(images[0].shape[:2], dtype=bool) for _ in images]
        for mask in masks:
            mask[:, :64] = True
        return masks

    objects = _module(mvtec_root, foreground=left_half)
    objects.setup("fit")
    assert calls == [(12, "widget")] and objects.pool.normals[3].foreground[:, :64].all()
    texture = _module(mvtec_root, foreground=left_half, texture_categories=["widget"])
    texture.setup("fit")
    assert len(calls) == 1 and texture.pool.is_texture and texture.pool.normals[0].foreground is None


def test_foreground_fn_with_wrong_output_is_rejected(mvtec_root):
    with pytest.raises(DatasetError, match=r"dataset\.foreground returned 1 masks for 12 images"):
        _module(mvtec_root, foreground=lambda images, category: [np.ones((128, 128), bool)]).setup("fit")


def _with_simulated_anomalies(root: Path, dtd_dir: Path, hea: bool = True) -> MVTecDataModule:
    """``generation.hea`` as the config builds it, with a foreground function that must not run before the check."""

    def foreground(images, category):
        raise AssertionError("foreground estimation ran before the DTD folder was checked")

    factory = partial(SimulatedAnomalySource, dtd_dir=str(dtd_dir), use_heterologous=hea, use_homologous=True)
    composition = {"normal": 0.5, "seen": 0.25, "sa": 0.25}
    return _module(root, composition=composition, generators={"sa": factory}, foreground=foreground)


def test_a_missing_or_empty_dtd_folder_fails_fit_before_any_image_is_decoded(mvtec_root, tmp_path):
    """Foreground estimation took 86 s on MVTec before HEA found no DTD folder."""
    module = _with_simulated_anomalies(mvtec_root, tmp_path / "no_dtd")
    with pytest.raises(FileNotFoundError, match=r"generation\.dtd_dir=.*no_dtd does not exist; point"):
        module.check_fit_inputs()
    with pytest.raises(FileNotFoundError, match=r"generation\.dtd_dir=.*no_dtd does not exist"):
        module.setup("fit")
    assert module._split is None, "the check comes before the dataset is even scanned"
    (tmp_path / "empty_dtd" / "banded").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match=r"empty_dtd holds no images"):
        _with_simulated_anomalies(mvtec_root, tmp_path / "empty_dtd").check_fit_inputs()


def test_the_dtd_folder_is_not_needed_with_hea_off_or_to_test(mvtec_root, tmp_path):
    _with_simulated_anomalies(mvtec_root, tmp_path / "no_dtd", hea=False).check_fit_inputs()
    module = _with_simulated_anomalies(mvtec_root, tmp_path / "no_dtd")  # evaluation rebuilds the training config
    module.setup("test")
    assert len(module.test_dataloader().dataset) == 7


def test_test_loader_items(mvtec_root):
    module = _module(mvtec_root)
    module.setup("test")
    items = [item for batch in module.test_dataloader() for item in _unbatch(batch)]
    assert len(items) == 7
    for item in items:
        assert item["image"].shape == (3, 128, 128) and item["mask"].shape == (1, 128, 128)
        assert item["label"] == int(item["defect_type"] != "good") == int(item["mask"].sum() > 0)
        assert Path(item["path"]).is_file()


def test_test_loader_gives_each_ddp_rank_its_own_shard(mvtec_root):
    module = _module(mvtec_root)
    module.setup("test")
    everything = [p for batch in module.test_dataloader() for p in batch["path"]]
    shards = []
    for rank in range(2):
        module.trainer = SimpleNamespace(world_size=2, global_rank=rank)
        loader = module.test_dataloader()
        assert isinstance(loader.sampler, ShardSampler)
        shards.append([p for batch in loader for p in batch["path"]])
    assert shards == [everything[0::2], everything[1::2]]
    assert sorted(shards[0] + shards[1]) == sorted(everything) and len(everything) == 7


def test_test_loader_with_a_single_device_trainer_is_the_whole_set_in_order(mvtec_root):
    module = _module(mvtec_root)
    module.setup("test")
    alone = [p for batch in module.test_dataloader() for p in batch["path"]]
    module.trainer = SimpleNamespace(world_size=1, global_rank=0)
    loader = module.test_dataloader()
    assert not isinstance(loader.sampler, ShardSampler)
    assert [p for batch in loader for p in batch["path"]] == alone and len(alone) == 7


def test_normal_loader_is_deterministic_and_ordered(mvtec_root):
    module = _module(mvtec_root)
    first, second = list(module.normal_dataloader()), list(module.normal_dataloader())
    assert [len(b["path"]) for b in first] == [5, 5, 2]
    assert [Path(p).name for b in first for p in b["path"]] == [f"{i:03d}.png" for i in range(12)]
    assert all(torch.equal(a["image"], b["image"]) for a, b in zip(first, second))


def test_trainer_sets_the_epoch_so_batches_change(mvtec_root):
    class RecordingModule(lightning.LightningModule):
        def __init__(self):
            super().__init__()
            self.weight = torch.nn.Parameter(torch.zeros(1))
            self.first_images = []

        def training_step(self, batch, batch_index):
            if batch_index == 0:
                self.first_images.append(batch["image"].clone())
            return (self.weight - batch["image"].mean()) ** 2

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.0)

    model = RecordingModule()
    trainer = lightning.Trainer(
        max_epochs=2,
        limit_train_batches=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        accelerator="cpu",
    )
    trainer.fit(model, datamodule=_module(mvtec_root, image_size=32))
    assert len(model.first_images) == 2 and not torch.equal(*model.first_images)


def _unbatch(batch: dict) -> list[dict]:
    return [{key: value[index] for key, value in batch.items()} for index in range(len(batch["path"]))]


@pytest.mark.shared
def test_real_bottle_split_counts():
    root = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "mvtec_anomaly_detection"
    if not (root / "bottle").is_dir():
        pytest.skip("../shared/data/mvtec_anomaly_detection/bottle is absent")
    module = MVTecDataModule(root, "bottle", image_size=256, num_seen_anomalies=10)
    module.setup("fit")
    module.setup("test")
    assert len(module.pool.normals) == 209 and len(module.pool.seen_images) == 10
    assert len(module.test_dataloader().dataset) == 73
    assert module.pool.normals[0].image.shape == (256, 256, 3) and module.pool.seen_masks[0].any()


def test_num_workers_auto_uses_workers_only_when_a_gpu_trains(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_num_workers("auto") == 0
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert 1 <= resolve_num_workers("auto") <= 8
    assert resolve_num_workers(3) == 3


@pytest.mark.parametrize("bad", [-1, "four", 1.5, True])
def test_num_workers_rejects_what_is_not_auto_or_a_count(bad):
    with pytest.raises(DatasetError, match=r"num_workers=.* must be auto or an int >= 0"):
        resolve_num_workers(bad)


def test_the_selection_set_holds_the_held_out_normals_and_only_held_out_kinds(mvtec_root):
    """The score is chosen on anomalies no training source makes; none of a training generator's reach it."""
    square_calls = []

    def square_factory(pool):
        def square(base, rng):
            square_calls.append(rng)
            return base.image, np.zeros(pool.image_size, dtype=np.float32)

        return square

    module = _module(
        mvtec_root,
        val_normals=2,
        generators={"square": square_factory},
        composition={"normal": 0.5, "seen": 0.25, "square": 0.25},
    )
    selection = module.selection_dataloader().dataset
    normals = [record for record in selection.records if record.label == 0]
    anomalies = [record for record in selection.records if record.label == 1]
    assert [record.image_path for record in normals] == [record.image_path for record in module.split.val_normal]
    kinds = {f"held_out:{kind}" for kind in HELD_OUT_KINDS}
    assert anomalies and {record.defect_type for record in anomalies} <= kinds and not square_calls
    assert len(anomalies) <= 2 * SELECTION_DRAWS
    assert all(mask.any() for mask in selection.masks[len(normals) :])  # what changed nothing is left out
    again = module.selection_dataloader().dataset
    assert all(np.array_equal(a, b) for a, b in zip(selection.images, again.images))  # seeded: the same set


def test_without_held_out_normals_there_is_no_selection_set(mvtec_root):
    assert _module(mvtec_root).selection_dataloader() is None
