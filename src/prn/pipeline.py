"""Train-then-test and evaluate-a-checkpoint jobs, driven by a composed Hydra config (predict: :mod:`prn.prediction.job`).

Every object of a run is built from the config by ``_target_`` (datamodule, module with its
network, loss and optimiser, callbacks, loggers, trainer; :mod:`prn.utils.instantiation`);
these functions only wire them: instantiate, fit, test, report. ``prn.cli`` (``prn-train``, ``src/train.py``, ...) wraps
them in ``hydra.main``; tests call them directly with ``hydra.compose``.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import lightning as L
from omegaconf import DictConfig

from prn.calibration import Calibration, ThresholdChoice, fit_calibration, parse_threshold
from prn.checkpoints import (
    install_saved_prototypes,
    module_from_checkpoint,
    readable_checkpoint,
)
from prn.reporting.run import report_run
from prn.training import PRNModule, PrototypeCallback, TrainingTimer
from prn.utils.config_tree import print_and_save_config
from prn.utils.instantiation import build_datamodule, build_module, build_trainer, find_callback, instantiate_group

log = logging.getLogger(__name__)


def train(cfg: DictConfig) -> dict[str, Any]:
    """Fit PRN (or go on from ``resume=``), then test the weights of the last step (never a test-selected epoch)."""
    run_dir = Path(cfg.paths.output_dir)
    trusted = cfg.get("trust_checkpoint", False)
    resume = None if cfg.get("resume") is None else readable_checkpoint(cfg.resume, "resume", trusted)
    print_and_save_config(cfg, run_dir)
    L.seed_everything(cfg.seed, workers=True)
    start = time.perf_counter()
    datamodule = build_datamodule(cfg.dataset.datamodule, run_dir)
    datamodule.check_fit_inputs()  # a missing DTD folder fails now, not after minutes of decoding and foregrounds
    module = build_module(cfg, image_size=datamodule.image_size)
    if resume is not None:
        install_saved_prototypes(module, resume, trusted)
    trainer = build_trainer(cfg, instantiate_group(cfg.get("callbacks")))
    trainer.fit(module, datamodule=datamodule, ckpt_path=resume, weights_only=not trusted)
    train_seconds = time.perf_counter() - start
    if cfg.get("select_score", False):
        select_score(module, datamodule)
    module.calibration = calibrate(module, datamodule, cfg.calibration.fpr)
    checkpoint = run_dir / "checkpoints" / "last.ckpt"
    trainer.save_checkpoint(checkpoint, weights_only=False)  # optimiser state too: resume= needs it
    trainer.test(module, datamodule=datamodule, verbose=False)
    timer, prototypes = find_callback(trainer, TrainingTimer), find_callback(trainer, PrototypeCallback)
    extra = {
        "train_seconds": round(train_seconds, 1),
        "steps": trainer.global_step,
        "world_size": trainer.world_size,
        "precision": trainer.precision,
        "seconds_per_step": None if timer is None else round(timer.seconds_per_step(trainer.global_step), 3),
        "prototype_seconds": None if prototypes is None else round(prototypes.seconds, 1),
        "checkpoint": str(checkpoint),
        "resumed_from": None if resume is None else str(resume),
    }
    header = {"dataset": cfg.dataset.name, "category": cfg.category}
    return report_run(cfg, run_dir, module, datamodule, start, header, extra, ThresholdChoice("auto"))


def evaluate(cfg: DictConfig) -> dict[str, Any]:
    """Test a checkpoint; architecture, prototypes and weights all come from the file."""
    run_dir = Path(cfg.paths.output_dir)
    trusted = cfg.get("trust_checkpoint", False)
    ckpt = readable_checkpoint(cfg.ckpt_path, "ckpt_path", trusted)
    threshold = parse_threshold(cfg.get("threshold", "auto"))
    print_and_save_config(cfg, run_dir)
    start = time.perf_counter()
    saved = module_from_checkpoint(ckpt, trusted)
    data_config = dict(saved.hparams.data_config)
    dataset_name = data_config.pop("name")
    overrides = {key: cfg[key] for key in ("root", "category") if cfg.get(key) is not None}
    data_config.update(overrides, eval_batch_size=cfg.batch_size, num_workers=cfg.num_workers)
    datamodule = build_datamodule(data_config, run_dir)
    trainer = build_trainer(cfg, instantiate_group(cfg.get("callbacks")))
    trainer.test(saved, datamodule=datamodule, verbose=False)
    header = {"dataset": dataset_name, "category": data_config["category"]}
    return report_run(cfg, run_dir, saved, datamodule, start, header, {"checkpoint": str(ckpt)}, threshold)


def select_score(module: PRNModule, datamodule: L.LightningDataModule) -> None:
    """Choose map smoothing, top-k and (with patch memory) the memory's weight on held-out normals and anomalies
    of held-out kinds built on them; keep the configured ones without."""
    loader = datamodule.selection_dataloader() if hasattr(datamodule, "selection_dataloader") else None
    if loader is None:
        log.info(
            "No held-out normals: the configured score is kept (top_k=%d, map_sigma=%g)",
            module.hparams.top_k,
            module.hparams.map_sigma,
        )
        return
    choice = module.choose_score(loader)
    module.apply_score_choice(choice)
    log.info(
        "Score chosen on %d held-out normals and %d held-out anomalies: map_sigma=%g, top_k=%d, memory_weight=%g "
        "(validation image AUROC %.4f, region-balanced pixel AUROC %s)",
        choice.num_normals,
        choice.num_anomalies,
        choice.map_sigma,
        choice.top_k,
        choice.memory_weight,
        choice.val_image_auroc,
        "n/a" if choice.val_pixel_auroc is None else f"{choice.val_pixel_auroc:.4f}",
    )


def calibrate(module: PRNModule, datamodule: L.LightningDataModule, fpr: float) -> Calibration | None:
    """Thresholds fitted on the held-out normals (``val_normals``), or None when the run held none out."""
    loader = datamodule.calibration_dataloader()
    if loader is None:
        log.info("No held-out normal images (val_normals=0): no calibrated OK/NG threshold; scores and maps only.")
        return None
    scores, maxima = module.score_held_out_normals(loader)
    calibration = fit_calibration(scores, maxima, fpr)
    log.info(
        "Calibrated on %d held-out normals at FPR %.3g: image threshold %.4f, pixel threshold %.4f%s",
        calibration.num_images,
        fpr,
        calibration.image_threshold,
        calibration.pixel_threshold,
        ""
        if fpr >= calibration.resolvable_fpr
        else f" (FPR {fpr:g} is below 1/{calibration.num_images}: the threshold is the largest held-out score)",
    )
    return calibration
