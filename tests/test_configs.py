"""Every config in conf/ composes, and the short overrides land where they should."""

from pathlib import Path

import pytest
from omegaconf import OmegaConf

CONF = Path(__file__).resolve().parents[1] / "conf"


@pytest.fixture
def _compose(compose_cfg):
    """Compose and resolve, so that every interpolation is checked too."""

    def compose(name: str, overrides: list[str]):
        cfg = compose_cfg(name, ["paths.output_dir=/tmp/prn-compose", *overrides])
        OmegaConf.resolve(cfg)
        return cfg

    return compose


def _options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF / group).glob("*.yaml"))


@pytest.mark.parametrize("dataset", _options("dataset"))
def test_every_dataset_composes(dataset, _compose):
    cfg = _compose("train", [f"dataset={dataset}"])
    assert cfg.dataset.datamodule.category == cfg.category
    assert cfg.category == cfg.dataset.default_category


@pytest.mark.parametrize("group", ["ablation", "generation", "schedule", "trainer", "callbacks", "debug", "logger"])
def test_every_option_of_every_group_composes(group, _compose):
    for option in _options(group):
        if (group, option) != (
            "callbacks",
            "predict",
        ):  # predict's writer reads predict.yaml's keys: test_predict_config_composes
            _compose("train", [f"{group}={option}"])


def test_short_overrides_reach_the_datamodule_and_model(_compose):
    cfg = _compose(
        "train",
        ["dataset=mvtec", "category=screw", "seen=5", "seed=3", "image_size=384", "weights=null", "root=/data/mvtec"],
    )
    dm = cfg.dataset.datamodule
    assert (dm.category, dm.num_seen_anomalies, dm.seed, dm.image_size, dm.root) == ("screw", 5, 3, 384, "/data/mvtec")
    assert cfg.model.net.encoder_weights is None
    assert cfg.callbacks.prototypes.seed == 3


def test_real_datasets_default_to_the_paper_schedule_and_demo_to_its_own(_compose):
    paper = _compose("train", ["dataset=mvtec"])
    assert (paper.epochs, paper.batch_size, paper.image_size) == (700, 64, 256)
    assert paper.model.net.allow_random_fallback is False and paper.generation.hea is True
    demo = _compose("train", [])
    assert demo.dataset.name == "synthetic" and (demo.max_steps, demo.batch_size, demo.image_size) == (150, 8, 128)
    assert demo.model.net.allow_random_fallback is True and demo.generation.hea is False


@pytest.mark.parametrize("dataset", ["mvtec", "synthetic", "btad"])
def test_a_schedule_changes_only_the_schedule(dataset, compose_cfg):
    base = OmegaConf.to_container(
        compose_cfg("train", [f"dataset={dataset}"])
    )  # unresolved: ${epochs} elsewhere is no change
    for schedule in _options("schedule"):
        picked = OmegaConf.to_container(compose_cfg("train", [f"dataset={dataset}", f"schedule={schedule}"]))
        changed = {key for key in base if base[key] != picked[key]}
        assert changed <= {"epochs", "max_steps", "batch_size"}, (schedule, changed)


def test_every_model_part_has_a_target(_compose):
    model = _compose("train", []).model
    assert model._target_ == "prn.training.PRNModule" and model.net._target_ == "prn.models.PRNet"
    assert (
        model.optimizer._target_ == "torch.optim.Adam"
        and model.optimizer._partial_
        and model.loss._target_ == "prn.losses.PRNLoss"
    )


def test_ablations_switch_exactly_their_modules(_compose):
    expected = {"full": (1, 1, 1), "baseline": (0, 0, 0), "mp": (1, 0, 0), "msa_mf": (0, 1, 1), "mp_msa": (1, 1, 0)}
    for name, flags in expected.items():
        net = _compose("train", [f"ablation={name}"]).model.net
        assert (net.use_mp, net.use_msa, net.use_mf) == tuple(map(bool, flags))


def test_eval_config_composes(_compose):
    cfg = _compose("eval", ["ckpt_path=/tmp/x.ckpt"])
    assert cfg.root is None and cfg.category is None


def test_predict_config_composes(_compose):
    cfg = _compose("predict", ["ckpt_path=/tmp/x.ckpt", "input=/tmp/parts"])
    assert cfg.threshold == "auto" and cfg.on_error == "fail" and cfg.save_maps and cfg.trainer.accelerator == "auto"
    assert cfg.callbacks.prediction_writer._target_ == "prn.prediction.PredictionWriter"


@pytest.mark.parametrize(
    ("dataset", "held_out"), [("mvtec", 0), ("btad", 0), ("dagm", 0), ("ksdd2", 0), ("folder", 0.1), ("synthetic", 0.1)]
)
def test_benchmarks_keep_the_papers_protocol_and_own_parts_hold_out_normals(_compose, dataset, held_out):
    """The paper's tables train on every normal image; a user's folder (and the demo) calibrates a threshold."""
    cfg = _compose("train", [f"dataset={dataset}"])
    assert cfg.dataset.datamodule.val_normals == held_out and cfg.calibration.fpr == 0.01


def test_seen_zero_reaches_the_composition_with_one_override(_compose):
    cfg = _compose("train", ["dataset=mvtec", "seen=0"])
    assert cfg.dataset.datamodule.num_seen_anomalies == 0 and cfg.generation.composition.seen == 0
