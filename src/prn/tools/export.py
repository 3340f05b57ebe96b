"""Export a checkpoint as a self-contained ``torch.export`` program (no prn, Lightning or Hydra needed to run it)::

    prn-export ckpt_path=logs/train/runs/<run>/checkpoints/last.ckpt

The program maps float32 images ``[B, 3, H, W]`` in ``[0, 1]`` (RGB, H x W = the training
size, any batch size) to ``(maps [B, 1, H, W] in [0, 1], scores [B])``, prototypes and
weights inside. ``prn.json`` travels in the same file and says what it expects::

    program = torch.export.load("prn.pt2").module()
    maps, scores = program(images)
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from prn.models import AnomalyScorer
from prn.pipeline import module_from_checkpoint, training_image_size

METADATA_FILE = "prn.json"


def export_checkpoint(ckpt: Path, out: Path, max_batch: int = 1024) -> dict[str, Any]:
    """Write the exported program to ``out`` and return the metadata stored with it."""
    module = module_from_checkpoint(ckpt).eval()
    height, width = training_image_size(module, ckpt)
    scorer = AnomalyScorer(module.net, module.hparams.top_k).eval()
    example = torch.rand(2, 3, height, width)
    batch = torch.export.Dim("batch", min=1, max=max_batch)
    with torch.no_grad():
        program = torch.export.export(scorer, (example,), dynamic_shapes={"images": {0: batch}})
    metadata = {
        "input": {"shape": ["batch", 3, height, width], "dtype": "float32", "range": [0, 1], "channels": "RGB", "max_batch": max_batch},
        "outputs": ["maps [batch, 1, H, W] in [0, 1]", "scores [batch] = mean of the top-k map pixels"],
        "top_k": module.hparams.top_k,
        "encoder_weights": module.net.encoder.weights_report,
        "data": module.hparams.data_config,
        "checkpoint": str(ckpt),
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.export.save(program, out, extra_files={METADATA_FILE: json.dumps(metadata, default=str)})
    return metadata
