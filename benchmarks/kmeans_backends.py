"""k-means of the prototypes by faiss and by torch (``prototypes.kmeans_backend``): inertia and time.

The real input: the frozen encoder's layer1-3 maps of a category's normal training images, clustered
into K = ratio x N prototypes per scale with the same seed and iterations::

    python benchmarks/kmeans_backends.py --images ../shared/data/mvtec_anomaly_detection/bottle/train/good \\
        --weights ../shared/weights/resnet18_imagenet_layer4conv_random.pth --devices cpu cuda
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table

from prn.data.image_io import decode_images
from prn.data.training import image_tensor
from prn.models import PRNet
from prn.models.kmeans import inertia, kmeans_prototypes
from prn.reporting.results import hardware


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=Path, required=True, help="folder of normal training images")
    parser.add_argument("--weights", required=True, help="encoder weights (ImageNet ResNet-18)")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--ratio", type=float, default=0.1)
    parser.add_argument("--iterations", type=int, default=300)
    parser.add_argument("--devices", nargs="+", default=["cpu"], help="devices for the torch backend")
    return parser.parse_args(argv)


@torch.no_grad()
def normal_maps(args: argparse.Namespace) -> list[torch.Tensor]:
    """``[N, c*h*w]`` per scale: the maps the prototype callback clusters."""
    paths = sorted(p for p in args.images.iterdir() if p.suffix.lower() in {".png", ".jpg", ".jpeg", ".bmp"})
    net = PRNet(encoder_weights=args.weights).eval()
    per_scale: list[list[torch.Tensor]] = []
    images = decode_images(paths, (args.size, args.size))
    for start in range(0, len(images), 16):
        batch = torch.stack([image_tensor(image) for image in images[start : start + 16]])
        maps = net.prototype_features(batch)
        per_scale = per_scale or [[] for _ in maps]
        for store, fmap in zip(per_scale, maps):
            store.append(fmap.float().flatten(1))
    return [torch.cat(store) for store in per_scale]


def timed(run) -> tuple[torch.Tensor, float]:
    start = time.perf_counter()
    result = run()
    if result.is_cuda:
        torch.cuda.synchronize(result.device)
    return result, time.perf_counter() - start


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    console = Console(width=160)
    console.print(f"machine: {hardware()} threads={torch.get_num_threads()}")
    maps = normal_maps(args)
    table = Table(title=f"k-means of {len(maps[0])} normal maps, ratio {args.ratio}, {args.iterations} iterations")
    for column in ("scale", "dims", "backend", "seconds", "inertia", "vs faiss"):
        table.add_column(column, justify="right")
    for scale, data in enumerate(maps, start=1):
        by_faiss, seconds = timed(lambda: kmeans_prototypes(data, args.ratio, args.iterations, seed=0))
        reference = inertia(data, by_faiss)
        table.add_row(str(scale), str(data.shape[1]), "faiss (CPU)", f"{seconds:.2f}", f"{reference:.4g}", "1.0000")
        for name in args.devices:
            on_device = data.to(name)
            centroids, seconds = timed(
                lambda: kmeans_prototypes(on_device, args.ratio, args.iterations, seed=0, backend="torch")
            )
            value = inertia(data, centroids.cpu())
            table.add_row(
                str(scale),
                str(data.shape[1]),
                f"torch ({name})",
                f"{seconds:.2f}",
                f"{value:.4g}",
                f"{value / reference:.4f}",
            )
    console.print(table)


if __name__ == "__main__":
    main()
