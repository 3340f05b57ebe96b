"""Whole-map prototypes by k-means (paper Sec. 3.1): K = ratio x N normal maps per scale, 300 iterations.

Two backends, the same algorithm: FAISS (``backend="faiss"``, the paper's; on a GPU where faiss-gpu
installs) and plain torch Lloyd iterations on the features' device (``backend="torch"``: a GPU without a
faiss-gpu build, such as CUDA 13 machines). Both start from K randomly sampled maps and split a populous
cluster into an empty one. faiss is imported where k-means runs, so the pure-torch network
(``prn.models``) loads, exports and scores without it.
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
            "prototypes.use_gpu=true, but faiss sees no GPU (the faiss-cpu build, or no CUDA "
            "device): run `make install` on the GPU machine (it installs faiss-gpu), or leave use_gpu unset"
        )
    return use_gpu


KMEANS_BACKENDS = ("faiss", "torch")
SPLIT_EPSILON = 1.0 / 1024.0  # faiss's relative perturbation when a populous cluster is split into an empty one


def kmeans_prototypes(
    features: Tensor,
    ratio: float = 0.1,
    iterations: int = 300,
    seed: int = 0,
    use_gpu: bool | None = None,
    backend: str = "faiss",
) -> Tensor:
    """Cluster N flattened feature maps [N, D] into K = round(ratio*N) prototypes [K, D].

    The centroids start as randomly sampled feature maps, exactly the paper's "K feature maps
    randomly sampled ... updated by k-means".
    """
    if features.ndim != 2 or features.shape[0] == 0:
        raise ValueError(f"features must be a non-empty [N, D] tensor, got shape {tuple(features.shape)}")
    if backend not in KMEANS_BACKENDS:
        raise ValueError(f"prototypes.kmeans_backend={backend!r} must be one of {KMEANS_BACKENDS}")
    num_prototypes = number_of_prototypes(features.shape[0], ratio)
    if ratio == 1.0:
        return features.detach().clone()
    if backend == "torch":
        return torch_kmeans(features.detach().float(), num_prototypes, iterations, seed)
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


def nearest_centroids(data: Tensor, centroids: Tensor) -> tuple[Tensor, Tensor]:
    """Index and squared distance of each row's nearest centroid (expanded form, one matmul)."""
    distances = (data * data).sum(1, keepdim=True) - 2.0 * data @ centroids.T + (centroids * centroids).sum(1)[None]
    nearest = distances.min(dim=1)
    return nearest.indices, nearest.values.clamp(min=0.0)


def inertia(data: Tensor, centroids: Tensor) -> float:
    """Sum of squared distances of the rows to their nearest centroid: what k-means minimises."""
    return float(nearest_centroids(data.double(), centroids.double())[1].sum())


def torch_kmeans(data: Tensor, count: int, iterations: int = 300, seed: int = 0) -> Tensor:
    """Lloyd's k-means of ``data`` [N, D] on its own device: ``count`` random rows to start, ``iterations`` updates.

    Stops early once no assignment changes (later updates would not move a centroid). An empty
    cluster takes a copy of a populous one, the two nudged apart by ``SPLIT_EPSILON``, as faiss does.
    """
    generator = torch.Generator(device=data.device).manual_seed(seed)
    centroids = data[torch.randperm(len(data), generator=generator, device=data.device)[:count]].clone()
    assignment = None
    for _ in range(iterations):
        new_assignment, _ = nearest_centroids(data, centroids)
        if assignment is not None and torch.equal(new_assignment, assignment):
            break
        assignment = new_assignment
        sizes = torch.bincount(assignment, minlength=count)
        sums = torch.zeros_like(centroids).index_add_(0, assignment, data)
        centroids = sums / sizes.clamp(min=1)[:, None].to(data.dtype)
        _split_into_empty(centroids, sizes, generator)
    return centroids


def _split_into_empty(centroids: Tensor, sizes: Tensor, generator: torch.Generator) -> None:
    """Each empty cluster takes a populous cluster's centroid (drawn by size - 1), both moved by +-epsilon."""
    for empty in (sizes == 0).nonzero()[:, 0].tolist():
        weights = (sizes - 1).clamp(min=0).float()
        if weights.sum() <= 0:
            return
        donor = int(torch.multinomial(weights, 1, generator=generator))
        centroids[empty] = centroids[donor] * (1.0 + SPLIT_EPSILON)
        centroids[donor] = centroids[donor] * (1.0 - SPLIT_EPSILON)
        sizes[empty] = sizes[donor] // 2
        sizes[donor] -= sizes[empty]


def build_prototypes(
    feature_maps: Sequence[Tensor],
    ratio: float = 0.1,
    iterations: int = 300,
    seed: int = 0,
    use_gpu: bool | None = None,
    backend: str = "faiss",
) -> list[Tensor]:
    """Per-scale k-means of [N, c, h, w] maps -> list of [K, c, h, w] prototypes."""
    prototypes = []
    for maps in feature_maps:
        centroids = kmeans_prototypes(maps.flatten(1), ratio, iterations, seed, use_gpu, backend)
        prototypes.append(centroids.view(-1, *maps.shape[1:]))
    return prototypes
