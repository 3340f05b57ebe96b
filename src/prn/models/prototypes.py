"""Multi-scale prototypes and residual representation (paper Sec. 3.1, Eq. 1).

Prototypes are whole feature maps (L2 over the flattened c*h*w map), clustered with
FAISS k-means (``kmeans.py``) to K = ratio * N normal images (10 % in the paper, 300 iterations),
independently per scale, and frozen afterwards. ratio 1.0 means "no clustering":
every normal feature map is a prototype (Table 6).

Beyond the paper, ``match="patch"`` compares each location with its nearest normal
*patch* instead of the nearest whole map: the bank is a greedy k-center coreset (as in
PatchCore) of every normal location's feature vector, per scale. Whole-map matching
assumes the part sits at the same place in every image; when it shifts or turns, no
whole map fits and the residual is large everywhere, while the nearest patch still fits.
``match="location"`` sits between the two: the prototypes are whole maps as in the paper, but
each location takes its residual to whichever prototype is nearest *at that location*, so
different parts of an image may match different normal images (poses). With a ``window``,
a location may also take the vector a few cells away in the few whole maps nearest to the
image, for parts that move by more than the spacing between the normal images' poses.

Leave-self-out: a bank whose prototypes are single normal images (``ratio=1.0``, or patch
coresets) would let every training sample match *itself*, since training samples are built on
those very images. The residual of a training normal is then exactly zero, while a test normal's
never is, and the network learns "any residual is an anomaly" (the paper's poor PRN_100% in
Table 6). The bank therefore records which normal image each prototype came from
(``sources_j``; -1 for a k-means centroid of several), and training passes each sample's base
image as ``exclude``, so the residual is taken against the *other* normal images, as at test.

`PrototypeBank` builds itself (``fit``: k-means in ``kmeans.py``, coresets in ``coreset.py``) and searches
(``prototype_search.py``). It stores the prototypes as buffers so they travel with checkpoints and exports;
its buffers start empty (K = 0) and resize on `load_state_dict`, because K depends
on the data set and is only known after clustering.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from prn.models.coreset import build_patch_banks
from prn.models.fitted_buffers import resize_to_incoming
from prn.models.kmeans import build_prototypes, kmeans_uses_gpu, number_of_prototypes
from prn.models.prototype_search import (
    NO_SOURCE,
    PATCH_CHUNK,
    excluded_prototypes,
    location_major,
    nearest_in_window,
    nearest_prototype_indices,
    nearest_prototype_per_location,
    nearest_whole_maps,
    patch_vectors,
)

NUM_SCALES = 3
MATCHES = ("image", "patch", "location")


def prototype_sources(num_images: int, ratio: float) -> Tensor:
    """The normal image each whole-map prototype is: itself at ratio 1.0, none (centroids) below."""
    if ratio == 1.0:
        return torch.arange(num_images)
    return torch.full((number_of_prototypes(num_images, ratio),), NO_SOURCE, dtype=torch.long)


@dataclass(frozen=True)
class PrototypeFitting:
    """How a bank builds itself from the normal maps (``callbacks.prototypes``): k-means for whole maps
    (``ratio`` x N prototypes, ``iterations``, ``kmeans_backend``: faiss, on a GPU where faiss-gpu sees one
    unless ``use_gpu`` says otherwise, or torch on the maps' device), a coreset of location vectors for patches."""

    ratio: float = 0.1
    iterations: int = 300
    seed: int = 0
    use_gpu: bool | None = None
    kmeans_backend: str = "faiss"
    patch_ratio: float = 0.01
    max_patches: int = 4096
    max_candidates: int = 100_000

    def __post_init__(self) -> None:
        if not 0.0 < self.ratio <= 1.0:
            raise ValueError(
                f"prototypes.ratio must be in (0, 1], got {self.ratio}: use 0.1 for the paper's 10 %, 1.0 for no clustering"
            )
        if not 0.0 < self.patch_ratio <= 1.0:
            raise ValueError(
                f"prototypes.patch_ratio must be in (0, 1], got {self.patch_ratio}: PatchCore keeps 0.01 of the locations"
            )


def _require_same_map_shape(features: Tensor, prototypes: Tensor) -> None:
    if features.shape[1:] != prototypes.shape[1:]:
        raise ValueError(
            f"feature map {tuple(features.shape[1:])} does not match prototypes "
            f"{tuple(prototypes.shape[1:])}: prototypes were built at another image_size"
        )


class PrototypeBank(nn.Module):
    """Frozen per-scale prototypes; turns feature maps into residual maps |F - P*|.

    ``match="image"`` (the paper): ``[K, c, h, w]`` whole maps, P* = the nearest whole map.
    ``match="patch"``: ``[M, c]`` location vectors, P*(x) = the nearest vector to F(x).
    ``match="location"``: ``[K, c, h, w]`` whole maps, P*(x) = P_k(x) for the k nearest at x;
    with ``window`` r > 0, P*(x) = P_k(x + d) for the k among the ``candidates`` whole maps
    nearest to F and the offset |d| <= r cells nearest at x.
    """

    def __init__(
        self, num_scales: int = NUM_SCALES, match: str = "image", window: int = 0, candidates: int = 4
    ) -> None:
        super().__init__()
        if match not in MATCHES:
            raise ValueError(f"prototypes.match={match!r} must be one of {list(MATCHES)}")
        if window < 0 or (window > 0 and match != "location"):
            raise ValueError(f"prototypes.window={window} must be >= 0, and > 0 only with prototypes.match=location")
        if candidates < 1:
            raise ValueError(f"prototypes.candidates={candidates} must be >= 1")
        self.num_scales = num_scales
        self.match = match
        self.window, self.candidates = window, candidates
        for name in self.buffer_names:
            self.register_buffer(name, torch.empty(0, 0, 0, 0))
        for name in self.source_names:
            self.register_buffer(name, torch.empty(0, dtype=torch.long))

    @property
    def buffer_names(self) -> list[str]:
        return [f"prototypes_{scale}" for scale in range(1, self.num_scales + 1)]

    @property
    def source_names(self) -> list[str]:
        return [f"sources_{scale}" for scale in range(1, self.num_scales + 1)]

    def prototypes(self) -> list[Tensor]:
        return [getattr(self, name) for name in self.buffer_names]

    def sources(self) -> list[Tensor]:
        """Per scale, the normal image index each prototype came from (-1: a centroid of several)."""
        return [getattr(self, name) for name in self.source_names]

    @property
    def is_fitted(self) -> bool:
        return all(p.shape[0] > 0 for p in self.prototypes())

    def set_prototypes(self, prototypes: Sequence[Tensor], sources: Sequence[Tensor] | None = None) -> None:
        """Install one tensor per scale: [K, c, h, w] (image match) or [M, c] (patch match), and
        optionally the [K] normal image index each came from (default -1: none, never excluded)."""
        if len(prototypes) != self.num_scales:
            raise ValueError(f"expected {self.num_scales} prototype tensors, got {len(prototypes)}")
        sources = [None] * self.num_scales if sources is None else list(sources)
        if len(sources) != self.num_scales:
            raise ValueError(f"expected {self.num_scales} source tensors, got {len(sources)}")
        shape, ndim = ("[M, c]", 2) if self.match == "patch" else ("[K, c, h, w]", 4)
        for name, source_name, value, source in zip(self.buffer_names, self.source_names, prototypes, sources):
            if value.ndim != ndim or value.shape[0] == 0:
                raise ValueError(
                    f"{name} must be a non-empty {shape} tensor for match={self.match!r}, got {tuple(value.shape)}"
                )
            if source is None:
                source = torch.full((value.shape[0],), NO_SOURCE, dtype=torch.long)
            if tuple(source.shape) != (value.shape[0],):
                raise ValueError(
                    f"{source_name} must have one entry per prototype ({value.shape[0]}), got {tuple(source.shape)}"
                )
            current = getattr(self, name)
            setattr(self, name, value.detach().to(device=current.device, dtype=torch.float32).clone())
            setattr(self, source_name, source.detach().to(device=current.device, dtype=torch.long).clone())

    @torch.no_grad()
    def fit(self, feature_maps: Sequence[Tensor], fitting: PrototypeFitting = PrototypeFitting()) -> bool:
        """Build and install the prototypes from every normal image's ``[N, c, h, w]`` map per scale, as this
        bank's ``match`` needs them; True where k-means ran on a GPU."""
        if self.match == "patch":
            banks, sources = build_patch_banks(
                [maps.cpu() for maps in feature_maps],
                fitting.patch_ratio,
                fitting.max_patches,
                fitting.max_candidates,
                fitting.seed,
            )
            self.set_prototypes(banks, sources)
            return False
        clustering = fitting.ratio < 1.0
        if fitting.kmeans_backend == "torch":
            on_gpu = clustering and feature_maps[0].is_cuda
        else:
            on_gpu = clustering and kmeans_uses_gpu(fitting.use_gpu)
        prototypes = build_prototypes(
            feature_maps, fitting.ratio, fitting.iterations, fitting.seed, on_gpu, fitting.kmeans_backend
        )
        sources = [prototype_sources(feature_maps[0].shape[0], fitting.ratio)] * len(prototypes)
        self.set_prototypes(prototypes, sources)
        return on_gpu

    def residuals(self, features: Sequence[Tensor], exclude: Tensor | None = None) -> list[Tensor]:
        """Element-wise distance to the nearest prototype, per scale independently.

        ``exclude`` (training only): ``[B]`` normal image index each sample was built on (-1: none);
        prototypes that came from that image are skipped (leave-self-out, see the module docstring).
        """
        if not self.is_fitted:
            raise RuntimeError(
                "PrototypeBank has no prototypes yet: run the PrototypeCallback (or call "
                "set_prototypes) before training/inference with use_mp=True"
            )
        return [
            self._residual(scale, f, p, excluded_prototypes(exclude, s))
            for scale, (f, p, s) in enumerate(zip(features, self.prototypes(), self.sources(), strict=True), start=1)
        ]

    def _residual(self, scale: int, features: Tensor, prototypes: Tensor, forbidden: Tensor | None) -> Tensor:
        if self.match == "image":
            return self._scale_residual(features, prototypes, forbidden)
        if self.match == "patch":
            return self._patch_residual(features, prototypes, forbidden)
        return self._location_residual(features, prototypes, forbidden, self.window_radius(scale))

    def _location_keys(self, prototypes: Tensor) -> Tensor | None:
        """``location_major(prototypes)``, computed once per prototype tensor (the transpose costs more than
        the search); None while tracing for export, where the graph computes it."""
        if torch.compiler.is_compiling() or torch.jit.is_tracing():
            return None
        key = (prototypes.data_ptr(), prototypes._version, prototypes.device, tuple(prototypes.shape))
        cache = self.__dict__.setdefault("_location_cache", {})
        if key not in cache:
            if len(cache) >= self.num_scales:  # prototypes were replaced: drop the stale copies
                cache.clear()
            cache[key] = location_major(prototypes.float())  # as large as the prototypes themselves
        return cache[key]

    def window_radius(self, scale: int) -> int:
        """Search radius at ``scale`` (1 = layer1): ``window`` layer1 cells, the same image distance at coarser scales."""
        return math.ceil(self.window / 2 ** (scale - 1))

    def _location_residual(
        self, features: Tensor, prototypes: Tensor, forbidden: Tensor | None = None, radius: int = 0
    ) -> Tensor:
        """|F(x) - P_k(x)| with k the prototype nearest to F at x, chosen per location x.

        With ``window`` > 0: among the ``candidates`` whole maps nearest to F, at any location
        within ``radius`` cells of x (the part may sit a few cells away).
        """
        _require_same_map_shape(features, prototypes)
        if self.window > 0:
            with torch.no_grad(), torch.autocast(features.device.type, enabled=False):
                nearest = nearest_whole_maps(features, prototypes, self.candidates, forbidden)
                chosen = nearest_in_window(features.float(), prototypes[nearest], radius)
            return (features - chosen.to(features.dtype)).abs()
        with torch.no_grad(), torch.autocast(features.device.type, enabled=False):
            nearest = nearest_prototype_per_location(
                features.float(), prototypes.float(), self._location_keys(prototypes), forbidden
            )
        b, c, h, w = features.shape
        index = nearest.view(b, 1, h * w).expand(b, c, h * w)  # chosen[b, :, x] = prototypes[nearest[b, x], :, x]
        chosen = prototypes.flatten(2).gather(0, index).view(b, c, h, w)
        return (features - chosen.to(features.dtype)).abs()

    @staticmethod
    def _patch_residual(features: Tensor, bank: Tensor, forbidden: Tensor | None = None) -> Tensor:
        """|F(x) - nearest bank vector to F(x)| at every location x."""
        if features.shape[1] != bank.shape[1]:
            raise ValueError(f"feature maps have {features.shape[1]} channels but the patch bank {bank.shape[1]}")
        b, c, h, w = features.shape
        queries = patch_vectors(features)  # image by image: each image's row of ``forbidden`` covers its h*w locations
        with torch.no_grad():
            nearest = nearest_prototype_indices(queries.float(), bank, PATCH_CHUNK, forbidden)
        residual = (queries - bank[nearest].to(features.dtype)).abs()
        return residual.view(b, h, w, c).permute(0, 3, 1, 2)

    @staticmethod
    def _scale_residual(features: Tensor, prototypes: Tensor, forbidden: Tensor | None = None) -> Tensor:
        _require_same_map_shape(features, prototypes)
        with torch.no_grad():
            nearest = nearest_prototype_indices(features.flatten(1).float(), prototypes.flatten(1), forbidden=forbidden)
        return (features - prototypes[nearest].to(features.dtype)).abs()

    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str, *args: Any, **kwargs: Any) -> None:
        """Resize the (initially empty) buffers to the checkpoint's K before copying; checkpoints
        written before leave-self-out carry no sources: their prototypes count as centroids (-1)."""
        for name, source_name in zip(self.buffer_names, self.source_names):
            incoming = state_dict.get(prefix + name)
            if isinstance(incoming, Tensor) and prefix + source_name not in state_dict:
                state_dict[prefix + source_name] = torch.full((incoming.shape[0],), NO_SOURCE, dtype=torch.long)
            resize_to_incoming(self, state_dict, prefix, (name, source_name))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
