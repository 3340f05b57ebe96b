"""Run an exported PRN detector on an inspection PC: numpy, Pillow and one runtime, no Lightning or Hydra.

``prn-export format=onnx|openvino|torch`` writes the model with its image size, top-k,
calibrated thresholds and a summary of its training run inside; :class:`Inferencer` loads
any of the three, resizes inputs exactly as training did and returns a :class:`Prediction`
per image. A full ``prn`` install includes this package; the ``prn-deploy`` distribution
(``deploy/`` in the repository) installs only it, without torch::

    pip install "./deploy[onnx]"        # or [openvino], [torch]
    python -m prn.deploy prn.onnx parts/ --csv scores.csv
"""

from prn.deploy.inferencer import Inferencer, Prediction
from prn.deploy.metadata import ModelMetadata

__all__ = ["Inferencer", "ModelMetadata", "Prediction"]
