"""Scoring new images: the engineer's loop after training (``prn-predict``).

    inputs            the files named by ``input=`` (file, folder, glob) as the model's input; ``on_error``
    writer            ``scores.csv``, maps, overlays and defect masks at native size; one summary
    torch_backend     the checkpoint in PyTorch through Lightning's predict loop (``backend=torch``)
    exported_backend  an ONNX / OpenVINO export through :class:`prn.deploy.Inferencer` (``backend=onnx|openvino``)
    job               the job: options checked, images collected, one backend run

For one image at a time over HTTP, see :mod:`prn.serve`.
"""

from prn.prediction.inputs import ImageFileSet, collect_images
from prn.prediction.writer import PredictionWriter

__all__ = ["ImageFileSet", "PredictionWriter", "collect_images"]
