"""One small adapter per runtime: load an exported file, run ``images -> (maps, scores)``.

Each runtime is imported only when its format is opened, so an install carries just the one
it uses (``prn-deploy[onnx]``, ``[openvino]`` or ``[torch]``). A training checkpoint (``.ckpt``)
runs too, through prn's own model code: that needs the full ``prn`` install, not ``prn-deploy``. Every adapter takes float32
``[B, 3, H, W]`` RGB in ``[0, 1]`` and returns float32 maps ``[B, 1, H, W]`` and scores ``[B]``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import numpy as np

from prn.deploy.metadata import METADATA_FILE, METADATA_KEY

FORMAT_BY_SUFFIX = {".onnx": "onnx", ".xml": "openvino", ".pt2": "torch", ".ckpt": "checkpoint"}
INSTALL_HINT = {
    "onnx": "pip install 'prn-deploy[onnx]' (or onnxruntime)",
    "openvino": "pip install 'prn-deploy[openvino]' (or openvino)",
    "torch": "pip install 'prn-deploy[torch]' (or torch)",
    "checkpoint": "install the full prn package (a checkpoint runs prn's own model code), or prn-export it to ONNX",
}
# OpenVINO's CPU plugin runs in bfloat16 by default where the CPU supports it; measured on
# MVTec bottle that moved map values by up to 0.1. float32 keeps the exported model's answers.
OPENVINO_CONFIG = {"INFERENCE_PRECISION_HINT": "f32"}


class Runtime(Protocol):
    """An opened exported model: its stored metadata (JSON text) and its forward pass."""

    metadata_json: str | None

    def run(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]: ...


def model_format(path: Path) -> str:
    """``onnx``, ``openvino`` or ``torch`` from the file name, or an error listing what is accepted."""
    fmt = FORMAT_BY_SUFFIX.get(path.suffix.lower())
    if fmt is None:
        raise ValueError(
            f"{path}: unknown model format {path.suffix!r}; pass a file written by prn-export: "
            f"{', '.join(f'*{s} ({f})' for s, f in FORMAT_BY_SUFFIX.items())}"
        )
    return fmt


def open_runtime(path: Path) -> Runtime:
    """The adapter for ``path``'s format, or an error naming the file and what to install."""
    if not path.is_file():
        raise FileNotFoundError(
            f"model file {path} does not exist: export one with `prn-export ckpt_path=... format=onnx`"
        )
    fmt = model_format(path)
    try:
        return RUNTIMES[fmt](path)
    except ModuleNotFoundError as error:
        raise ModuleNotFoundError(
            f"{path} is a {fmt} model but its runtime is not installed ({error}): {INSTALL_HINT[fmt]}"
        ) from error


class OnnxRuntimeModel:
    """ONNX Runtime on the CPU."""

    def __init__(self, path: Path) -> None:
        import onnxruntime

        self.session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        self.metadata_json = self.session.get_modelmeta().custom_metadata_map.get(METADATA_KEY)

    def run(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        maps, scores = self.session.run(["maps", "scores"], {"images": images})
        return maps, scores


class OpenVinoModel:
    """OpenVINO IR (``.xml`` beside its ``.bin``) on the CPU, computing in float32."""

    def __init__(self, path: Path) -> None:
        import openvino

        core = openvino.Core()
        model = core.read_model(path)
        self.metadata_json = (
            model.get_rt_info([METADATA_KEY]).astype(str) if model.has_rt_info([METADATA_KEY]) else None
        )
        self.compiled = core.compile_model(model, "CPU", OPENVINO_CONFIG)

    def run(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        outputs = self.compiled(images)
        return outputs["maps"], outputs["scores"]


class TorchExportModel:
    """A ``torch.export`` program (``.pt2``) in eager PyTorch."""

    def __init__(self, path: Path) -> None:
        import torch

        extra_files = {METADATA_FILE: ""}
        self.program = torch.export.load(path, extra_files=extra_files).module()
        self.metadata_json = extra_files[METADATA_FILE] or None
        self._torch = torch

    def run(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        with self._torch.inference_mode():
            maps, scores = self.program(self._torch.from_numpy(images))
        return maps.numpy(), scores.numpy()


class CheckpointModel:
    """A training checkpoint (``.ckpt``) in eager PyTorch: the model of evaluation, with the metadata an export would carry."""

    def __init__(self, path: Path) -> None:
        import json

        import torch

        from prn.checkpoints import module_from_checkpoint, training_image_size
        from prn.tools.export import export_metadata

        module = module_from_checkpoint(path).eval()
        self.scorer = module.scorer().eval()
        image_size = training_image_size(module, path)
        metadata = export_metadata(module, path, image_size, "checkpoint", "fp32", max_batch=1024)
        self.metadata_json = json.dumps(metadata, default=str)
        self._torch = torch

    def run(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        with self._torch.inference_mode():
            maps, scores = self.scorer(self._torch.from_numpy(images))
        return maps.numpy(), scores.numpy()


RUNTIMES = {
    "onnx": OnnxRuntimeModel,
    "openvino": OpenVinoModel,
    "torch": TorchExportModel,
    "checkpoint": CheckpointModel,
}
