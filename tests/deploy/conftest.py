"""A tiny PRN checkpoint with calibrated thresholds (``tiny_model``), exported once per session in every format."""

from __future__ import annotations

import pytest
import torch
from tiny_model import (
    FORMATS,
    TinyExports,
    as_model_input,
    calibration_between,
    random_images,
    save_checkpoint,
    tiny_module,
)

from prn.tools.export import default_output, export_checkpoint


@pytest.fixture(scope="session")
def tiny_exports(tmp_path_factory: pytest.TempPathFactory) -> TinyExports:
    folder = tmp_path_factory.mktemp("tiny_exports")
    module = tiny_module()
    with torch.no_grad():
        maps, scores = module.predict_maps_and_scores(as_model_input(random_images(6)))
    module.calibration = calibration_between(scores.numpy(), maps.numpy())
    checkpoint = save_checkpoint(module, folder / "last.ckpt")
    models = {fmt: default_output(folder, fmt) for fmt in FORMATS}
    for fmt, out in models.items():
        export_checkpoint(checkpoint, out, format=fmt, max_batch=32)
    return TinyExports(checkpoint, module, models)
