"""Evaluate a checkpoint: ``python src/eval.py ckpt_path=logs/train/runs/<run>/checkpoints/last.ckpt``."""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from prn.pipeline import evaluate


@hydra.main(config_path="../conf", config_name="eval", version_base="1.3")
def main(cfg: DictConfig) -> None:
    evaluate(cfg)


if __name__ == "__main__":
    main()
