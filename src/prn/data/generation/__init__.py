"""Online anomaly generation (PRN Sec. 3.4): extended and simulated anomalies, target areas, foregrounds."""

from prn.data.generation.composition import composition_from_switches
from prn.data.generation.extended import ExtendedAnomalySource
from prn.data.generation.foreground import ForegroundEstimator
from prn.data.generation.perlin import perlin_mask, perlin_mask_within, perlin_noise
from prn.data.generation.simulated import SimulatedAnomalySource, list_textures
from prn.data.generation.target_area import TARGET_SHAPES, random_target_area

__all__ = [
    "TARGET_SHAPES",
    "ExtendedAnomalySource",
    "ForegroundEstimator",
    "SimulatedAnomalySource",
    "composition_from_switches",
    "list_textures",
    "perlin_mask",
    "perlin_mask_within",
    "perlin_noise",
    "random_target_area",
]
