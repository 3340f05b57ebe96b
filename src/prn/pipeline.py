"""Train-then-test, evaluate-a-checkpoint and predict-on-new-images jobs, driven by a composed Hydra config.

``src/train.py``, ``src/eval.py`` and ``src/predict.py`` are thin Hydra wrappers around
these functions, which tests call directly with ``hydra.compose``.
"""

from __future__ import annotations

import logging
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import hydra
import lightning as L
import torch
from lightning.pytorch.callbacks import ModelCheckpoint, RichProgressBar
from omegaconf import DictConfig, OmegaConf

from prn.data.image_io import parse_image_size
from prn.lightning.callbacks import PrototypeCallback, TrainingTimer
from prn.lightning.module import PRNModule
from prn.prediction import PredictionWriter, collect_images, predict_batches
from prn.utils.config_tree import print_and_save_config
from prn.utils.results import print_results, provenance, write_results
from prn.utils.wandb import report_callbacks

log = logging.getLogger(__name__)


def train(cfg: DictConfig) -> dict[str, Any]:
    """Fit PRN (or go on from ``resume=``), then test the weights of the last step (never a test-selected epoch)."""
    run_dir = Path(cfg.paths.output_dir)
    resume = _resume_checkpoint(cfg)
    print_and_save_config(cfg, run_dir)
    L.seed_everything(cfg.seed, workers=True)
    start = time.perf_counter()
    datamodule = build_datamodule(cfg, run_dir)
    module = PRNModule(
        net_config=OmegaConf.to_container(cfg.model.net, resolve=True),
        data_config={"name": cfg.dataset.name, **OmegaConf.to_container(cfg.dataset.datamodule, resolve=True)},
        **cfg.model.module,
    )
    if resume is not None:
        _install_saved_prototypes(module, resume)
    prototypes = PrototypeCallback(**cfg.model.prototypes)
    timer = TrainingTimer()
    trainer = build_trainer(cfg, run_dir, callbacks=[prototypes, _periodic_checkpoint(cfg, run_dir), timer])
    trainer.fit(module, datamodule=datamodule, ckpt_path=resume)
    train_seconds = time.perf_counter() - start
    trainer.save_checkpoint(run_dir / "checkpoints" / "last.ckpt", weights_only=False)  # optimiser state too: resume= needs it
    trainer.test(module, datamodule=datamodule, verbose=False)
    extra = {
        "train_seconds": round(train_seconds, 1),
        "steps": trainer.global_step,
        "world_size": trainer.world_size,
        "seconds_per_step": round(timer.seconds_per_step(trainer.global_step), 3),
        "prototype_seconds": round(prototypes.seconds, 1),
        "checkpoint": str(run_dir / "checkpoints" / "last.ckpt"),
        "resumed_from": None if resume is None else str(resume),
    }
    header = {"dataset": cfg.dataset.name, "category": cfg.category}
    return _report(cfg, run_dir, module, datamodule, start, header, extra)


def evaluate(cfg: DictConfig) -> dict[str, Any]:
    """Test a checkpoint; architecture, prototypes and weights all come from the file."""
    run_dir = Path(cfg.paths.output_dir)
    ckpt = existing_checkpoint(cfg.ckpt_path, "ckpt_path")
    print_and_save_config(cfg, run_dir)
    start = time.perf_counter()
    saved = module_from_checkpoint(ckpt)
    data_config = dict(saved.hparams.data_config)
    dataset_name = data_config.pop("name")
    overrides = {key: cfg[key] for key in ("root", "category") if cfg.get(key) is not None}
    data_config.update(overrides, eval_batch_size=cfg.batch_size, num_workers=cfg.num_workers)
    datamodule = hydra.utils.instantiate(data_config, output_dir=str(run_dir), _convert_="partial")
    trainer = build_trainer(cfg, run_dir, callbacks=[])
    trainer.test(saved, datamodule=datamodule, verbose=False)
    header = {"dataset": dataset_name, "category": data_config["category"]}
    return _report(cfg, run_dir, saved, datamodule, start, header, {"checkpoint": str(ckpt)})


def training_image_size(module: PRNModule, ckpt: Path) -> tuple[int, int]:
    """``(h, w)`` the checkpoint was trained at: new images are resized to it, as the test set was."""
    size = (module.hparams.get("data_config") or {}).get("image_size")
    if size is None:
        raise ValueError(f"checkpoint {ckpt} records no data_config.image_size: it was not written by src/train.py")
    return parse_image_size(size)


def _resume_checkpoint(cfg: DictConfig) -> Path | None:
    """The checkpoint named by ``resume=``, checked before anything is written."""
    return None if cfg.get("resume") is None else existing_checkpoint(cfg.resume, "resume")


def existing_checkpoint(value: str, option: str) -> Path:
    """``value`` as a path to an existing file, or an error that names ``option`` and what to pass."""
    path = Path(value)
    if not path.is_file():
        raise FileNotFoundError(f"{option}={path} does not exist: pass the checkpoints/last.ckpt of a training run (logs/train/runs/<run>/)")
    return path


