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

import json
import tempfile
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
    check_export_options(out, format, precision)
    module = module_from_checkpoint(ckpt, trusted).eval()
    image_size = training_image_size(module, ckpt)
    scorer = module.scorer().eval()
    metadata = export_metadata(module, ckpt, image_size, format, precision, max_batch, trusted)
    out.parent.mkdir(parents=True, exist_ok=True)
    example = torch.rand(2, 3, *image_size)
    with torch.no_grad():
        WRITERS[format](scorer, example, max_batch, out, metadata)
    return metadata


def default_output(output_dir: Path, format: str) -> Path:
    """``<output_dir>/prn.onnx`` (``.xml``, ``.pt2``): the inferencer picks the runtime by this suffix."""
    return output_dir / f"prn{FORMAT_SUFFIX[checked_format(format)]}"


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


def _write_torch(
    scorer: AnomalyScorer, example: torch.Tensor, max_batch: int, out: Path, metadata: dict[str, Any]
) -> None:
    batch = torch.export.Dim("batch", min=1, max=max_batch)
    program = torch.export.export(scorer, (example,), dynamic_shapes={"images": {0: batch}})
    torch.export.save(program, out, extra_files={METADATA_FILE: json.dumps(metadata, default=str)})


def _onnx_program(scorer: AnomalyScorer, example: torch.Tensor, max_batch: int) -> Any:
    """The dynamo ONNX export with a dynamic batch axis, inputs ``images``, outputs ``maps`` and ``scores``."""
    batch = torch.export.Dim("batch", min=1, max=max_batch)
    return torch.onnx.export(
        scorer,
        (example,),
        dynamo=True,
        opset_version=ONNX_OPSET,
        input_names=["images"],
        output_names=["maps", "scores"],
        dynamic_shapes={"images": {0: batch}},
        verbose=False,
    )


def _write_onnx(
    scorer: AnomalyScorer, example: torch.Tensor, max_batch: int, out: Path, metadata: dict[str, Any]
) -> None:
    program = _onnx_program(scorer, example, max_batch)
    program.model.metadata_props[METADATA_KEY] = json.dumps(metadata, default=str)
    program.save(out, external_data=False)


def _write_openvino(
    scorer: AnomalyScorer, example: torch.Tensor, max_batch: int, out: Path, metadata: dict[str, Any]
) -> None:
    import openvino

    with tempfile.TemporaryDirectory() as folder:
        onnx_file = Path(folder) / "prn.onnx"
        _onnx_program(scorer, example, max_batch).save(onnx_file, external_data=False)
        model = openvino.convert_model(onnx_file)
    model.set_rt_info(json.dumps(metadata, default=str), [METADATA_KEY])
    openvino.save_model(model, out, compress_to_fp16=metadata["precision"] == "fp16")


WRITERS = {"torch": _write_torch, "onnx": _write_onnx, "openvino": _write_openvino}
