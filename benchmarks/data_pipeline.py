"""Time the training-data pipeline: what each source costs per item, and batches per second.

On a GPU the network step is short, so anomaly generation (Perlin noise, DTD textures,
augmentations, pasting) on the CPU workers decides how fast a paper-schedule run goes.
This measures it with the same Hydra config as ``src/train.py`` (overrides after ``--``)::

    python benchmarks/data_pipeline.py --workers 0 2 -- dataset=mvtec category=bottle \\
        root=../shared/data/mvtec_anomaly_detection generation.dtd_dir=../shared/data/dtd/images

and projects the data-bound time of the configured schedule for ``--project-workers``. ``--devices cpu cuda``
also times the batched path (``generation.on_device=true``) on each device: the plan's transfer and the
``on_after_batch_transfer`` hook that draws the whole batch there, synchronised.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import hydra
import torch
from hydra import compose, initialize_config_dir
from lightning.pytorch.utilities import move_data_to_device
from omegaconf import DictConfig

from prn.data.training import ComposedBatchSampler, ComposedTrainingSet

CONF = Path(__file__).resolve().parents[1] / "conf"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, default=48, help="items timed per source")
    parser.add_argument(
        "--batches", type=int, default=6, help="batches timed per DataLoader setting (after one warm-up)"
    )
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 2], help="DataLoader worker counts to time")
    parser.add_argument("--threads", type=int, default=1, help="torch threads in the main process")
    parser.add_argument("--project-workers", type=int, default=16, help="workers assumed for the schedule projection")
    parser.add_argument("--devices", nargs="*", default=[], help="devices to time generation.on_device on (cpu, cuda)")
    parser.add_argument("overrides", nargs="*", help="Hydra overrides of the train config (after --)")
    return parser.parse_args()


def compose_train_config(overrides: list[str]) -> DictConfig:
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose("train", overrides=overrides)


def seconds_per_item(
    train_set: ComposedTrainingSet, sampler: ComposedBatchSampler, items: int
) -> dict[str, list[float]]:
    """Wall seconds of ``train_set[plan]`` for up to ``items`` plans of each source, in plan order."""
    timings: dict[str, list[float]] = {}
    for batch in sampler:
        for plan in batch:
            samples = timings.setdefault(plan[0], [])
            if len(samples) < items:
                start = time.perf_counter()
                train_set[plan]
                samples.append(time.perf_counter() - start)
        if all(len(samples) >= items for samples in timings.values()):
            break
    return timings


def batches_per_second(loader: torch.utils.data.DataLoader, batches: int) -> float:
    """Batches per second over ``batches`` batches, after one warm-up batch (worker start-up)."""
    iterator = iter(loader)
    next(iterator)
    start = time.perf_counter()
    for _ in range(batches):
        next(iterator)
    return batches / (time.perf_counter() - start)


def device_batches_per_second(datamodule, device: torch.device, batches: int) -> float:
    """Batches per second of the batched path on ``device`` (plan transfer + ``on_after_batch_transfer``), after a warm-up."""
    plans = iter(datamodule.train_dataloader())

    def make() -> None:
        datamodule.on_after_batch_transfer(move_data_to_device(next(plans), device), 0)
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    make()
    start = time.perf_counter()
    for _ in range(batches):
        make()
    return batches / (time.perf_counter() - start)


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    cfg = compose_train_config(args.overrides)
    start = time.perf_counter()
    datamodule = hydra.utils.instantiate(cfg.dataset.datamodule, num_workers=0, _convert_="partial")
    datamodule.setup("fit")
    print(f"setup(fit): {time.perf_counter() - start:.1f} s (decode, foreground masks, generators)")
    loader = datamodule.train_dataloader()
    train_set, sampler = loader.dataset, loader.batch_sampler
    print(
        f"dataset={cfg.dataset.name} category={cfg.category} image_size={cfg.image_size} batch={datamodule.batch_size} "
        f"composition={dict(datamodule.composition)} batches/epoch={len(sampler)}"
    )

    timings = seconds_per_item(train_set, sampler, args.items)
    for name, samples in timings.items():
        ordered = sorted(samples)
        print(
            f"  {name:<8} {1e3 * statistics.mean(samples):7.1f} ms/item mean, "
            f"{1e3 * ordered[int(0.95 * (len(ordered) - 1))]:7.1f} ms p95  ({len(samples)} items)"
        )
    cpu_per_batch = sum(
        datamodule.batch_size * fraction * statistics.mean(timings[name])
        for name, fraction in datamodule.composition.items()
        if name in timings
    )
    print(f"CPU time per batch of {datamodule.batch_size}: {cpu_per_batch:.2f} s")

    for workers in args.workers:
        datamodule.num_workers = workers
        rate = batches_per_second(datamodule.train_dataloader(), args.batches)
        print(f"DataLoader workers={workers}: {rate:.2f} batches/s = {rate * datamodule.batch_size:.0f} items/s")

    if args.devices:
        on_device = hydra.utils.instantiate(
            cfg.dataset.datamodule, num_workers=0, generate_on_device=True, _convert_="partial"
        )
        on_device.setup("fit")
        for name in args.devices:
            rate = device_batches_per_second(on_device, torch.device(name), args.batches)
            print(
                f"batched on {name} (generation.on_device): {rate:.2f} batches/s = {rate * on_device.batch_size:.0f} items/s"
            )

    steps = cfg.max_steps if cfg.max_steps > 0 else cfg.epochs * len(sampler)
    bound = steps * cpu_per_batch / args.project_workers
    print(
        f"schedule: {steps} steps; with {args.project_workers} workers the data alone needs >= "
        f"{bound:.0f} s ({cpu_per_batch / args.project_workers * 1e3:.0f} ms/step)"
    )


if __name__ == "__main__":
    main()