def _install_saved_prototypes(module: PRNModule, ckpt: Path) -> None:
    """Prototypes of the run being resumed, so the callback keeps them instead of re-clustering.

    Lightning restores the checkpoint only after the setup hooks, where the callback runs.
    """
    state = torch.load(ckpt, map_location="cpu", weights_only=False)["state_dict"]
    bank = module.net.prototypes
    saved = [state.get(f"net.prototypes.{name}") for name in bank.buffer_names]
    if all(tensor is not None and tensor.numel() > 0 for tensor in saved):
        bank.set_prototypes(saved)


def _periodic_checkpoint(cfg: DictConfig, run_dir: Path) -> ModelCheckpoint:
    """``last.ckpt`` every ``checkpoint_minutes`` of training, so a killed job can ``resume=``.

    Time-based rather than per epoch: a small category has a few steps per epoch and
    700 epochs, and a 270 MB write per epoch (weights + Adam state) would cost more than the training.
    """
    interval = timedelta(minutes=cfg.checkpoint_minutes)
    return ModelCheckpoint(dirpath=run_dir / "checkpoints", save_last=True, save_top_k=0, train_time_interval=interval)


def predict(cfg: DictConfig) -> dict[str, Any]:
    """Score new images with a checkpoint; write ``scores.csv``, maps and overlays under the run directory."""
    ckpt = existing_checkpoint(cfg.ckpt_path, "ckpt_path")
    files, root = collect_images(cfg.input)
    run_dir = Path(cfg.paths.output_dir)
    module = module_from_checkpoint(ckpt)
    size = training_image_size(module, ckpt)
    device = torch.device(("cuda" if torch.cuda.is_available() else "cpu") if cfg.device == "auto" else cfg.device)
    start = time.perf_counter()
    writer = PredictionWriter(run_dir, root, cfg.threshold, cfg.save_maps)
    try:
        for paths, maps, scores in predict_batches(module, files, size, cfg.batch_size, cfg.num_workers, device):
            for path, anomaly_map, score in zip(paths, maps, scores):
                writer.write(path, anomaly_map, float(score))
    finally:
        writer.close()
    seconds = time.perf_counter() - start
    log.info("Scored %d images in %.1f s (%.3f s/image incl. decoding and writing): %s", writer.count, seconds, seconds / max(writer.count, 1), writer.csv_path)
    return {"images": writer.count, "scores_csv": str(writer.csv_path), "seconds": round(seconds, 2), "checkpoint": str(ckpt)}


def build_datamodule(cfg: DictConfig, run_dir: Path) -> L.LightningDataModule:
    """The configured datamodule, writing its split file into the run directory."""
    return hydra.utils.instantiate(cfg.dataset.datamodule, output_dir=str(run_dir), _convert_="partial")


def build_trainer(cfg: DictConfig, run_dir: Path, callbacks: list[L.Callback]) -> L.Trainer:
    """Lightning trainer with the configured loggers and a rich progress bar."""
    loggers = [hydra.utils.instantiate(conf) for conf in cfg.get("logger", {}).values()]
    callbacks = [*callbacks, *report_callbacks(loggers), RichProgressBar()]
    return hydra.utils.instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False)


def module_from_checkpoint(ckpt: Path) -> PRNModule:
    """The saved module, read from disk once; no encoder download, as the checkpoint has the weights."""
    checkpoint = torch.load(ckpt, map_location="cpu", weights_only=False)
    hparams = checkpoint["hyper_parameters"]
    net_config = {**hparams["net_config"], "encoder_weights": None, "allow_random_fallback": False}
    module = PRNModule(**{**hparams, "net_config": net_config})
    module.load_state_dict(checkpoint["state_dict"])
    return module


def _report(
    cfg: DictConfig,
    run_dir: Path,
    module: PRNModule,
    datamodule: L.LightningDataModule,
    start: float,
    header: dict[str, str],
    extra: dict[str, Any],
) -> dict[str, Any]:
    """Write ``results.json`` / ``results.md`` and print the table."""
    notes = []
    weights_report = module.net.encoder.weights_report
    if weights_report.startswith("random"):
        notes.append(f"encoder weights: {weights_report} — numbers are not comparable to an ImageNet encoder")
    notes.extend(f"{name} skipped: {reason}" for name, reason in module.metrics.skip_reasons.items())
    result = {
        **header,
        "metrics": module.test_results,
        "inference_seconds_per_image": round(module.inference_seconds_per_image, 4),
        "split": _split_counts(datamodule),
        "encoder_weights": weights_report,
        "notes": notes,
        "run_dir": str(run_dir),
        "config": OmegaConf.to_container(cfg, resolve=True),
        **provenance(cfg.seed, time.perf_counter() - start, extra),
    }
    write_results(run_dir, result)
    print_results(result)
    return result


def _split_counts(datamodule: L.LightningDataModule) -> dict[str, Any]:
    summary = datamodule.split_summary()
    return {key: value for key, value in summary.items() if not isinstance(value, list)}
