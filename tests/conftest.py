"""Shared fixtures: composing prn's Hydra configs, and the GPU marker."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

REPO = Path(__file__).resolve().parents[1]
CONF = REPO / "conf"
TINY = ["debug=tiny"]  # the smallest real run: conf/debug/tiny.yaml

Compose = Callable[..., DictConfig]


def compose_config(name: str, overrides: list[str] | tuple[str, ...] = ()) -> DictConfig:
    """``conf/<name>.yaml`` composed with ``overrides``, as ``python src/<name>.py`` would."""
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose(name, overrides=list(overrides))


@pytest.fixture(scope="session")
def compose_cfg() -> Compose:
    """``compose_cfg("train", [...])``: usable from fixtures of any scope."""
    return compose_config


@pytest.fixture(scope="session")
def tiny() -> list[str]:
    """Overrides of a tiny real run (``debug=tiny``), to extend with a test's own."""
    return list(TINY)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests marked ``gpu`` run only where CUDA is present."""
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)
