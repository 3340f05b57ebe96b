"""anomalib's PatchCore on exactly prn's split, scored by prn's own metric code, beside PRN.

The data come from prn's datamodule, composed from prn's Hydra config (``conf/train.yaml``)
as ``src/train.py`` would compose it, so the split (seed, seen anomalies removed from the
test set, image size, any extra override such as a data perturbation) is identical::

    python benchmarks/baselines.py --root ../shared/data/mvtec_anomaly_detection --category bottle \\
        --weights ../shared/weights/resnet18_imagenet_layer4conv_random.pth \\
        --prn-results logs/train/.../results.json -- dataset.datamodule.eval_batch_size=8

PatchCore (anomalib's ``PatchcoreModel``), set up as anomalib's paper defaults adapted to
prn's encoder: ResNet-18 trunk (``pre_trained=False``, then the *same* torchvision state
dict file prn uses is loaded, strictly, into timm's feature extractor), layers layer2 +
layer3, coreset sampling ratio 0.01, 9 neighbours, ImageNet normalisation, maps at the
input size and Gaussian-blurred (sigma 4) as anomalib returns them. It is unsupervised:
it is fitted on the normal training images only (``normal_dataloader()``, unaugmented)
and never sees the seen anomalies, which prn's datamodule has already taken out of the
test set. Metrics: ``prn.metrics.AnomalyMetrics``. Nothing is downloaded at run time.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # timm must never reach for the hub: weights come from a file

import hydra
import numpy as np
import torch
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig, OmegaConf
from PIL import Image
from rich.console import Console
from rich.table import Table

from prn.metrics import AnomalyMetrics
from prn.models.encoder import IMAGENET_MEAN, IMAGENET_STD, _read_state_dict_file
from prn.reporting.results import git_commit, hardware
from prn.utils.heatmap import overlay
from prn.utils.io import write_json_atomically

with warnings.catch_warnings():  # anomalib's package import touches deprecated timm / dinov2 modules
    warnings.simplefilter("ignore", FutureWarning)
    import anomalib
    from anomalib.models.image.patchcore.torch_model import PatchcoreModel

REPO = Path(__file__).resolve().parents[1]
CONF = REPO / "conf"
METRICS = ("image_auroc", "pixel_auroc", "pixel_aupro", "pixel_ap")
PATCHCORE = {
    "backbone": "resnet18",
    "layers": ["layer2", "layer3"],
    "coreset_sampling_ratio": 0.01,
    "num_neighbors": 9,
    "normalisation": {"mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD)},
    "anomaly_map": "nearest-neighbour patch distance, nearest upsampling to the input size, Gaussian blur sigma 4 (anomalib)",
    "image_score": "re-weighted max patch distance over 9 neighbours (anomalib, PatchCore paper eq. 7)",
}


# --------------------------------------------------------------------------- data


def compose_config(
    root: str | Path,
    category: str,
    weights: str | Path,
    *,
    dataset: str = "mvtec",
    seed: int = 0,
    seen: int = 10,
    image_size: int = 256,
    overrides: Sequence[str] = (),
) -> DictConfig:
    """prn's train config with the baseline's data settings, then any extra overrides (applied last)."""
    base = [
        f"dataset={dataset}",
        f"category={category}",
        f"root={root}",
        f"seed={seed}",
        f"seen={seen}",
        f"image_size={image_size}",
        "generation=none",
        f"weights={weights}",
    ]
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose("train", overrides=[*base, *overrides])


def build_datamodule(cfg: DictConfig) -> Any:
    """prn's datamodule from the composed config, set up for fit (normals) and test."""
    datamodule = hydra.utils.instantiate(cfg.dataset.datamodule, _convert_="partial")
    datamodule.setup("fit")
    datamodule.setup("test")
    return datamodule


def split_counts(datamodule: Any) -> dict[str, Any]:
    """The split summary without its file lists, as in prn's ``results.json`` (``split``)."""
    return {key: value for key, value in datamodule.split_summary().items() if not isinstance(value, list)}


# --------------------------------------------------------------------------- model


