"""The pure-torch PRN network (no Lightning): encoder, prototypes, MF, MSA, decoder."""

from prn.models.attention import MSAStack, MultiSizeSelfAttention
from prn.models.coreset import build_patch_banks
from prn.models.decoder import UNetDecoder
from prn.models.encoder import EncoderWeightsError, ResNet18Encoder
from prn.models.fusion import MultiScaleFusion
from prn.models.kmeans import build_prototypes, kmeans_prototypes, number_of_prototypes
from prn.models.prn import PRNet, check_image_size
from prn.models.prototypes import PrototypeBank, PrototypeFitting
from prn.models.scorer import AnomalyScorer, anomaly_maps, anomaly_maps_and_scores

__all__ = [
    "AnomalyScorer",
    "EncoderWeightsError",
    "MSAStack",
    "MultiScaleFusion",
    "MultiSizeSelfAttention",
    "PRNet",
    "PrototypeBank",
    "PrototypeFitting",
    "ResNet18Encoder",
    "UNetDecoder",
    "anomaly_maps",
    "anomaly_maps_and_scores",
    "build_patch_banks",
    "build_prototypes",
    "check_image_size",
    "kmeans_prototypes",
    "number_of_prototypes",
]
