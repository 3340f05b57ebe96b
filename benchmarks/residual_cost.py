"""What each residual costs in a training step: the paper's image match, the location window, and the
patch memory at several sizes, side by side in one process (timings on a shared CPU are noisy).

    python benchmarks/residual_cost.py --normals 213 --batch 8 --size 256

Prototypes and memories are random tensors of the real shapes (N normal maps; memory = a fraction
of the N*h*w layer2 locations, 384 channels): their values do not change the cost.
"""

from __future__ import annotations

import argparse
import time

import torch

from prn.models import PRNet
from prn.models.patch_memory import MEMORY_LAYERS


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--normals", type=int, default=213, help="normal training images (MVTec transistor: 213)")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--memory-ratios", type=float, nargs="+", default=[0.01, 0.1, 1.0])
    parser.add_argument("--max-memory", type=int, default=16_384, help="cap on the memory, as prototypes.max_memory")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None)
    return parser.parse_args()


def best_seconds(step, repeats: int) -> float:
    step()
    timings = []
    for _ in range(repeats):
        start = time.perf_counter()
        step()
        timings.append(time.perf_counter() - start)
    return min(timings)


def variant_net(args: argparse.Namespace, match: str, window: int, memory_size: int | None) -> PRNet:
    torch.manual_seed(0)
    net = PRNet(
        encoder_weights=None,
        prototype_match=match,
        location_window=window,
        location_candidates=4,
        patch_memory=memory_size is not None,
    )
    count = args.normals if match == "location" else max(1, round(0.1 * args.normals))
    shapes = [(64, args.size // 4), (128, args.size // 8), (256, args.size // 16)]
    net.set_prototypes([torch.randn(count, c, s, s) for c, s in shapes], [torch.arange(count)] * 3)
    if memory_size is not None:
        channels = sum(shapes[layer - 1][0] for layer in MEMORY_LAYERS)
        net.patch_memory.set_memory(torch.randn(memory_size, channels), torch.randint(args.normals, (memory_size,)))
    return net


def main() -> None:
    args = parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    locations = args.normals * (args.size // 8) ** 2
    variants = {"image match (paper, K=10%)": ("image", 0, None), "location window 2": ("location", 2, None)}
    for ratio in args.memory_ratios:
        size = min(args.max_memory, round(ratio * locations))
        variants[f"location window 2 + memory {ratio:g} (M={size})"] = ("location", 2, size)
    images = torch.rand(args.batch, 3, args.size, args.size)
    exclude = torch.randint(args.normals, (args.batch,))
    print(f"threads={torch.get_num_threads()} batch={args.batch} size={args.size} normals={args.normals}")
    print(f"{'variant':<48} {'step s':>7} {'residual s':>10} {'memory s':>9} {'eval ms/img':>11}")
    for name, (match, window, memory_size) in variants.items():
        net = variant_net(args, match, window, memory_size)
        optimizer = torch.optim.Adam([p for p in net.parameters() if p.requires_grad], lr=1e-4)

        def train_step() -> None:
            optimizer.zero_grad(set_to_none=True)
            net(images, exclude).mean().backward()

        net.train()
        step = best_seconds(train_step, args.repeats)
        net.eval()
        with torch.no_grad():
            features = net.encoder.frozen_features(images)
            residual = best_seconds(lambda: net.prototypes.residuals(features, exclude), args.repeats)
            memory = best_seconds(lambda: net.patch_memory(features, exclude), args.repeats) if memory_size else 0.0
            inference = best_seconds(lambda: net(images), args.repeats)
        print(f"{name:<48} {step:7.2f} {residual:10.2f} {memory:9.2f} {1e3 * inference / args.batch:11.0f}")


if __name__ == "__main__":
    main()
