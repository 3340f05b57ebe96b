"""Time PRNet on this machine: forward, forward+backward, and a per-part forward breakdown.

    python benchmarks/model_speed.py --batch 8 --size 256 --threads 2 [--pose-search 60]

Prototypes are random tensors of the real shape (K = 21, i.e. 10 % of MVTec bottle's
209 normal images): clustering is not part of a training/inference step.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import torch
from torch.utils.flop_counter import FlopCounterMode

from prn.models import PRNet


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--size", type=int, default=256, help="square image size (multiple of 128)")
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--prototypes", type=int, default=21, help="K per scale")
    parser.add_argument("--weights", default=None, help="encoder weights (default: random; timing is the same)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--channels-last", action="store_true", help="NHWC memory format for weights and images")
    parser.add_argument("--bf16", action="store_true", help="bfloat16 autocast, as trainer=gpu (bf16-mixed) trains")
    parser.add_argument(
        "--pose-search", type=float, default=None, help="register to a reference pose, searching +- this many degrees"
    )
    return parser.parse_args()


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def best_seconds(step: Callable[[], object], repeats: int, device: torch.device) -> float:
    """Best of `repeats` timed runs after one warm-up run."""
    step()
    timings = []
    for _ in range(repeats):
        synchronize(device)
        start = time.perf_counter()
        step()
        synchronize(device)
        timings.append(time.perf_counter() - start)
    return min(timings)


def parameter_counts(net: PRNet) -> dict[str, int]:
    counts = {name: sum(p.numel() for p in module.parameters()) for name, module in net.named_children()}
    counts["total"] = sum(p.numel() for p in net.parameters())
    counts["trainable"] = sum(p.numel() for p in net.parameters() if p.requires_grad)
    return counts


def forward_breakdown(net: PRNet, images: torch.Tensor, repeats: int) -> dict[str, float]:
    """Seconds per part of one no-grad forward pass, in the order PRNet.forward runs them."""
    device = images.device
    times: dict[str, float] = {}
    with torch.no_grad():
        if net.registration is not None:
            times["pose registration (estimate, warp in and out)"] = best_seconds(
                lambda: registered_round_trip(net, images), repeats, device
            )
        *skips, bottom = net.encoder(images)
        times["encoder"] = best_seconds(lambda: net.encoder(images), repeats, device)
        residuals = net.prototypes.residuals(skips)
        times["prototype residuals"] = best_seconds(lambda: net.prototypes.residuals(skips), repeats, device)
        times["MF (features + residuals)"] = best_seconds(
            lambda: (net.feature_fusion(skips), net.residual_fusion(residuals)), repeats, device
        )
        branches = [torch.cat(p, 1) for p in zip(net.feature_fusion(skips), net.residual_fusion(residuals))]
        for scale, (stack, maps) in enumerate(zip(net.msa, branches), start=1):
            times[f"MSA scale {scale} ({maps.shape[1]}x{maps.shape[2]}x{maps.shape[3]})"] = best_seconds(
                lambda: stack(maps), repeats, device
            )
        attended = [stack(maps) for stack, maps in zip(net.msa, branches)]
        times["MF (output)"] = best_seconds(lambda: net.output_fusion(attended), repeats, device)
        outputs = net.output_fusion(attended)
        times["decoder"] = best_seconds(lambda: net.decoder(bottom, outputs), repeats, device)
    return times


def registered_round_trip(net: PRNet, images: torch.Tensor) -> torch.Tensor:
    """What registration adds to a forward pass: the pose, the image into it and a map back out."""
    pose = net.registration.estimate(images)
    return net.registration.to_image(net.registration.to_reference(images, pose)[:, :1], pose, images.shape[-2:])


def forward_gflops(net: PRNet, images: torch.Tensor) -> dict[str, float]:
    """GFLOPs per image of one forward pass per top-level part (load-independent, unlike timings)."""
    counter = FlopCounterMode(display=False, depth=3)
    with torch.no_grad(), counter:
        net(images)
    per_module = {name: sum(ops.values()) for name, ops in counter.get_flop_counts().items()}
    parts = {
        name.removeprefix("PRNet."): flops
        for name, flops in per_module.items()
        if name.count(".") == 1 or (name.startswith("PRNet.msa.") and name.count(".") == 2)
    }
    parts["total"] = per_module["Global"]
    return {name: flops / images.shape[0] / 1e9 for name, flops in parts.items()}


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    torch.manual_seed(0)
    net = PRNet(encoder_weights=args.weights, pose_search=args.pose_search).to(device)
    feature_shapes = [(64, args.size // 4), (128, args.size // 8), (256, args.size // 16)]
    net.set_prototypes([torch.randn(args.prototypes, c, s, s) for c, s in feature_shapes])
    images = torch.rand(args.batch, 3, args.size, args.size, device=device)
    if net.registration is not None:
        net.registration.fit(net.registration.signals(images))
    if args.channels_last:
        net.to(memory_format=torch.channels_last)
        images = images.contiguous(memory_format=torch.channels_last)
    print(
        f"device={device} threads={torch.get_num_threads()} batch={args.batch} size={args.size} "
        f"K={args.prototypes} weights={net.weights_report} channels_last={args.channels_last} bf16={args.bf16} "
        f"pose_search={args.pose_search}"
    )
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.bf16):
        time_and_count(net, images, args)


def time_and_count(net: PRNet, images: torch.Tensor, args: argparse.Namespace) -> None:
    """Print parameters, forward and training-step times, GFLOPs and the per-part breakdown."""
    device = images.device
    for name, count in parameter_counts(net).items():
        print(f"params {name:>16}: {count / 1e6:8.3f} M")

    net.eval()
    with torch.no_grad():
        forward = best_seconds(lambda: net(images), args.repeats, device)
    net.train()
    optimizer = torch.optim.Adam([p for p in net.parameters() if p.requires_grad], lr=1e-4)

    def train_step() -> None:
        optimizer.zero_grad(set_to_none=True)
        net(images).mean().backward()

    train = best_seconds(train_step, args.repeats, device)
    print(f"forward (eval, no_grad): {forward:.3f} s/batch = {forward / args.batch * 1e3:.1f} ms/image")
    print(f"forward+backward (train): {train:.3f} s/batch = {train / args.batch * 1e3:.1f} ms/image")
    net.eval()
    for name, gflops in forward_gflops(net, images).items():
        print(f"forward GFLOPs/image {name:>16}: {gflops:7.2f}")
    parts = forward_breakdown(net, images, args.repeats)
    total = sum(parts.values())
    for name, seconds in parts.items():
        print(f"  {name:<32} {seconds:7.3f} s  {100 * seconds / total:5.1f} %")


if __name__ == "__main__":
    main()
