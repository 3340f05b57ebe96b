"""Export a checkpoint for deployment: ONNX, OpenVINO IR or a ``torch.export`` program::

    prn-export ckpt_path=logs/train/runs/<run>/checkpoints/last.ckpt format=onnx

Every format maps float32 images ``[B, 3, H, W]`` in ``[0, 1]`` (RGB, H x W = the training
size, any batch size) to ``(maps [B, 1, H, W] in [0, 1], scores [B])``, with weights and
prototypes inside. The same JSON metadata travels inside each file (image size, preprocessing,
top-k, calibrated thresholds, a summary of the training run): :class:`prn.deploy.Inferencer`
reads it, and needs neither prn's training code nor Lightning nor Hydra.

The ONNX graph comes from ``torch.onnx.export`` (dynamo); the OpenVINO IR is converted from
that same graph, so both formats run one computation. OpenVINO can store its weights in
float16 (``precision=fp16``: on MVTec bottle the four metrics moved by at most 0.01 points).
Post-training INT8 (NNCF) is not offered: it cost bottle 15 points of pixel AP (docs/deploy.md).
"""

from __future__ import annotations

import functools
import json
import tempfile
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

import prn
from prn.checkpoints import module_from_checkpoint, read_checkpoint, training_image_size
from prn.deploy.metadata import METADATA_FILE, METADATA_KEY, SCHEMA_VERSION
from prn.models import AnomalyScorer
from prn.models.encoder import IMAGENET_MEAN, IMAGENET_STD
from prn.training import PRNModule

FORMAT_SUFFIX = {"torch": ".pt2", "onnx": ".onnx", "openvino": ".xml"}
PRECISIONS = {"torch": ("fp32",), "onnx": ("fp32",), "openvino": ("fp32", "fp16")}
ONNX_OPSET = 18


def export_checkpoint(
    ckpt: Path,
    out: Path,
    format: str = "torch",
    max_batch: int = 1024,
    precision: str = "fp32",
    trusted: bool = False,
) -> dict[str, Any]:
    """Write ``ckpt`` as ``format`` to ``out`` and return the metadata stored inside it.

    ``trusted`` loads a checkpoint that holds code (``trust_checkpoint=true``, see :mod:`prn.checkpoints`).
    """
    return export_formats(ckpt, {format: out}, max_batch, precision, trusted)[format]


def export_formats(
    ckpt: Path,
    outputs: Mapping[str, Path],
    max_batch: int = 1024,
    precision: str = "fp32",
    trusted: bool = False,
) -> dict[str, dict[str, Any]]:
    """Write ``ckpt`` in every format of ``outputs`` (format -> file); return each file's metadata.

    The checkpoint is read once, and ONNX and OpenVINO share one ONNX trace, the slow part of both
    (OpenVINO converts that graph): both formats at once take about the time of one.
    """
    for format, out in outputs.items():
        check_export_options(out, format, precision)
    module = module_from_checkpoint(ckpt, trusted).eval()
    image_size = training_image_size(module, ckpt)
    traces = _Traces(module.scorer().eval(), torch.rand(2, 3, *image_size), max_batch)
    written = {}
    for format, out in outputs.items():
        metadata = export_metadata(module, ckpt, image_size, format, precision, max_batch, trusted)
        out.parent.mkdir(parents=True, exist_ok=True)
        with torch.no_grad():
            WRITERS[format](traces, out, metadata)
        written[format] = metadata
    return written


def default_output(output_dir: Path, format: str) -> Path:
    """``<output_dir>/prn.onnx`` (``.xml``, ``.pt2``): the inferencer picks the runtime by this suffix."""
    return output_dir / f"prn{FORMAT_SUFFIX[checked_format(format)]}"


def export_outputs(
    format: str | Sequence[str], out: str | Path | None, output_dir: Path, precision: str
) -> dict[str, Path]:
    """Each format of ``prn-export format=onnx`` or ``format=[onnx,openvino]`` with its file, every option checked.

    ``out`` names the file of a single format; several formats go to ``output_dir``'s default names.
    """
    formats = [format] if isinstance(format, str) else list(format)
    if not formats or len(set(formats)) < len(formats):
        raise ValueError(f"format={formats} must name each format once, e.g. format=onnx or format=[onnx,openvino]")
    if out is not None and len(formats) > 1:
        raise ValueError(
            f"out={out} names one file but format={formats} asks for {len(formats)}: leave out unset "
            f"(each format goes to {output_dir}/prn.<suffix>) or export one format at a time"
        )
    outputs = {name: default_output(output_dir, name) if out is None else Path(out) for name in formats}
    for name, path in outputs.items():
        check_export_options(path, name, precision)
    return outputs


def checked_format(format: str) -> str:
    """``format`` when prn exports to it, else an error listing every format with its precisions."""
    if format not in FORMAT_SUFFIX:
        choices = "; ".join(f"{name} (precision={' or '.join(PRECISIONS[name])})" for name in FORMAT_SUFFIX)
        raise ValueError(f"format={format!r} is not one of {list(FORMAT_SUFFIX)}: pass one of {choices}")
    return format


