"""How well pose registration brings pose-jittered images back to one pose, against the jitter's own truth.

    python benchmarks/registration_accuracy.py --root ../shared/data/mvtec_anomaly_detection \\
        --category transistor --seed 0 --pose-search 60

Every image of the category gets the seeded rotation + shift that ``pose_jitter={shift: 0.1,
rotation: 30}`` gives it in a run with ``--seed`` (same file keys, so the same poses as training),
at ``--size``. The template is fitted on the jittered normal training images, as the
PrototypeCallback fits it. Registration maps each reference-frame point to an image point; undoing
the known jitter must then land every image's point on the same place of the unjittered part. The
error of an image is the largest distance (pixels at ``--size``) of four probe points (three 60-85 px
from the centre at 256 px, and the centre) from their median over the normal training images. A
``misplaced`` part moved on its board, so its error is the move, not a failure.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from prn.data.image_io import decode_images
from prn.data.pose_jitter import apply_pose, jitter_params, pose_matrix
from prn.models.registration import PoseRegistration

PROBES = np.array([[-60.0, -60.0], [60.0, -60.0], [0.0, 60.0], [0.0, 0.0]]) / 256.0  # fractions of the side


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", type=Path, required=True, help="MVTec AD root (the folder holding the categories)")
    parser.add_argument("--category", default="transistor")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--shift", type=float, default=0.1)
    parser.add_argument("--rotation", type=float, default=30.0)
    parser.add_argument("--pose-search", type=float, default=60.0)
    parser.add_argument("--threads", type=int, default=2)
    return parser.parse_args()


def jittered(paths: list[Path], root: Path, args: argparse.Namespace) -> tuple[torch.Tensor, list[np.ndarray]]:
    """The images as the run sees them, and each one's 3x3 jitter matrix (unjittered pixel -> image pixel)."""
    images, matrices = [], []
    for path, image in zip(paths, decode_images(paths, (args.size, args.size))):
        params = jitter_params(path.relative_to(root).as_posix(), args.seed, args.shift, args.rotation)
        images.append(torch.from_numpy(apply_pose(image, None, params)[0]).permute(2, 0, 1).float() / 255.0)
        matrices.append(np.vstack([pose_matrix((args.size, args.size), params), [0.0, 0.0, 1.0]]))
    return torch.stack(images), matrices


def unjittered_probes(registration: PoseRegistration, images: torch.Tensor, matrices: list[np.ndarray]) -> np.ndarray:
    """``[N, P, 2]``: where each reference-frame probe lands on the unjittered part, per image."""
    size = images.shape[-1]
    linear, offset = registration.estimate(images)
    centre = (size - 1) / 2.0
    probes = PROBES * size
    landed = []
    for lin, off, matrix in zip(linear.numpy(), offset.numpy(), matrices, strict=True):
        in_image = probes @ lin.T + off + centre
        back = np.c_[in_image, np.ones(len(in_image))] @ np.linalg.inv(matrix).T
        landed.append(back[:, :2])
    return np.stack(landed)


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    category = args.root / args.category
    train_paths = sorted((category / "train" / "good").glob("*.png"))
    test_paths = sorted((category / "test").glob("*/*.png"))
    train, train_matrices = jittered(train_paths, args.root, args)
    test, test_matrices = jittered(test_paths, args.root, args)
    registration = PoseRegistration(args.pose_search)
    start = time.perf_counter()
    registration.fit(registration.signals(train))
    print(f"template from {len(train)} normals in {time.perf_counter() - start:.1f} s")
    reference = np.median(unjittered_probes(registration, train, train_matrices), axis=0)
    start = time.perf_counter()
    landed = unjittered_probes(registration, test, test_matrices)
    per_image = (time.perf_counter() - start) / len(test) * 1e3
    errors = np.linalg.norm(landed - reference, axis=-1).max(axis=1)
    types = np.array([path.parent.name for path in test_paths])
    train_errors = np.linalg.norm(unjittered_probes(registration, train, train_matrices) - reference, axis=-1).max(1)
    print(f"{'set':<14} images  median px  p90 px  max px  > 8 px")
    for name, values in [("train/good", train_errors)] + [(t, errors[types == t]) for t in np.unique(types)]:
        print(
            f"{name:<14} {len(values):>6}  {np.median(values):9.1f}  {np.percentile(values, 90):6.1f}  "
            f"{values.max():6.1f}  {(values > 8).sum():>6}"
        )
    print(f"estimate: {per_image:.1f} ms/image (batch of {len(test)}, {args.threads} threads)")


if __name__ == "__main__":
    main()
