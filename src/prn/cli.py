"""Console scripts (``prn-train``, ``prn-eval``, ``prn-predict``, ``prn-export``, ``prn-preview``).

Each is ``hydra.main`` around one job of :mod:`prn.pipeline` or :mod:`prn.tools`, reading
the configs installed with the package (``pkg://prn.conf``), so they run from any folder;
``src/train.py`` and friends call the same functions.
"""

from __future__ import annotations

from pathlib import Path

import hydra
from omegaconf import DictConfig

CONFIG_PATH = "pkg://prn.conf"


@hydra.main(config_path=CONFIG_PATH, config_name="train", version_base="1.3")
def train_main(cfg: DictConfig) -> float:
    """Train and test; returns image AUROC so Hydra sweepers can optimise on it if asked to."""
    from prn.pipeline import train

    return train(cfg)["metrics"].get("image_auroc", float("nan"))


@hydra.main(config_path=CONFIG_PATH, config_name="eval", version_base="1.3")
def eval_main(cfg: DictConfig) -> None:
    from prn.pipeline import evaluate

    evaluate(cfg)


@hydra.main(config_path=CONFIG_PATH, config_name="predict", version_base="1.3")
def predict_main(cfg: DictConfig) -> None:
    from prn.prediction.job import predict

    predict(cfg)


@hydra.main(config_path=CONFIG_PATH, config_name="export", version_base="1.3")
def export_main(cfg: DictConfig) -> None:
    from prn.checkpoints import readable_checkpoint
    from prn.tools.export import export_formats, export_outputs

    outputs = export_outputs(cfg.format, cfg.out, Path(cfg.paths.output_dir), cfg.precision)
    trusted = cfg.get("trust_checkpoint", False)  # every bad option failed above, before the checkpoint is read
    ckpt = readable_checkpoint(cfg.ckpt_path, "ckpt_path", trusted)
    for format, metadata in export_formats(ckpt, outputs, cfg.max_batch, cfg.precision, trusted).items():
        calibrated = "calibrated thresholds" if metadata["calibration"] else "no calibration (scores and maps only)"
        print(
            f"wrote {outputs[format]} ({format}, {cfg.precision}): input {metadata['input']['shape']}, {calibrated}, "
            f"{metadata['training']['encoder_weights']}"
        )


@hydra.main(config_path=CONFIG_PATH, config_name="preview", version_base="1.3")
def preview_main(cfg: DictConfig) -> None:
    from prn.tools.preview_generation import preview

    preview(cfg)