def check_export_options(out: Path, format: str, precision: str) -> None:
    """Fail before the (slow) export on a format, precision or file name that cannot work together."""
    checked_format(format)
    if precision not in PRECISIONS[format]:
        raise ValueError(
            f"precision={precision!r} is not available for format={format}: use one of {list(PRECISIONS[format])}"
        )
    if out.suffix.lower() != FORMAT_SUFFIX[format]:
        raise ValueError(
            f"out={out} must end in {FORMAT_SUFFIX[format]} for format={format}: "
            "prn.deploy picks the runtime by the file suffix"
        )


def export_metadata(
    module: PRNModule,
    ckpt: Path,
    image_size: tuple[int, int],
    format: str,
    precision: str,
    max_batch: int,
    trusted: bool = False,
) -> dict[str, Any]:
    """What the deployed model must know: its input contract, scoring, thresholds and where it came from."""
    height, width = image_size
    calibration = module.calibration
    return {
        "schema": SCHEMA_VERSION,
        "format": format,
        "precision": precision,
        "image_size": [height, width],
        "top_k": module.hparams.top_k,
        "map_sigma": module.hparams.get("map_sigma", 0.0),
        "memory_weight": module.memory_weight,
        "input": {
            "name": "images",
            "shape": ["batch", 3, height, width],
            "dtype": "float32",
            "range": [0, 1],
            "channels": "RGB",
            "max_batch": max_batch,
        },
        "outputs": {
            "maps": "[batch, 1, H, W] anomaly probability in [0, 1] (memory_weight of it the patch memory's), "
            "blurred by map_sigma pixels",
            "scores": "[batch] mean of the top-k map pixels",
        },
        "preprocessing": {
            "decode": "Pillow; any mode to 8-bit RGB (16-bit gray rescaled to 0..255)",
            "resize": f"Pillow bilinear (antialiased when shrinking) to {height}x{width} (h x w)",
            "scale": "uint8 / 255",
            "normalisation": {"mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD), "applied": "inside the model"},
        },
        "calibration": None if calibration is None else calibration.to_dict(),
        "training": training_summary(module, ckpt, trusted),
        "exported": {
            "prn": prn.__version__,
            "torch": torch.__version__,
            "at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        },
    }


def training_summary(module: PRNModule, ckpt: Path, trusted: bool = False) -> dict[str, Any]:
    """Dataset, network, encoder, prototypes, steps and (when the run directory has them) test metrics."""
    data = module.hparams.get("data_config") or {}
    saved = read_checkpoint(ckpt, trusted=trusted)
    bank = module.net.prototypes
    summary = {
        "checkpoint": str(ckpt),
        "dataset": data.get("name"),
        "category": data.get("category"),
        "seen_anomalies": data.get("num_seen_anomalies"),
        "seed": data.get("seed"),
        "steps": saved.get("global_step"),
        "network": {
            key: value
            for key, value in module.hparams.net_config.items()
            if key not in ("encoder_weights", "allow_random_fallback")
        },
        "encoder_weights": module.net.encoder.weights_report,
        "prototypes": None if bank is None else [list(p.shape) for p in bank.prototypes()],
    }
    results = ckpt.parent.parent / "results.json"  # logs/train/runs/<run>/results.json beside checkpoints/
    if results.is_file():
        summary["test_metrics"] = json.loads(results.read_text()).get("metrics")
    return summary


class _Traces:
    """The scorer with an example input, and its ONNX program traced at most once for all formats."""

    def __init__(self, scorer: AnomalyScorer, example: torch.Tensor, max_batch: int) -> None:
        self.scorer, self.example, self.max_batch = scorer, example, max_batch

    def batch_dim(self) -> Any:
        return torch.export.Dim("batch", min=1, max=self.max_batch)

    @functools.cached_property
    def onnx_program(self) -> Any:
        """The dynamo ONNX export with a dynamic batch axis, inputs ``images``, outputs ``maps`` and ``scores``."""
        with torch.no_grad():
            return torch.onnx.export(
                self.scorer,
                (self.example,),
                dynamo=True,
                opset_version=ONNX_OPSET,
                input_names=["images"],
                output_names=["maps", "scores"],
                dynamic_shapes={"images": {0: self.batch_dim()}},
                verbose=False,
            )


def _write_torch(traces: _Traces, out: Path, metadata: dict[str, Any]) -> None:
    program = torch.export.export(traces.scorer, (traces.example,), dynamic_shapes={"images": {0: traces.batch_dim()}})
    torch.export.save(program, out, extra_files={METADATA_FILE: json.dumps(metadata, default=str)})


def _write_onnx(traces: _Traces, out: Path, metadata: dict[str, Any]) -> None:
    model = traces.onnx_program.model
    model.metadata_props[METADATA_KEY] = json.dumps(metadata, default=str)
    try:
        traces.onnx_program.save(out, external_data=False)
    finally:  # the shared program carries no format's metadata into the next writer
        del model.metadata_props[METADATA_KEY]


def _write_openvino(traces: _Traces, out: Path, metadata: dict[str, Any]) -> None:
    import openvino

    with tempfile.TemporaryDirectory() as folder:
        onnx_file = Path(folder) / "prn.onnx"
        traces.onnx_program.save(onnx_file, external_data=False)
        model = openvino.convert_model(onnx_file)
    model.set_rt_info(json.dumps(metadata, default=str), [METADATA_KEY])
    openvino.save_model(model, out, compress_to_fp16=metadata["precision"] == "fp16")


WRITERS = {"torch": _write_torch, "onnx": _write_onnx, "openvino": _write_openvino}
