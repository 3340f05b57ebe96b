"""The predict job (``prn-predict``, ``src/predict.py``): check the options, collect the images, run one backend."""

from __future__ import annotations

from typing import Any

from omegaconf import DictConfig

from prn.calibration import parse_threshold
from prn.checkpoints import existing_checkpoint
from prn.prediction.inputs import collect_images


def predict(cfg: DictConfig) -> dict[str, Any]:
    """Score ``input=`` with ``ckpt_path=`` (a checkpoint, or an export with ``backend=onnx|openvino``)."""
    ckpt = existing_checkpoint(cfg.ckpt_path, "ckpt_path")  # may be an export: read by the backend
    parse_threshold(cfg.get("threshold", "auto"))  # a bad threshold= fails before any image is read
    files, root = collect_images(cfg.input, cfg.on_error)
    if cfg.get("backend", "torch") != "torch":  # ONNX Runtime or OpenVINO: imported only when asked for
        from prn.prediction.exported_backend import predict_exported

        return predict_exported(cfg, ckpt, files, root)
    from prn.prediction.torch_backend import predict_with_checkpoint

    return predict_with_checkpoint(cfg, ckpt, files, root)
