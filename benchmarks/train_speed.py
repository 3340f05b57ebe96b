"""Time the real training step (data + generation, forward, backward, optimiser) for float32, bf16, compile and
anomalies generated on the device (``generation.on_device``), with the share of each step spent waiting for data.

Each variant is the same Hydra training config as ``src/train.py`` with one switch
(``trainer.precision=bf16-mixed``, ``model.compile=true``), trained by Lightning's own fit
loop; a step is the time between two ``on_train_batch_end`` calls, so it includes fetching
and generating the next batch. Variants take turns in every round (the order reversed every
other round), so that load from other jobs on the machine falls on all of them alike; the
first ``--warmup`` steps of every fit are left out, and compile's first step is reported as
its compile time::

    python benchmarks/train_speed.py --root ../shared/data/mvtec_anomaly_detection --category bottle \\
        --weights ../shared/weights/resnet18_imagenet_layer4conv_random.pth --dtd ../shared/data/dtd/images

Without ``--root`` it trains on the embedded synthetic dataset (written under ``data/`` on
first use). Hydra overrides of the train config go after ``--``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import hydra
import lightning as L
import torch
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig
from rich.console import Console
from rich.table import Table

from prn.reporting.results import hardware
from prn.training import PRNModule
from prn.utils.hardware import cpu_bf16_support
from prn.utils.instantiation import build_datamodule, build_module

CONF = Path(__file__).resolve().parents[1] / "conf"
VARIANTS = {  # name -> overrides of the train config
    "float32": ["trainer.precision=32-true"],
    "bf16": ["trainer.precision=bf16-mixed"],
    "compile": ["trainer.precision=32-true", "model.compile=true"],
    "bf16+compile": ["trainer.precision=bf16-mixed", "model.compile=true"],
    "device-data": ["trainer.precision=32-true", "generation.on_device=true"],
    "bf16+device-data": ["trainer.precision=bf16-mixed", "generation.on_device=true"],
}
BASELINE = "float32"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", help="dataset root (MVTec layout); default: the synthetic dataset")
    parser.add_argument("--dataset", default="mvtec", help="dataset config used with --root")
    parser.add_argument("--category", help="category (default: the dataset's first)")
    parser.add_argument("--weights", default=None, help="encoder state dict (default: random; the timing is the same)")
    parser.add_argument("--dtd", help="DTD images/ folder (HEA); without it HEA is switched off")
    parser.add_argument("--size", type=int, default=256, help="square image size (multiple of 128)")
    parser.add_argument("--batches", type=int, nargs="+", default=[8, 32], help="batch sizes to time")
    parser.add_argument("--variants", nargs="+", default=["float32", "bf16", "compile"], choices=list(VARIANTS))
    parser.add_argument("--rounds", type=int, default=3, help="rounds; every variant trains once per round")
    parser.add_argument("--steps", type=int, default=3, help="timed steps per variant and round")
    parser.add_argument("--warmup", type=int, default=1, help="steps left out at the start of every fit")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("overrides", nargs="*", help="Hydra overrides of the train config (after --)")
    args = parser.parse_args(argv)
    if BASELINE not in args.variants:
        parser.error(f"--variants must include {BASELINE}: every ratio is taken to it")
    if args.steps < 1 or args.rounds < 1 or args.warmup < 0:
        parser.error("--steps and --rounds must be >= 1, --warmup >= 0")
    return args


@dataclass
class VariantTiming:
    """Wall and CPU seconds of every timed step of one variant at one batch size, and its first step ever."""

    batch_size: int
    variant: str
    steps: list[float] = field(default_factory=list)
    cpu_steps: list[float] = field(default_factory=list)
    first_step: float | None = None
    waits: list[float] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(self.steps)

    @property
    def cpu_median(self) -> float:
        return statistics.median(self.cpu_steps)

    @property
    def wait_share(self) -> float:
        """Share of the step spent getting the batch (loader, transfer, device generation), not in the model."""
        return sum(self.waits) / sum(self.steps) if self.waits else 0.0


class StepTimer(L.Callback):
    """Time between consecutive training-batch ends: fetch + generation + forward + backward + optimiser.

    Wall seconds, and CPU seconds of this process (all threads): on a CPU shared with other
    jobs the CPU time leaves out the waits for a core, though contention still inflates it
    (spinning threads, shared caches); on a GPU it mostly counts the wait in synchronize.
    ``waits``: the part of each step before the batch reaches the model (the loader's next batch,
    its transfer and ``on_after_batch_transfer``, where ``generation.on_device`` draws the anomalies).
    """

    def __init__(self) -> None:
        self.steps: list[float] = []
        self.cpu_steps: list[float] = []
        self.waits: list[float] = []
        self._last = (0.0, 0.0)

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._last = (time.perf_counter(), time.process_time())

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, *args: object) -> None:
        if pl_module.device.type == "cuda":
            torch.cuda.synchronize(pl_module.device)
        self.waits.append(time.perf_counter() - self._last[0])

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *args: object) -> None:
        if pl_module.device.type == "cuda":
            torch.cuda.synchronize(pl_module.device)
        now = (time.perf_counter(), time.process_time())
        self.steps.append(now[0] - self._last[0])
        self.cpu_steps.append(now[1] - self._last[1])
        self._last = now


def dataset_overrides(args: argparse.Namespace) -> list[str]:
    """The train-config overrides that select the data, encoder and image size."""
    overrides = [f"image_size={args.size}", f"seed={args.seed}", f"weights={args.weights or 'null'}"]
    if args.root:
        overrides += [f"dataset={args.dataset}", f"root={args.root}"]
    if args.category:
        overrides.append(f"category={args.category}")
    overrides.append(f"generation.dtd_dir={args.dtd}" if args.dtd else "generation.hea=false")
    return overrides


def compose_train_config(overrides: list[str]) -> DictConfig:
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose("train", overrides=overrides)


def fit_steps(cfg: DictConfig, module: PRNModule, datamodule: L.LightningDataModule, steps: int) -> StepTimer:
    """Train ``module`` for ``steps`` steps with the configured trainer (precision, accelerator); the step times."""
    timer = StepTimer()
    prototypes = hydra.utils.instantiate(cfg.callbacks.prototypes)  # computes them on the first fit, then keeps them
    trainer = hydra.utils.instantiate(
        cfg.trainer,
        callbacks=[prototypes, timer],
        logger=False,
        max_epochs=-1,
        max_steps=steps,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(module, datamodule=datamodule)
    return timer


def share_prototypes(prototypes: list[torch.Tensor] | None, modules: list[PRNModule]) -> None:
    """Give every module the prototypes clustered once: k-means is not part of a step (and the batch size does not change it)."""
    for module in modules:
        if prototypes is not None and module.net.needs_prototypes:
            module.net.set_prototypes(prototypes)


def clustered_prototypes(module: PRNModule) -> list[torch.Tensor] | None:
    return module.net.prototypes.prototypes() if module.net.needs_prototypes else None


def data_per_variant(configs: dict[str, DictConfig], work_dir: Path) -> dict[str, L.LightningDataModule]:
    """One datamodule per distinct data path (CPU workers or ``generation.on_device``), shared by the variants on it."""
    built: dict[bool, L.LightningDataModule] = {}
    for cfg in configs.values():
        on_device = bool(cfg.generation.on_device)
        if on_device not in built:
            built[on_device] = build_datamodule(cfg.dataset.datamodule, work_dir)
    return {name: built[bool(cfg.generation.on_device)] for name, cfg in configs.items()}


def time_batch_size(
    args: argparse.Namespace, batch_size: int, work_dir: Path, prototypes: list[torch.Tensor] | None
) -> tuple[list[VariantTiming], list[torch.Tensor] | None]:
    """Every variant at one batch size, interleaved over ``args.rounds`` rounds; the prototypes, clustered on the first fit."""
    torch.compiler.reset()  # compiled graphs of another batch size must not make this one's shapes dynamic
    base = [*dataset_overrides(args), f"batch_size={batch_size}", f"paths.output_dir={work_dir}", *args.overrides]
    configs = {name: compose_train_config([*base, *VARIANTS[name]]) for name in args.variants}
    datamodules = data_per_variant(configs, work_dir)
    L.seed_everything(args.seed, workers=True)
    modules = {name: build_module(cfg) for name, cfg in configs.items()}
    share_prototypes(prototypes, list(modules.values()))
    timings = {name: VariantTiming(batch_size, name) for name in args.variants}
    for round_index in range(args.rounds):
        order = args.variants if round_index % 2 == 0 else args.variants[::-1]
        for name in order:
            timer = fit_steps(configs[name], modules[name], datamodules[name], args.warmup + args.steps)
            if prototypes is None:
                prototypes = clustered_prototypes(modules[name])
                share_prototypes(prototypes, list(modules.values()))
            if timings[name].first_step is None:
                timings[name].first_step = timer.steps[0]
            timings[name].steps.extend(timer.steps[args.warmup :])
            timings[name].cpu_steps.extend(timer.cpu_steps[args.warmup :])
            timings[name].waits.extend(timer.waits[args.warmup :])
            print(
                f"batch {batch_size} round {round_index + 1} {name:>13}: wall "
                + " ".join(f"{s:.2f}" for s in timer.steps)
                + " s, CPU "
                + " ".join(f"{s:.2f}" for s in timer.cpu_steps)
                + " s",
                flush=True,
            )
    return list(timings.values()), prototypes


def results_table(timings: list[VariantTiming]) -> Table:
    """Median wall and CPU s/step with their ratios to float32 at the same batch size, images/s and compile time."""
    table = Table(title="training step (data + generation, forward, backward, optimiser)")
    for column in (
        "batch",
        "variant",
        "median s/step",
        "vs float32",
        "CPU s/step",
        "CPU vs float32",
        "images/s",
        "data wait",
        "steps",
        "compile s",
    ):
        table.add_column(column, justify="right")
    baselines = {t.batch_size: t for t in timings if t.variant == BASELINE}
    for t in timings:
        base = baselines[t.batch_size]
        compile_seconds = (
            f"{t.first_step - t.median:.0f}" if "compile" in t.variant and t.first_step is not None else "–"
        )
        table.add_row(
            str(t.batch_size),
            t.variant,
            f"{t.median:.3f}",
            f"{t.median / base.median:.2f}",
            f"{t.cpu_median:.3f}",
            f"{t.cpu_median / base.cpu_median:.2f}",
            f"{t.batch_size / t.median:.1f}",
            f"{t.wait_share:.0%}",
            str(len(t.steps)),
            compile_seconds,
        )
    return table


def machine_report() -> dict[str, object]:
    return {
        **hardware(),
        "threads": torch.get_num_threads(),
        "cpu_bf16": cpu_bf16_support(),
        "load_average": os.getloadavg(),
        "cuda": torch.cuda.is_available(),
    }


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    console = Console() if sys.stdout.isatty() else Console(width=160)  # a log file gets the whole table, unwrapped
    before = machine_report()
    console.print(f"machine: {before}")
    timings: list[VariantTiming] = []
    prototypes = None
    with tempfile.TemporaryDirectory(prefix="train_speed_") as work_dir:
        for batch_size in args.batches:
            batch_timings, prototypes = time_batch_size(
                args, batch_size, Path(work_dir) / f"batch{batch_size}", prototypes
            )
            timings += batch_timings
    after_load = os.getloadavg()
    console.print(results_table(timings))
    console.print(f"load average (1, 5, 15 min): before {before['load_average']}, after {after_load}")
    if args.json:
        report = {
            "machine": before,
            "load_average_after": after_load,
            "args": {k: str(v) for k, v in vars(args).items()},
            "timings": [
                {**asdict(t), "median": t.median, "cpu_median": t.cpu_median, "wait_share": t.wait_share}
                for t in timings
            ],
        }
        args.json.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
