"""How well the held-out score selection predicts the test set, and what each selection rule scores.

For each finished run (a directory with ``checkpoints/last.ckpt`` that held normals out), the
network and patch-memory maps of the selection set (held-out normals and the generated anomalies
on them, exactly as training builds it) and of the test set are computed once and cached in the
run directory (``score_study.pt``; ``--fresh`` recomputes, and a change of how the selection set is
built, ``SELECTION_KEY``, recomputes the selection's). Every candidate (sigma, k, memory weight) is
then scored on both, and four rules are compared:

* ``paper``: (sigma 0, k 100, network alone), never looking at the data;
* ``prior``: :func:`prn.score_selection.prior_choice`, never looking at the data either (with patch
  memory: sigma 4, k 100, both maps evenly);
* ``point-best``: the candidate with the best validation objective;
* ``evidence``: :func:`prn.score_selection.choose_score`, the prior unless a candidate wins
  ``CONFIDENCE`` of the bootstrap resamples of the selection set (what training ships);
* ``evidence without <kind>``, for every held-out kind: the same rule on the selection set without that
  kind's anomalies, which shows what each kind does to the choice on the same checkpoint (over
  ``KIND_RESAMPLES`` bootstrap resamples rather than training's 200: one rerun per kind).

Every rule's choice is also scored on each held-out kind alone (``validation_by_kind``: the normals
against that kind's anomalies), to show which kinds a choice wins and loses.

Test numbers are only read after each rule has chosen on validation data; they never choose. Each
rule's test row is exact, from the metric the test step uses (image AUROC, pixel AUROC, PRO, pixel
AP, and the same per defect type); the rank correlation compares every candidate's (memory weights
below the rule's floor included, ``STUDY_WEIGHTS``) validation
objective with its test objective on a seeded pixel sample::

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
from prn.data.base import SELECTION_KEY
from prn.data.generation.held_out import kind_of
from prn.metrics.accumulator import AnomalyMetrics
from prn.metrics.image_score import top_k_mean
from prn.models.scorer import fused_maps, smooth_maps
from prn.score_selection import PAPER_CHOICE, choose_score, pixel_sample, score_candidates
from prn.utils.instantiation import build_datamodule

Key = tuple[float, int, float]
CACHE = "score_study.pt"
STUDY_WEIGHTS = (0.0, 0.25, 0.5, 0.75, 1.0)  # memory weights read, below the rule's floor too (network alone: 0)
KIND_RESAMPLES = 50  # the leave-one-kind-out rules' bootstrap: a quarter of training's, one study reruns it per kind


def run_maps(run_dir: Path, fresh: bool = False) -> dict[str, Any]:
    """The run's data config and the components (maps, memory maps, masks, labels) and defect types of its
    selection and test sets. Cached in the run directory: the test maps are reused unless ``fresh``; the
    selection's too, unless they were built another way (``SELECTION_KEY``)."""
    cache = run_dir / CACHE
    cached = {} if fresh or not cache.exists() else torch.load(cache, weights_only=False)
    if cached.get("selection_key") == list(SELECTION_KEY) and "test" in cached:
        return cached
    module = module_from_checkpoint(run_dir / "checkpoints" / "last.ckpt")
    data_config = dict(module.hparams.data_config)
    data_config.pop("name")
    data_config.update(num_workers=0, eval_batch_size=8)
    with tempfile.TemporaryDirectory() as scratch:
        datamodule = build_datamodule(data_config, Path(scratch))
        selection = datamodule.selection_dataloader()
        if selection is None:
            raise SystemExit(f"{run_dir} held no normals out (val_normals=0): there is no selection set to study")
        cached.update(validation=_components(module, selection), selection_key=list(SELECTION_KEY))
        if "test" not in cached:
            datamodule.setup("test")
            cached["test"] = _components(module, datamodule.test_dataloader())
    cached["data_config"] = data_config
    torch.save(cached, cache)
    return cached


def _components(module: Any, loader: Any) -> dict[str, Any]:
    return {
        "components": module.map_components(loader),
        "defect_types": [record.defect_type for record in loader.dataset.records],
    }


def candidate_scores(components: tuple) -> dict[Key, dict[str, float | None]]:
    """Image AUROC, sampled (region-balanced) pixel AUROC and their mean for every candidate on one image set,
    with every memory weight from 0 (``STUDY_WEIGHTS``), also those the rule may not choose."""
    maps, memory, masks, labels = components
    pixels = pixel_sample(masks, 0) if masks.any() else None
    return {
        (row["map_sigma"], row["top_k"], row["memory_weight"]): {
            name: row[name] for name in ("image_auroc", "pixel_auroc", "objective")
        }
        for row, _, _ in score_candidates(
            maps, labels.numpy().astype(int), pixels, memory_maps=memory, memory_weights=STUDY_WEIGHTS
        )
    }