def build_patchcore(weights: str | Path) -> tuple[PatchcoreModel, dict[str, Any]]:
    """anomalib's PatchcoreModel with the trunk weights of ``weights`` (a torchvision resnet18 state dict).

    The timm feature extractor (``features_only``, cut after layer3) has torchvision's key
    names; every one of its keys must be in the file (strict load). Keys it has no layer
    for (layer4, fc) are listed as unused.
    """
    model = PatchcoreModel(
        layers=list(PATCHCORE["layers"]),
        backbone=PATCHCORE["backbone"],
        pre_trained=False,
        num_neighbors=PATCHCORE["num_neighbors"],
    )
    extractor = model.feature_extractor.feature_extractor
    state = _read_state_dict_file(Path(weights).expanduser())
    own = extractor.state_dict()
    missing = sorted(set(own) - set(state))
    if missing:
        raise KeyError(f"{weights}: no {missing[:5]}{'...' if len(missing) > 5 else ''} for PatchCore's resnet18 trunk")
    extractor.load_state_dict({key: state[key] for key in own}, strict=True)
    unused = sorted(set(state) - set(own))
    report = {
        "path": str(weights),
        "loaded_keys": len(own),
        "loaded_prefixes": _prefixes(own),
        "unused_keys": len(unused),
        "unused_prefixes": _prefixes(unused),
        "strict": True,
    }
    return model.eval(), report


