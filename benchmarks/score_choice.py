"""How well the held-out score selection predicts the test set, and what each selection rule would have scored.

For each finished run (a directory with ``checkpoints/last.ckpt`` that held normals out), the
network and patch-memory maps of the selection set (held-out normals and one generated anomaly
on each, exactly as training built it) and of the test set are computed once. Every candidate
(sigma, k, memory weight) is then scored on both, and three rules are compared:

* ``paper``: (sigma 0, k 100, network alone), never looking at the data;
* ``point-best``: the candidate with the best validation objective (the rule before evidence);
* ``evidence``: :func:`prn.score_selection.choose_score`, the paper's choice unless a candidate
  wins ``CONFIDENCE`` of the bootstrap resamples of the selection set.

Test numbers are only read after each rule has chosen on validation data; they never choose.
Test image AUROC is exact; test pixel AUROC is computed on the same seeded pixel sample as the
selection's (200 000 per class)::

    python benchmarks/score_choice.py logs/train/runs/<run> [<run> ...] --out logs/benchmarks/score_choice.json
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from prn.checkpoints import module_from_checkpoint
from prn.score_selection import PAPER_CHOICE, choose_score, pixel_sample, score_candidates
from prn.utils.instantiation import build_datamodule

Key = tuple[float, int, float]


def run_maps(run_dir: Path) -> tuple[dict[str, Any], tuple, tuple]:
    """The run's data config and the (maps, memory maps, masks, labels) of its selection and test sets."""
    module = module_from_checkpoint(run_dir / "checkpoints" / "last.ckpt")
    data_config = dict(module.hparams.data_config)
    data_config.pop("name")
    data_config.update(num_workers=0, eval_batch_size=8)
    with tempfile.TemporaryDirectory() as scratch:
        datamodule = build_datamodule(data_config, Path(scratch))
        selection = datamodule.selection_dataloader()
        if selection is None:
            raise SystemExit(f"{run_dir} held no normals out (val_normals=0): there is no selection set to study")
        validation = module.map_components(selection)
        datamodule.setup("test")
        test = module.map_components(datamodule.test_dataloader())
    return data_config, validation, test


def candidate_scores(components: tuple) -> dict[Key, dict[str, float | None]]:
    """Image AUROC, sampled pixel AUROC and their mean for every candidate on one image set."""
    maps, memory, masks, labels = components
    pixels = pixel_sample(masks, 0) if masks.any() else None
    return {
        (row["map_sigma"], row["top_k"], row["memory_weight"]): {
            name: row[name] for name in ("image_auroc", "pixel_auroc", "objective")
        }
        for row, _, _ in score_candidates(maps, labels.numpy().astype(int), pixels, memory_maps=memory)
    }


def study(run_dir: Path) -> dict[str, Any]:
    start = time.perf_counter()
    data_config, validation, test = run_maps(run_dir)
    maps, memory, masks, labels = validation
    evidence = choose_score(maps, masks, labels, memory_maps=memory)
    point_best = choose_score(maps, masks, labels, memory_maps=memory, confidence=0)
    keys = [(c["map_sigma"], c["top_k"], c["memory_weight"]) for c in evidence.candidates]
    on_validation = {key: c["objective"] for key, c in zip(keys, evidence.candidates)}
    on_test = candidate_scores(test)
    rules = {
        "paper": PAPER_CHOICE if PAPER_CHOICE in on_test else keys[0],
        "point-best": (point_best.map_sigma, point_best.top_k, point_best.memory_weight),
        "evidence": (evidence.map_sigma, evidence.top_k, evidence.memory_weight),
    }
    validation_order = np.argsort(np.argsort([-on_validation[key] for key in keys]))
    test_order = np.argsort(np.argsort([-on_test[key]["objective"] for key in keys]))
    return {
        "run": str(run_dir),
        "category": data_config["category"],
        "pose_jitter": data_config.get("pose_jitter"),
        "validation_images": int(labels.numel()),
        "test_images": int(test[3].numel()),
        "evidence_win_rate": evidence.win_rate,
        "rank_correlation": float(np.corrcoef(validation_order, test_order)[0, 1]),  # Spearman: ranks' Pearson
        "rules": {
            name: {"choice": list(key), "validation_objective": on_validation[key], **on_test[key]}
            for name, key in rules.items()
        },
        "seconds": round(time.perf_counter() - start, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--out", type=Path, default=Path("logs/benchmarks/score_choice.json"))
    args = parser.parse_args()
    torch.set_grad_enabled(False)
    results = []
    for run_dir in args.runs:
        result = study(run_dir)
        results.append(result)
        line = "  ".join(
            f"{name} {tuple(rule['choice'])}: test img {100 * rule['image_auroc']:.1f}"
            + ("" if rule["pixel_auroc"] is None else f" pix {100 * rule['pixel_auroc']:.1f}")
            for name, rule in result["rules"].items()
        )
        print(
            f"{run_dir.name}: {line}  (rank corr {result['rank_correlation']:.2f}, {result['seconds']} s)", flush=True
        )
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"results: {args.out}")


if __name__ == "__main__":
    main()
