"""W&B logging offline: no key -> offline, runs land under the run folder, overlays render."""

import pytest

from prn.reporting.wandb_images import WandbReportCallback
from prn.utils.wandb import build_wandb_logger, has_api_key, resolve_mode


@pytest.fixture
def no_credentials(monkeypatch, tmp_path):
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.netrc
    monkeypatch.setenv("NETRC", str(tmp_path / "none"))


def test_no_key_means_offline(no_credentials):
    assert not has_api_key() and resolve_mode() == "offline"


def test_explicit_mode_wins_and_bad_mode_is_named(no_credentials, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "disabled")
    assert resolve_mode() == "disabled" and resolve_mode("offline") == "offline"
    with pytest.raises(ValueError, match="logger.wandb.mode"):
        resolve_mode("sometimes")


def test_offline_logger_writes_a_run_to_sync_later(no_credentials, tmp_path):
    logger = build_wandb_logger(
        project="prn-test", save_dir=str(tmp_path / "run"), name="job", group="smoke/table4", tags=["t"]
    )
    logger.log_metrics({"test/image_auroc": 0.5})
    logger.experiment.config.update({"seed": 0})
    assert logger.experiment.group == "smoke/table4"
    logger.experiment.finish()
    assert list((tmp_path / "run" / "wandb").glob("offline-run-*"))
    with_wandb = type("Trainer", (), {"loggers": [logger]})()
    without = type("Trainer", (), {"loggers": []})()
    assert (
        WandbReportCallback._wandb_logger(with_wandb) is logger and WandbReportCallback._wandb_logger(without) is None
    )
