"""What an exported detector says about itself: input size, scoring, thresholds and its training run.

`prn.tools.export` writes one JSON document into every format (ONNX ``metadata_props``,
OpenVINO ``rt_info``, the ``prn.json`` extra file of a ``torch.export`` program) under the key
:data:`METADATA_KEY`; :class:`ModelMetadata` reads back the parts the inferencer acts on.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prn.calibration import Calibration

METADATA_KEY = "prn"
METADATA_FILE = "prn.json"  # the extra file of a torch.export program
SCHEMA_VERSION = 1


@dataclass(frozen=True)
class ModelMetadata:
    """The exported model's contract: ``image_size`` ``(h, w)`` it was trained at, its top-k and its thresholds."""

    image_size: tuple[int, int]
    top_k: int
    calibration: Calibration | None
    values: dict[str, Any] = field(repr=False)

    @classmethod
    def from_json(cls, text: str | None, source: Path) -> ModelMetadata:
        """Parse the stored document; a model without one was not written by ``prn-export``."""
        if not text:
            raise ValueError(
                f"{source} carries no '{METADATA_KEY}' metadata: it was not written by prn-export. "
                "Export the checkpoint again with `prn-export ckpt_path=... format=onnx|openvino|torch`."
            )
        values = json.loads(text)
        if values.get("schema") != SCHEMA_VERSION:
            raise ValueError(
                f"{source} has metadata schema {values.get('schema')!r}, this prn.deploy reads {SCHEMA_VERSION}: "
                "export it again with this version of prn-export"
            )
        calibration = values.get("calibration")
        return cls(
            image_size=(int(values["image_size"][0]), int(values["image_size"][1])),
            top_k=int(values["top_k"]),
            calibration=None if calibration is None else Calibration.from_dict(calibration),
            values=values,
        )
