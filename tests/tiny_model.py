"""The tiny PRN of the deploy and serve tests: the real network, small and fast to export, with maps that spread.

The network is the real one (encoder, prototypes, fusion, attention, decoder) at 128 x 256
with one MSA block per scale, so that an export takes seconds, not minutes. Its last
convolution is rescaled so that the maps spread over (0, 1) instead of sitting at the
decoder's 0.01 prior: a parity check on near-constant maps could not fail.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import lightning as L
import numpy as np
import torch

from prn.calibration import Calibration
from prn.models import PRNet
from prn.training.module import PRNModule

TINY_SIZE = (128, 256)  # (h, w): not square, so a swapped axis shows
FORMATS = ("torch", "onnx", "openvino")
# Largest |difference| allowed between an export and its checkpoint, for maps (in [0, 1]) and
# scores alike. Measured on MVTec bottle (73 test images at 256 px): at most 2.9e-6 on maps and
# 4.8e-7 on scores for ONNX Runtime and OpenVINO, 0 for torch.export (benchmarks/deploy_parity.py).
# 1e-4 leaves 30x headroom for other CPUs' kernels, while OpenVINO's bfloat16 arithmetic (0.19 on
# bottle's maps) or float16 weights (1.9e-3) fail it.
PARITY_TOLERANCE = 1e-4


@dataclass
class TinyExports:
    checkpoint: Path
    module: PRNModule
    models: dict[str, Path]


def spread_logits(net: PRNet, images: torch.Tensor, mean: float = -3.0, std: float = 1.4) -> None:
    """Rescale the decoder's 1x1 output conv so that logits on ``images`` have this ``mean`` and ``std``.

    Mostly low maps with a spread (std ~0.16) whose top-k scores still differ between images.
    """
    with torch.no_grad():
        logits = net(images)
        gain = std / logits.std()
        head = net.decoder.to_logits
        head.weight.mul_(gain)
        head.bias.copy_((head.bias - logits.mean()) * gain + mean)


def tiny_module(
    size: tuple[int, int] = TINY_SIZE,
    prototype_match: str = "image",
    location_window: int = 0,
    patch_memory: bool = False,
    map_sigma: float = 0.0,
    memory_weight: float = 0.0,
) -> PRNModule:
    torch.manual_seed(0)
    h, w = size
    net = PRNet(
        encoder_weights=None,
        msa_depth=1,
        prototype_match=prototype_match,
        location_window=location_window,
        location_candidates=2,
        patch_memory=patch_memory,
    )
    module = PRNModule(
        net,
        top_k=10,
        map_sigma=map_sigma,
        memory_weight=memory_weight,
        data_config={"name": "synthetic", "category": "tiny", "image_size": [h, w], "seed": 0},
    )
    scales = [(64, 4), (128, 8), (256, 16)]
    if prototype_match in ("image", "location"):  # three whole maps per scale
        module.net.set_prototypes([torch.rand(3, c, h // s, w // s) for c, s in scales])
    else:  # fifty location vectors per scale
        module.net.set_prototypes([torch.rand(50, c) for c, _ in scales])
    if patch_memory:  # sixty descriptors of layer2 + layer3 channels
        module.net.patch_memory.set_memory(torch.rand(60, 128 + 256), distance_scale=2.0)
    module.eval()
    spread_logits(module.net, torch.rand(4, 3, h, w))
    return module


def save_checkpoint(module: PRNModule, path: Path) -> Path:
    trainer = L.Trainer(accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False)
    trainer.strategy.connect(module)
    trainer.save_checkpoint(path)
    return path


def random_images(count: int, size: tuple[int, int] = TINY_SIZE, seed: int = 0) -> np.ndarray:
    """``[count, h, w, 3]`` uint8 RGB noise, each image dimmer than the next so that their scores differ."""
    noise = np.random.default_rng(seed).integers(0, 256, (count, *size, 3)).astype(np.float64)
    return (noise * np.linspace(0.1, 1.0, count)[:, None, None, None]).astype(np.uint8)


def as_model_input(images: np.ndarray) -> torch.Tensor:
    """uint8 ``[n, h, w, 3]`` as the checkpoint's float ``[n, 3, h, w]`` input in ``[0, 1]``."""
    return torch.from_numpy(images).permute(0, 3, 1, 2).float().div(255.0)


def calibration_between(scores: np.ndarray, maps: np.ndarray) -> Calibration:
    """Thresholds at the median score and the median map maximum, so that decisions and masks go both ways."""
    return Calibration(
        image_threshold=float(np.median(scores)),
        pixel_threshold=float(np.median(maps.max(axis=(1, 2, 3)))),
        fpr=0.5,
        num_images=len(scores),
        normal_median=float(np.min(scores)),
    )
