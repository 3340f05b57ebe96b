"""Shared fixtures: composing prn's Hydra configs, the tiny exported model, a headless browser, the GPU marker,
and how ``make test`` shares the cores among pytest-xdist workers."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig
from tiny_model import (
    FORMATS,
    TinyExports,
    as_model_input,
    calibration_between,
    random_images,
    save_checkpoint,
    tiny_module,
)

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


@pytest.fixture(scope="session")
def tiny_exports(tmp_path_factory: pytest.TempPathFactory) -> TinyExports:
    """A tiny PRN checkpoint with calibrated thresholds (``tiny_model``), exported once per session in every format."""
    from prn.tools.export import default_output, export_formats

    folder = tmp_path_factory.mktemp("tiny_exports")
    module = tiny_module()
    with torch.no_grad():
        maps, scores = module.predict_maps_and_scores(as_model_input(random_images(6)))
    module.calibration = calibration_between(scores.numpy(), maps.numpy())
    checkpoint = save_checkpoint(module, folder / "last.ckpt")
    models = {fmt: default_output(folder, fmt) for fmt in FORMATS}
    export_formats(checkpoint, models, max_batch=32)  # as prn-export format=[torch,onnx,openvino] does
    return TinyExports(checkpoint, module, models)


BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


@pytest.fixture(scope="session")
def browser() -> str:
    """A headless Chromium's path; CI sets ``PRN_REQUIRE_BROWSER=1`` so that a missing one fails instead of skipping."""
    found = next((path for path in map(shutil.which, BROWSERS) if path), None)
    if found is None:
        message = f"no headless browser found ({', '.join(BROWSERS)}); install one: apt-get install chromium"
        if os.environ.get("PRN_REQUIRE_BROWSER") == "1":
            pytest.fail(message)
        pytest.skip(message)
    return found


SHARED_FIXTURE_GROUPS = ("tiny_exports",)  # session fixtures too costly to build in every xdist worker


def pytest_configure(config: pytest.Config) -> None:
    """Under pytest-xdist (``make test`` runs ``-n auto``) each worker keeps to one core: torch's own
    threads in every worker would oversubscribe the machine and slow all of them."""
    if os.environ.get("PYTEST_XDIST_WORKER"):
        torch.set_num_threads(1)
        # and so do the processes a test starts (notebook kernels, DDP ranks, benchmark scripts, multiruns):
        # with their default of one thread per core beside the other workers they ran 2-2.5x slower
        os.environ["OMP_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = "1"


@pytest.hookimpl(tryfirst=True)  # before pytest-xdist's own hook, which reads the groups into the node ids
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests marked ``gpu`` run only where CUDA is present; xdist groups keep costly fixtures built once: each
    module's tests share a worker (module fixtures), and every module using a costly session fixture shares one."""
    shared = {_module_of(item): fixture for item in items for fixture in _shared_fixtures(item)}
    group_of = {item.nodeid: shared.get(_module_of(item), _module_of(item)) for item in items}
    for item in items:  # a module whose tests use a costly session fixture joins that fixture's worker whole
        item.add_marker(pytest.mark.xdist_group(group_of[item.nodeid]))
    items.sort(key=lambda item: _costly_rank(group_of[item.nodeid]))  # stable: the rest keeps its order
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


# Groups that take minutes, handed out first so that the workers finish together instead of one of them
# starting a long group while the other has nothing left (make test's durations, 2 cores).
COSTLY_FIRST = (
    "tiny_exports",
    "tests/notebooks/",
    "tests/test_ddp.py",
    "tests/benchmarks/",
    "tests/test_reproduce_smoke.py",
)


def _costly_rank(group: str) -> int:
    return next((rank for rank, prefix in enumerate(COSTLY_FIRST) if group.startswith(prefix)), len(COSTLY_FIRST))


def _module_of(item: pytest.Item) -> str:
    return item.nodeid.split("::", 1)[0]


def _shared_fixtures(item: pytest.Item) -> list[str]:
    """The costly session fixtures (``SHARED_FIXTURE_GROUPS``) a test uses: their users share one worker."""
    return [fixture for fixture in SHARED_FIXTURE_GROUPS if fixture in getattr(item, "fixturenames", ())]
