"""Latency (batch 1) and throughput (batch 16) of one checkpoint in eager PyTorch, torch.export, ONNX Runtime and OpenVINO.

    python benchmarks/inference_speed.py --ckpt logs/train/runs/<run>/checkpoints/last.ckpt \\
        [--images data/parts/] [--export-dir exports/] [--repeats 5]

Every backend runs the same prepared images (the first ``--batch`` files of ``--images``
resized as training resizes them, or seeded noise at the training size): the model alone,
without decoding. Latency is the time per image when they go one at a time, throughput the
images per second of one batch; each is the median of ``--repeats`` timed runs after one
warm-up run. The backends take turns within each repeat, so that a change in what else runs
on the cores slows them alike. Exports missing from ``--export-dir`` are written there first
(prn.pt2, prn.onnx, prn.xml). The table ends with the load average: other jobs change everything.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from prn.checkpoints import module_from_checkpoint, training_image_size
from prn.deploy import Inferencer
from prn.deploy.images import expand_inputs, prepare
from prn.tools.export import default_output, export_checkpoint

BACKENDS = ("eager", "torch.export", "onnxruntime", "openvino")
EXPORT_FORMAT = {"torch.export": "torch", "onnxruntime": "onnx", "openvino": "openvino"}
Runner = Callable[[np.ndarray], object]


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ckpt", type=Path, required=True)
    parser.add_argument("--images", help="folder or file of images (default: seeded noise at the training size)")
    parser.add_argument("--export-dir", type=Path, help="reuse or write the exports here (default: a temporary folder)")
    parser.add_argument("--backends", nargs="+", default=list(BACKENDS), choices=BACKENDS)
    parser.add_argument("--batch", type=int, default=16, help="throughput batch size = number of images")
    parser.add_argument("--repeats", type=int, default=5)
    return parser.parse_args()


def benchmark_images(source: str | None, size: tuple[int, int], count: int) -> np.ndarray:
    """``[count, 3, H, W]`` float32 model inputs from the first files of ``source``, or seeded noise."""
    if source is None:
        noise = np.random.default_rng(0).integers(0, 256, (count, 3, *size)).astype(np.float32)
        return noise / np.float32(255.0)
    files = [file for _, file in zip(range(count), expand_inputs(source))]
    if len(files) < count:
        raise ValueError(f"--images {source} holds {len(files)} images; --batch {count} needs that many")
    return np.stack([prepare(file, size, index).pixels for index, file in enumerate(files)])


def eager_runner(ckpt: Path) -> Runner:
    module = module_from_checkpoint(ckpt).eval()

    def run(images: np.ndarray) -> object:
        with torch.inference_mode():
            return module.predict_maps_and_scores(torch.from_numpy(images))

    return run


def exported_runner(ckpt: Path, backend: str, export_dir: Path) -> Runner:
    model = default_output(export_dir, EXPORT_FORMAT[backend])
    if not model.is_file():
        print(f"exporting {model.name} ...", flush=True)
        export_checkpoint(ckpt, model, format=EXPORT_FORMAT[backend], max_batch=64)
    return Inferencer(model).run


def pass_seconds(run: Runner, images: np.ndarray, batch_size: int) -> float:
    """Seconds to run every image, ``batch_size`` at a time."""
    start = time.perf_counter()
    for first in range(0, len(images), batch_size):
        run(images[first : first + batch_size])
    return time.perf_counter() - start


def measure(runners: dict[str, Runner], images: np.ndarray, repeats: int) -> dict[str, tuple[float, float]]:
    """Per backend: (ms per image at batch 1, images per second at batch ``len(images)``), medians over ``repeats``.

    One untimed warm-up pass of each, then every repeat times every backend in turn.
    """
    count = len(images)
    timings: dict[tuple[str, int], list[float]] = {(name, size): [] for name in runners for size in (1, count)}
    for repeat in range(repeats + 1):
        for (name, size), runs in timings.items():
            elapsed = pass_seconds(runners[name], images, size)
            if repeat > 0:
                runs.append(elapsed)
    return {
        name: (1000.0 * statistics.median(timings[name, 1]) / count, count / statistics.median(timings[name, count]))
        for name in runners
    }


def print_table(results: dict[str, tuple[float, float]], batch: int) -> None:
    base_latency, base_throughput = results.get("eager", (float("nan"), float("nan")))
    print(f"\n| backend | latency, batch 1 (ms/image) | vs eager | throughput, batch {batch} (images/s) | vs eager |")
    print("|---|---|---|---|---|")
    for name, (latency, throughput) in results.items():
        print(
            f"| {name} | {latency:.1f} | {base_latency / latency:.2f}x | {throughput:.2f} | {throughput / base_throughput:.2f}x |"
        )


def machine_line() -> str:
    return (
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch threads {torch.get_num_threads()}, "
        f"load average {os.getloadavg()[0]:.2f}"
    )


def main() -> None:
    args = parse_args()
    module = module_from_checkpoint(args.ckpt)
    images = benchmark_images(args.images, training_image_size(module, args.ckpt), args.batch)
    del module
    print(f"{len(images)} images {images.shape[2]}x{images.shape[3]}; at start: {machine_line()}", flush=True)
    with tempfile.TemporaryDirectory() as scratch:
        export_dir = args.export_dir or Path(scratch)
        export_dir.mkdir(parents=True, exist_ok=True)
        runners = {
            backend: eager_runner(args.ckpt) if backend == "eager" else exported_runner(args.ckpt, backend, export_dir)
            for backend in args.backends
        }
        results = measure(runners, images, args.repeats)
    print_table(results, args.batch)
    print(f"\nmedian of {args.repeats} runs, the model only (no decoding); at end: {machine_line()}")


if __name__ == "__main__":
    main()
