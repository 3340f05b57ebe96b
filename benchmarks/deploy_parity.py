"""Exported models against their checkpoint on the checkpoint's own test split: parity and the four metrics.

    python benchmarks/deploy_parity.py --ckpt logs/train/runs/<run>/checkpoints/last.ckpt \\
        --models prn.onnx prn.xml prn.pt2 [--root /data/mvtec_anomaly_detection]

The test split is rebuilt from the checkpoint as ``prn-eval`` rebuilds it (seen anomalies left
out). Each model runs through :class:`prn.deploy.Inferencer` on the same prepared images as
the checkpoint; the script prints, per model, the largest absolute difference of maps and of
scores, and image AUROC, pixel AUROC, PRO and pixel AP next to the checkpoint's (in points).
It also checks that the inferencer's own preprocessing of the image files gives the test
set's pixels exactly.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import torch

from prn.checkpoints import module_from_checkpoint
from prn.deploy import Inferencer
from prn.deploy.images import prepare
from prn.metrics import AnomalyMetrics
from prn.utils.instantiation import build_datamodule

METRICS = ("image_auroc", "pixel_auroc", "pixel_aupro", "pixel_ap")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ckpt", type=Path, required=True)
    parser.add_argument(
        "--models", type=Path, nargs="+", required=True, help="files written by prn-export from this checkpoint"
    )
    parser.add_argument("--root", help="dataset folder, if it moved since training")
    parser.add_argument("--batch", type=int, default=8)
    return parser.parse_args()


def test_loader(module: torch.nn.Module, root: str | None, batch: int, folder: Path) -> torch.utils.data.DataLoader:
    data_config = dict(module.hparams.data_config)
    data_config.pop("name")
    if root is not None:
        data_config["root"] = root
    data_config.update(eval_batch_size=batch, num_workers=0)
    datamodule = build_datamodule(data_config, folder)
    datamodule.setup("test")
    return datamodule.test_dataloader()


class Comparison:
    """One model's running parity and metrics against the checkpoint."""

    def __init__(self, name: str) -> None:
        self.name, self.map_diff, self.score_diff, self.metrics = name, 0.0, 0.0, AnomalyMetrics()

    def update(
        self, maps: np.ndarray, scores: np.ndarray, reference: tuple[np.ndarray, np.ndarray], batch: dict
    ) -> None:
        self.map_diff = max(self.map_diff, float(np.abs(maps - reference[0]).max()))
        self.score_diff = max(self.score_diff, float(np.abs(scores - reference[1]).max()))
        self.metrics.update(torch.from_numpy(maps), batch.get("mask"), torch.from_numpy(scores), batch["label"])

    def results(self) -> dict[str, float]:
        return {name: 100.0 * value for name, value in self.metrics.compute().items() if name in METRICS}


def main() -> None:
    args = parse_args()
    module = module_from_checkpoint(args.ckpt).eval()
    inferencers = {path.name: Inferencer(path, batch_size=args.batch) for path in args.models}
    reference, comparisons = Comparison("checkpoint (eager)"), {name: Comparison(name) for name in inferencers}
    preprocessing_diff, images = 0.0, 0
    with tempfile.TemporaryDirectory() as folder:
        for batch in test_loader(module, args.root, args.batch, Path(folder)):
            pixels = batch["image"].numpy()
            prepared = np.stack([prepare(path, pixels.shape[-2:], i).pixels for i, path in enumerate(batch["path"])])
            preprocessing_diff = max(preprocessing_diff, float(np.abs(prepared - pixels).max()))
            with torch.no_grad():
                maps, scores = (t.numpy() for t in module.predict_maps_and_scores(batch["image"]))
            reference.update(maps, scores, (maps, scores), batch)
            for name, inferencer in inferencers.items():
                comparisons[name].update(*inferencer.run(pixels), (maps, scores), batch)
            images += len(pixels)
    print(
        f"{images} test images; inferencer preprocessing of the files vs the test set's pixels: max |diff| = {preprocessing_diff:g}"
    )
    expected = reference.results()
    print("\n| model | max abs diff, maps | max abs diff, scores | " + " | ".join(METRICS) + " |")
    print("|---|---|---|" + "---|" * len(METRICS))
    print(f"| {reference.name} | – | – | " + " | ".join(f"{expected[m]:.2f}" for m in METRICS) + " |")
    for comparison in comparisons.values():
        got = comparison.results()
        cells = " | ".join(f"{got[m]:.2f} ({got[m] - expected[m]:+.2f})" for m in METRICS)
        print(f"| {comparison.name} | {comparison.map_diff:.2e} | {comparison.score_diff:.2e} | {cells} |")


if __name__ == "__main__":
    main()