def _subset(components: tuple, kinds: list[str | None], keep: set[str]) -> tuple:
    """The normals and the anomalies of the ``keep`` kinds of one selection set's components."""
    rows = torch.tensor([kind is None or kind in keep for kind in kinds])
    maps, memory, masks, labels = components
    return maps[rows], None if memory is None else memory[rows], masks[rows], labels[rows]


def test_metrics(components: tuple, defect_types: list[str], key: Key) -> dict[str, Any]:
    """Exact test metrics, overall and per defect type, with the maps scored as ``key`` scores them."""
    maps, memory, masks, labels = components
    sigma, k, weight = key
    smoothed = smooth_maps(fused_maps(maps.float(), None if memory is None else memory.float(), weight), sigma)
    metric = AnomalyMetrics()
    metric.update(smoothed, masks if masks.any() else None, top_k_mean(smoothed, k), labels, defect_types)
    return {**metric.compute(), "per_defect": metric.per_defect}


def study(run_dir: Path, fresh: bool = False) -> dict[str, Any]:
    start = time.perf_counter()
    study_maps = run_maps(run_dir, fresh)
    data_config, validation = study_maps["data_config"], study_maps["validation"]["components"]
    test, test_types = study_maps["test"]["components"], study_maps["test"]["defect_types"]
    maps, memory, masks, labels = validation
    evidence = choose_score(maps, masks, labels, memory_maps=memory)
    kinds = [kind_of(recorded) for recorded in study_maps["validation"]["defect_types"]]
    by_kind = {kind: candidate_scores(_subset(validation, kinds, {kind})) for kind in sorted(set(kinds) - {None})}
    eligible = [(c["map_sigma"], c["top_k"], c["memory_weight"]) for c in evidence.candidates]
    on_validation = {key: scores["objective"] for key, scores in candidate_scores(validation).items()}
    on_test = candidate_scores(test)
    keys = sorted(on_validation)
    prior = evidence.prior  # on the study's grid, as the paper's score is (every weight from 0)
    rules = {
        "paper": PAPER_CHOICE,
        "prior": prior,
        "point-best": max(eligible, key=lambda key: (round(on_validation[key], 6), key == prior)),  # ties: the prior
        "evidence": (evidence.map_sigma, evidence.top_k, evidence.memory_weight),
    }
    if len(by_kind) > 1:
        for left_out in by_kind:
            kept = _subset(validation, kinds, set(by_kind) - {left_out})
            without = choose_score(kept[0], kept[2], kept[3], memory_maps=kept[1], resamples=KIND_RESAMPLES)
            rules[f"evidence without {left_out}"] = (without.map_sigma, without.top_k, without.memory_weight)
    validation_order = np.argsort(np.argsort([-on_validation[key] for key in keys]))
    test_order = np.argsort(np.argsort([-on_test[key]["objective"] for key in keys]))
    return {
        "run": str(run_dir),
        "category": data_config["category"],
        "pose_jitter": data_config.get("pose_jitter"),
        "validation_images": int(labels.numel()),
        "selection_key": study_maps["selection_key"],
        "test_images": int(test[3].numel()),
        "evidence_win_rate": evidence.win_rate,
        "rank_correlation": float(np.corrcoef(validation_order, test_order)[0, 1]),  # Spearman: ranks' Pearson
        "rules": {
            name: {
                "choice": list(key),
                "validation_objective": on_validation[key],
                "validation_by_kind": {kind: scores[key]["objective"] for kind, scores in by_kind.items()},
                "test_objective": on_test[key]["objective"],
                "test": test_metrics(test, test_types, key),
            }
            for name, key in rules.items()
        },
        "seconds": round(time.perf_counter() - start, 1),
    }


def _metrics_line(metrics: dict[str, Any]) -> str:
    names = ("image_auroc", "pixel_auroc", "pixel_aupro", "pixel_ap")
    return " / ".join("-" if name not in metrics else f"{100 * metrics[name]:.1f}" for name in names)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--out", type=Path, default=Path("logs/benchmarks/score_choice.json"))
    parser.add_argument("--fresh", action="store_true", help=f"recompute the maps even where {CACHE} exists")
    args = parser.parse_args()
    torch.set_grad_enabled(False)
    results = []
    for run_dir in args.runs:
        result = study(run_dir, args.fresh)
        results.append(result)
        line = "  ".join(
            f"{name} {tuple(rule['choice'])}: {_metrics_line(rule['test'])}" for name, rule in result["rules"].items()
        )
        print(
            f"{run_dir.name}: {line}  (rank corr {result['rank_correlation']:.2f}, {result['seconds']} s)", flush=True
        )
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"results: {args.out}")


if __name__ == "__main__":
    main()
