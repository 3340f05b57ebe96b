"""Train PRN and test it: ``python src/train.py dataset=mvtec category=screw``."""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from prn.pipeline import train


@hydra.main(config_path="../conf", config_name="train", version_base="1.3")
def main(cfg: DictConfig) -> float:
    """Returns image AUROC so Hydra sweepers can optimise on it if asked to."""
    result = train(cfg)
    return result["metrics"].get("image_auroc", float("nan"))


if __name__ == "__main__":
    main()
