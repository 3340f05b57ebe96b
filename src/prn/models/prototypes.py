"""Multi-scale prototypes and residual representation (paper Sec. 3.1, Eq. 1).

Prototypes are whole feature maps (L2 over the flattened c*h*w map), clustered with
FAISS k-means to K = ratio * N normal images (10 % in the paper, 300 iterations),
independently per scale, and frozen afterwards. ratio 1.0 means "no clustering":
every normal feature map is a prototype (Table 6).

`PrototypeBank` stores them as buffers so they travel with checkpoints and exports;
its buffers start empty (K = 0) and resize on `load_state_dict`, because K depends
on the data set and is only known after clustering.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import faiss
import numpy as np
import torch
from torch import Tensor, nn

NUM_SCALES = 3
DISTANCE_CHUNK = 64  # prototypes compared per matmul; bounds the temporary memory


def number_of_prototypes(num_samples: int, ratio: float) -> int:
    """K = max(1, round(ratio * N)); ratio must lie in (0, 1]."""
    if not 0.0 < ratio <= 1.0:
        raise ValueError(f"prototype ratio must be in (0, 1] (got {ratio}); the paper uses 0.1")
    return max(1, round(ratio * num_samples))


def _faiss_gpu_available() -> bool:
    return torch.cuda.is_available() and hasattr(faiss, "get_num_gpus") and faiss.get_num_gpus() > 0


def _resolve_use_gpu(use_gpu: bool | None) -> bool:
    if use_gpu is None:
        return _faiss_gpu_available()
    if use_gpu and not _faiss_gpu_available():
        raise ValueError("use_gpu=True but no CUDA device with a GPU build of faiss is available; "
                         "pass use_gpu=None (auto) or False")
    return use_gpu


def kmeans_prototypes(features: Tensor, ratio: float = 0.1, iterations: int = 300, seed: int = 0,
                      use_gpu: bool | None = None) -> Tensor:
    """Cluster N flattened feature maps [N, D] into K = round(ratio*N) prototypes [K, D].

    FAISS initialises the centroids with randomly sampled feature maps, exactly the
    paper's "K feature maps randomly sampled ... updated by k-means".
    """
    if features.ndim != 2 or features.shape[0] == 0:
        raise ValueError(f"features must be a non-empty [N, D] tensor, got shape {tuple(features.shape)}")
    num_prototypes = number_of_prototypes(features.shape[0], ratio)
    if ratio == 1.0:
        return features.detach().clone()
    data = np.ascontiguousarray(features.detach().cpu().to(torch.float32).numpy())
    kmeans = faiss.Kmeans(data.shape[1], num_prototypes, niter=iterations, seed=seed,
                          gpu=_resolve_use_gpu(use_gpu), verbose=False,
                          max_points_per_centroid=max(256, data.shape[0]))
    kmeans.train(data)
    return torch.from_numpy(kmeans.centroids.copy()).to(features.device)


def build_prototypes(feature_maps: Sequence[Tensor], ratio: float = 0.1, iterations: int = 300,
                     seed: int = 0, use_gpu: bool | None = None) -> list[Tensor]:
    """Per-scale k-means of [N, c, h, w] maps -> list of [K, c, h, w] prototypes."""
    prototypes = []
    for maps in feature_maps:
        centroids = kmeans_prototypes(maps.flatten(1), ratio, iterations, seed, use_gpu)
        prototypes.append(centroids.view(-1, *maps.shape[1:]))
    return prototypes


def nearest_prototype_indices(features: Tensor, prototypes: Tensor, chunk: int = DISTANCE_CHUNK) -> Tensor:
    """argmin_k ||f - p_k||_2 for flattened [B, D] features vs [K, D] prototypes.

    Uses ||f||^2 - 2 f.p + ||p||^2 (one matmul per chunk of prototypes) instead of
    materialising the B x K x D differences.
    """
    best_distance = torch.full((features.shape[0],), float("inf"), device=features.device)
    best_index = torch.zeros(features.shape[0], dtype=torch.long, device=features.device)
    feature_norms = features.pow(2).sum(1, keepdim=True)
    for start in range(0, prototypes.shape[0], chunk):
        block = prototypes[start:start + chunk]
        distances = feature_norms - 2.0 * features @ block.T + block.pow(2).sum(1)[None]
        chunk_distance, chunk_index = distances.min(1)
        improved = chunk_distance < best_distance
        best_distance = torch.where(improved, chunk_distance, best_distance)
        best_index = torch.where(improved, chunk_index + start, best_index)
    return best_index


class PrototypeBank(nn.Module):
    """Frozen per-scale prototypes; turns feature maps into residual maps |F - P*|."""

    def __init__(self, num_scales: int = NUM_SCALES) -> None:
        super().__init__()
        self.num_scales = num_scales
        for name in self.buffer_names:
            self.register_buffer(name, torch.empty(0, 0, 0, 0))

    @property
    def buffer_names(self) -> list[str]:
        return [f"prototypes_{scale}" for scale in range(1, self.num_scales + 1)]

    def prototypes(self) -> list[Tensor]:
        return [getattr(self, name) for name in self.buffer_names]

    @property
    def is_fitted(self) -> bool:
        return all(p.shape[0] > 0 for p in self.prototypes())

    def set_prototypes(self, prototypes: Sequence[Tensor]) -> None:
        """Install one [K, c, h, w] tensor per scale (K may differ between scales)."""
        if len(prototypes) != self.num_scales:
            raise ValueError(f"expected {self.num_scales} prototype tensors, got {len(prototypes)}")
        for name, value in zip(self.buffer_names, prototypes):
            if value.ndim != 4 or value.shape[0] == 0:
                raise ValueError(f"{name} must be a non-empty [K, c, h, w] tensor, got {tuple(value.shape)}")
            current = getattr(self, name)
            setattr(self, name, value.detach().to(device=current.device, dtype=torch.float32).clone())

    def residuals(self, features: Sequence[Tensor]) -> list[Tensor]:
        """Element-wise distance to the nearest prototype, per scale independently."""
        if not self.is_fitted:
            raise RuntimeError("PrototypeBank has no prototypes yet: run the PrototypeCallback (or call "
                               "set_prototypes) before training/inference with use_mp=True")
        return [self._scale_residual(f, p) for f, p in zip(features, self.prototypes(), strict=True)]

    @staticmethod
    def _scale_residual(features: Tensor, prototypes: Tensor) -> Tensor:
        if features.shape[1:] != prototypes.shape[1:]:
            raise ValueError(f"feature map {tuple(features.shape[1:])} does not match prototypes "
                             f"{tuple(prototypes.shape[1:])}: prototypes were built at another image_size")
        with torch.no_grad():
            nearest = nearest_prototype_indices(features.flatten(1).float(), prototypes.flatten(1))
        return (features - prototypes[nearest].to(features.dtype)).abs()

    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str, *args: Any, **kwargs: Any) -> None:
        """Resize the (initially empty) buffers to the checkpoint's K before copying."""
        for name in self.buffer_names:
            incoming = state_dict.get(prefix + name)
            current = getattr(self, name)
            if isinstance(incoming, Tensor) and incoming.shape != current.shape:
                setattr(self, name, torch.empty_like(incoming, device=current.device, dtype=current.dtype))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
