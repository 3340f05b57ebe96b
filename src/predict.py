"""Score new images: ``python src/predict.py ckpt_path=<run>/checkpoints/last.ckpt input=parts/``."""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from prn.pipeline import predict


@hydra.main(config_path="../conf", config_name="predict", version_base="1.3")
def main(cfg: DictConfig) -> None:
    predict(cfg)


if __name__ == "__main__":
    main()
