"""Every config in conf/ composes, and the short overrides land where they should."""

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

CONF = Path(__file__).resolve().parents[1] / "conf"


def _compose(name: str, overrides: list[str]):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(name, overrides=["paths.output_dir=/tmp/prn-compose", *overrides])
    OmegaConf.resolve(cfg)
    return cfg


def _options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF / group).glob("*.yaml"))


@pytest.mark.parametrize("dataset", _options("dataset"))
def test_every_dataset_composes(dataset):
    cfg = _compose("train", [f"dataset={dataset}"])
    assert cfg.dataset.datamodule.category == cfg.category
    assert cfg.category in cfg.dataset.categories


@pytest.mark.parametrize("group", ["ablation", "generation", "schedule", "trainer"])
def test_every_option_of_every_group_composes(group):
    for option in _options(group):
        _compose("train", [f"{group}={option}"])


def test_short_overrides_reach_the_datamodule_and_model():
    cfg = _compose("train", ["dataset=mvtec", "category=screw", "seen=5", "seed=3", "image_size=384", "weights=null", "root=/data/mvtec"])
    dm = cfg.dataset.datamodule
    assert (dm.category, dm.num_seen_anomalies, dm.seed, dm.image_size, dm.root) == ("screw", 5, 3, 384, "/data/mvtec")
    assert cfg.model.net.encoder_weights is None
    assert cfg.model.prototypes.seed == 3


def test_real_datasets_default_to_the_paper_schedule_and_demo_to_cpu():
    paper = _compose("train", ["dataset=mvtec"])
    assert (paper.epochs, paper.batch_size, paper.image_size) == (700, 64, 256)
    assert paper.model.net.allow_random_fallback is False
    demo = _compose("train", [])
    assert demo.dataset.name == "synthetic" and demo.max_steps > 0 and demo.batch_size == 8


def test_ablations_switch_exactly_their_modules():
    expected = {"full": (1, 1, 1), "baseline": (0, 0, 0), "mp": (1, 0, 0), "msa_mf": (0, 1, 1), "mp_msa": (1, 1, 0)}
    for name, flags in expected.items():
        net = _compose("train", [f"ablation={name}"]).model.net
        assert (net.use_mp, net.use_msa, net.use_mf) == tuple(map(bool, flags))


def test_eval_config_composes():
    cfg = _compose("eval", ["ckpt_path=/tmp/x.ckpt"])
    assert cfg.root is None and cfg.category is None


def test_predict_config_composes():
    cfg = _compose("predict", ["ckpt_path=/tmp/x.ckpt", "input=/tmp/parts"])
    assert cfg.threshold is None and cfg.save_maps and cfg.device == "auto"
