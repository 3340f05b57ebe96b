"""Whole-map prototypes by FAISS k-means (paper Sec. 3.1): K = ratio x N normal maps per scale, 300 iterations.

faiss is imported where k-means runs, so the pure-torch network (``prn.models``) loads, exports and
scores without it; only fitting prototypes needs it.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor


def number_of_prototypes(num_samples: int, ratio: float) -> int:
    """K = max(1, round(ratio * N)); ratio must lie in (0, 1]."""
    if not 0.0 < ratio <= 1.0:
        raise ValueError(f"prototype ratio must be in (0, 1] (got {ratio}); the paper uses 0.1")
    return max(1, round(ratio * num_samples))


def faiss_gpu_available() -> bool:
    """True where faiss is the GPU build (faiss-gpu: ``make install`` on a machine with an NVIDIA GPU) and sees a GPU."""
    if not torch.cuda.is_available():
        return False
    import faiss

    return hasattr(faiss, "get_num_gpus") and faiss.get_num_gpus() > 0


def kmeans_uses_gpu(use_gpu: bool | None) -> bool:
    """Whether k-means runs on a GPU: ``None`` (the default) = wherever faiss can use one."""
    if use_gpu is None:
        return faiss_gpu_available()
    if use_gpu and not faiss_gpu_available():
        raise ValueError(
            "callbacks.prototypes.use_gpu=true, but faiss sees no GPU (the faiss-cpu build, or no CUDA "
            "device): run `make install` on the GPU machine (it installs faiss-gpu), or leave use_gpu unset"
        )
    return use_gpu


def kmeans_prototypes(
    features: Tensor, ratio: float = 0.1, iterations: int = 300, seed: int = 0, use_gpu: bool | None = None
) -> Tensor:
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
    import faiss  # here, not at import: prn.models stays pure torch until prototypes are clustered

    kmeans = faiss.Kmeans(
        data.shape[1],
        num_prototypes,
        niter=iterations,
        seed=seed,
        gpu=kmeans_uses_gpu(use_gpu),
        verbose=False,
        max_points_per_centroid=max(256, data.shape[0]),
    )
    kmeans.train(data)
    return torch.from_numpy(kmeans.centroids.copy()).to(features.device)


def build_prototypes(
    feature_maps: Sequence[Tensor],
    ratio: float = 0.1,
    iterations: int = 300,
    seed: int = 0,
    use_gpu: bool | None = None,
) -> list[Tensor]:
    """Per-scale k-means of [N, c, h, w] maps -> list of [K, c, h, w] prototypes."""
    prototypes = []
    for maps in feature_maps:
        centroids = kmeans_prototypes(maps.flatten(1), ratio, iterations, seed, use_gpu)
        prototypes.append(centroids.view(-1, *maps.shape[1:]))
    return prototypes