def _prefixes(keys: Sequence[str]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for key in keys:
        counts[key.split(".")[0]] = counts.get(key.split(".")[0], 0) + 1
    return counts


def _normalise(images: torch.Tensor) -> torch.Tensor:
    mean = torch.tensor(IMAGENET_MEAN, device=images.device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=images.device).view(1, 3, 1, 1)
    return (images - mean) / std


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def fit_patchcore(model: PatchcoreModel, loader: Any, device: torch.device) -> dict[str, Any]:
    """Embed every normal training image, then coreset-subsample the memory bank; network and coreset timed, not loading."""
    model.train()  # PatchcoreModel stores embeddings in train mode; its extractor forces itself to eval (frozen BN)
    extraction = 0.0
    images = 0
    for batch in loader:
        inputs = _normalise(batch["image"].to(device))
        _sync(device)
        start = time.perf_counter()
        model(inputs)
        _sync(device)
        extraction += time.perf_counter() - start
        images += inputs.shape[0]
    patches = sum(embedding.shape[0] for embedding in model.embedding_store)
    start = time.perf_counter()
    with warnings.catch_warnings():  # anomalib's deprecation decorator warns although no ``embeddings`` is passed
        warnings.simplefilter("ignore", DeprecationWarning)
        model.subsample_embedding(PATCHCORE["coreset_sampling_ratio"])
    _sync(device)
    coreset = time.perf_counter() - start
    model.eval()
    return {
        "train_images": images,
        "patches": patches,
        "memory_bank": list(model.memory_bank.shape),
        "extraction_seconds": round(extraction, 2),
        "coreset_seconds": round(coreset, 2),
        "fit_seconds": round(extraction + coreset, 2),
    }


def map_examples(datamodule: Any, count: int) -> list[int]:
    """Test indices to render: one good image, then the first image of each defect type, up to ``count``."""
    chosen: list[int] = []
    types: set[str] = set()
    records = datamodule.split.test
    order = sorted(range(len(records)), key=lambda index: records[index].label)  # the good ones first (stable)
    for index in order:
        if len(chosen) >= count:
            break
        if records[index].defect_type not in types:
            types.add(records[index].defect_type)
            chosen.append(index)
    return sorted(chosen)


@torch.no_grad()
def test_patchcore(
    model: PatchcoreModel, loader: Any, device: torch.device, keep: Sequence[int] = ()
) -> tuple[dict[str, float], dict[str, Any], dict[int, dict[str, Any]]]:
    """prn's metrics over the test loader; inference (network + kNN + scoring) timed per batch, not loading."""
    metrics = AnomalyMetrics()
    seconds, images = 0.0, 0
    low, high = float("inf"), float("-inf")
    kept: dict[int, dict[str, Any]] = {}
    keep = set(keep)
    for batch in loader:
        inputs = _normalise(batch["image"].to(device))
        _sync(device)
        start = time.perf_counter()
        output = model(inputs)
        _sync(device)
        seconds += time.perf_counter() - start
        maps, scores = output.anomaly_map.float().cpu(), output.pred_score.float().cpu()
        metrics.update(maps, batch.get("mask"), scores, batch["label"], batch.get("defect_type"))
        low, high = min(low, float(maps.min())), max(high, float(maps.max()))
        for offset in range(inputs.shape[0]):
            if images + offset in keep:
                kept[images + offset] = {
                    "image": batch["image"][offset],
                    "map": maps[offset, 0],
                    "score": float(scores[offset]),
                    "mask": None if batch.get("mask") is None else batch["mask"][offset, 0],
                    "path": batch["path"][offset],
                    "defect_type": batch["defect_type"][offset],
                }
        images += inputs.shape[0]
    results = metrics.compute()
    timing = {
        "test_images": images,
        "inference_seconds": round(seconds, 3),
        "inference_seconds_per_image": round(seconds / max(images, 1), 5),
        "ms_per_image": round(1e3 * seconds / max(images, 1), 2),
        "map_range": [low, high],
        "skipped_metrics": dict(metrics.skip_reasons),
        "per_defect": metrics.per_defect,  # each defect type against all good images, as in prn's results.json
    }
    return results, timing, kept


def save_maps(kept: dict[int, dict[str, Any]], value_range: Sequence[float], folder: Path) -> list[str]:
    """PNG per kept test image: image | ground truth | map overlay, on one scale for the whole test set."""
    folder.mkdir(parents=True, exist_ok=True)
    low, high = value_range
    written = []
    for index, item in sorted(kept.items()):
        image = (item["image"].permute(1, 2, 0).numpy() * 255 + 0.5).clip(0, 255).astype(np.uint8)
        values = ((item["map"].numpy() - low) / max(high - low, 1e-12)).clip(0, 1)
        mask = np.zeros(values.shape) if item["mask"] is None else item["mask"].numpy()
        mask_rgb = np.repeat((mask * 255).astype(np.uint8)[..., None], 3, axis=2)
        gap = np.full((image.shape[0], 4, 3), 255, dtype=np.uint8)
        panel = np.concatenate([image, gap, mask_rgb, gap, overlay(image, values)], axis=1)
        path = folder / f"{index:03d}_{item['defect_type']}_score{item['score']:.2f}.png"
        Image.fromarray(panel).save(path)
        written.append(str(path))
    return written


# --------------------------------------------------------------------------- run


def run_baseline(
    root: str | Path,
    category: str,
    weights: str | Path,
    *,
    dataset: str = "mvtec",
    seed: int = 0,
    seen: int = 10,
    image_size: int = 256,
    overrides: Sequence[str] = (),
    device: str = "auto",
    maps_dir: str | Path | None = None,
    num_maps: int = 3,
) -> dict[str, Any]:
    """Fit and test PatchCore on prn's split; returns everything ``results.json``-like (no printing)."""
    wall = time.perf_counter()
    torch_device = torch.device(
        "cuda" if device == "auto" and torch.cuda.is_available() else ("cpu" if device == "auto" else device)
    )
    cfg = compose_config(
        root, category, weights, dataset=dataset, seed=seed, seen=seen, image_size=image_size, overrides=overrides
    )
    torch.manual_seed(cfg.seed)  # coreset: torch draws the start point, numpy's global RNG the random projection
    np.random.seed(cfg.seed)
    datamodule = build_datamodule(cfg)
    model, weights_report = build_patchcore(cfg.weights)  # the path given, unless an override after -- changed it
    model.to(torch_device)
    fit = fit_patchcore(model, datamodule.normal_dataloader(), torch_device)
    keep = map_examples(datamodule, num_maps) if maps_dir is not None and num_maps > 0 else []
    metrics, timing, kept = test_patchcore(model, datamodule.test_dataloader(), torch_device, keep)
    summary = datamodule.split_summary()
    split = split_counts(datamodule)
    counts = split["counts"]
    return {
        "method": "patchcore",
        "library": f"anomalib {anomalib.__version__}",
        "dataset": cfg.dataset.name,
        "category": cfg.category,
        "metrics": metrics,
        **fit,
        **timing,
        "patchcore": {**PATCHCORE, "image_size": list(datamodule.image_size)},
        "encoder_weights": weights_report,
        "split": split,
        "split_files": {key: value for key, value in summary.items() if isinstance(value, list)},
        "notes": [
            f"PatchCore is unsupervised: fitted on the {counts['train_normal']} normal training images only; "
            f"it never sees the {counts['seen_anomalies']} seen anomalies (prn trains on them), which are "
            f"removed from the test set of both methods ({counts['test']} test images: "
            f"{counts['test_good']} good, {counts['test_anomalous']} anomalous).",
        ],
        "maps": [] if not kept else save_maps(kept, timing["map_range"], Path(maps_dir)),
        "overrides": list(overrides),
        "config": {"dataset": OmegaConf.to_container(cfg.dataset.datamodule, resolve=True), "weights": cfg.weights},
        "device": str(torch_device),
        "torch_threads": torch.get_num_threads(),
        "load_average": list(os.getloadavg()),
        "seed": cfg.seed,
        "git_commit": git_commit(),
        "hardware": hardware(),
        "wall_seconds": round(time.perf_counter() - wall, 1),
    }


# --------------------------------------------------------------------------- PRN row and table


def prn_row(path: str | Path, result: dict[str, Any]) -> dict[str, Any]:
    """PRN's row from a prn run's ``results.json``, and whether its split is PatchCore's."""
    prn = json.loads(Path(path).read_text())
    theirs, ours = prn.get("split", {}).get("counts", {}), result["split"]["counts"]
    same = {key: theirs.get(key) == value for key, value in ours.items() if key in theirs}
    mismatch = [key for key, equal in same.items() if not equal]
    if prn.get("category") not in (None, result["category"]):
        mismatch.append("category")
    ours_split = {"image_size": result["patchcore"]["image_size"], **result["split"]}
    for key in ("seed", "image_size", "pose_jitter"):  # what else decides the split / the pixels, where both record it
        if key in prn.get("split", {}) and key in ours_split and prn["split"][key] != ours_split[key]:
            mismatch.append(key)
    if "test" not in theirs:
        mismatch.append("test (not in results.json)")
    inference = prn.get("inference_seconds_per_image")
    return {
        "path": str(path),
        "metrics": {key: prn.get("metrics", {}).get(key) for key in METRICS},
        "train_seconds": prn.get("train_seconds"),
        "seconds_per_step": prn.get("seconds_per_step"),
        "steps": prn.get("steps"),
        "ms_per_image": None if inference is None else round(1e3 * inference, 2),
        "hardware": prn.get("hardware"),
        "split_counts": theirs,
        "split_matches": not mismatch,
        "split_mismatch": mismatch,
    }


def _cell(value: float | None, scale: float = 100.0, digits: int = 2) -> str:
    return "–" if value is None else f"{scale * value:.{digits}f}"


def print_table(result: dict[str, Any], console: Console | None = None) -> None:
    console = console or Console()
    counts = result["split"]["counts"]
    table = Table(
        title=(
            f"{result['dataset']} / {result['category']} · seed {result['seed']} · "
            f"{'×'.join(map(str, result['patchcore']['image_size']))} px · test {counts['test']} images "
            f"({counts['test_good']} good, {counts['test_anomalous']} anomalous)"
        )
    )
    for column in ("method", "image AUROC", "pixel AUROC", "PRO", "pixel AP", "fit s", "ms/image"):
        table.add_column(column, justify="left" if column == "method" else "right", no_wrap=True)
    m = result["metrics"]
    table.add_row(
        "PatchCore",
        *(_cell(m.get(key)) for key in METRICS),
        f"{result['fit_seconds']:.1f}",
        f"{result['ms_per_image']:.1f}",
    )
    prn = result.get("prn")
    if prn is not None:
        fit = prn["train_seconds"]
        table.add_row(
            "PRN" if prn["split_matches"] else "[red]PRN*[/red]",
            *(_cell(prn["metrics"].get(key)) for key in METRICS),
            "–" if fit is None else f"{fit:.0f}",
            "–" if prn["ms_per_image"] is None else f"{prn['ms_per_image']:.1f}",
        )
    console.print(table)
    for note in result["notes"]:
        console.print(f"[yellow]note:[/yellow] {note}")
    pc = result["patchcore"]
    console.print(
        f"[yellow]note:[/yellow] PatchCore = {result['library']} PatchcoreModel: {pc['backbone']} {'+'.join(pc['layers'])}, "
        f"coreset ratio {pc['coreset_sampling_ratio']}, {pc['num_neighbors']} neighbours, ImageNet normalisation, "
        f"maps at the input size blurred as anomalib does; metrics by prn.metrics.AnomalyMetrics."
    )
    weights = result["encoder_weights"]
    console.print(
        f"[yellow]note:[/yellow] trunk weights {weights['path']}: {weights['loaded_keys']} keys loaded strictly "
        f"({', '.join(weights['loaded_prefixes'])}); unused {weights['unused_keys']} ({', '.join(weights['unused_prefixes']) or 'none'})."
    )
    console.print(
        f"[yellow]note:[/yellow] fit = feature extraction {result['extraction_seconds']:.1f} s + coreset "
        f"{result['coreset_seconds']:.1f} s ({result['patches']} patches -> memory bank {result['memory_bank'][0]}); "
        f"ms/image = network + kNN + scoring, batches of {result['config']['dataset']['eval_batch_size']}, no data loading; "
        f"device {result['device']}, {result['torch_threads']} threads, load average {result['load_average'][0]:.1f}."
    )
    if prn is not None:
        if not prn["split_matches"]:
            console.print(
                f"[red]warning: PRN* split differs[/red] ({', '.join(prn['split_mismatch'])}): {prn['path']} has "
                f"{prn['split_counts']}, PatchCore {counts}; the rows are not comparable.",
                soft_wrap=True,
            )
        console.print(
            f"[yellow]note:[/yellow] PRN fit s = its train_seconds ({prn['steps']} steps, {prn['seconds_per_step']} s/step) "
            f"on {prn['hardware'] or 'unrecorded hardware'}; PatchCore's times are from this machine."
        )
    for path in result["maps"]:
        console.print(f"map: {path}", soft_wrap=True)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", required=True, help="dataset root, e.g. ../shared/data/mvtec_anomaly_detection")
    parser.add_argument("--category", required=True)
    parser.add_argument("--weights", required=True, help="torchvision resnet18 state dict (.pth), the file prn uses")
    parser.add_argument("--dataset", default="mvtec", help="prn dataset config (conf/dataset/<name>.yaml)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--seen", type=int, default=10, help="seen anomalies prn trains on (taken out of the test set)")
    parser.add_argument("--image-size", type=int, default=256)
    parser.add_argument("--device", default="auto", help="auto (cuda if present), cpu or cuda")
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="JSON (default logs/baselines/patchcore_<dataset>_<category>_seed<seed>.json)",
    )
    parser.add_argument("--maps", type=int, default=3, help="anomaly-map PNGs to save beside the JSON (0: none)")
    parser.add_argument(
        "--prn-results", type=Path, default=None, help="a prn run's results.json, printed as a second row"
    )
    parser.add_argument("overrides", nargs="*", help="extra Hydra overrides of prn's train config (after --)")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    out = args.out or REPO / "logs" / "baselines" / f"patchcore_{args.dataset}_{args.category}_seed{args.seed}.json"
    maps_dir = out.with_name(out.stem + "_maps") if args.maps > 0 else None
    result = run_baseline(
        args.root,
        args.category,
        args.weights,
        dataset=args.dataset,
        seed=args.seed,
        seen=args.seen,
        image_size=args.image_size,
        overrides=args.overrides,
        device=args.device,
        maps_dir=maps_dir,
        num_maps=args.maps,
    )
    result["command"] = shlex.join(["python", *sys.argv]) if argv is None else shlex.join(["python", __file__, *argv])
    result["cwd"] = os.getcwd()
    if args.prn_results is not None:
        result["prn"] = prn_row(args.prn_results, result)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomically(out, result, default=str)
    print_table(result)
    Console().print(f"results: {out}", soft_wrap=True)
    return result


if __name__ == "__main__":
    main()
