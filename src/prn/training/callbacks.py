"""Multi-scale prototypes (paper Sec. 3.1) built as a setup-stage Lightning callback.

At ``setup("fit")`` the frozen layer1–3 features of every normal training image go to the network's
``PrototypeBank.fit``, which builds what its match needs: k-means per scale (``prototypes.match=image``,
the paper) or a coreset of location vectors (``prototype_match=patch``); with
``prototypes.patch_memory`` a coreset of PatchCore descriptors joins them (``prn.models.patch_memory``);
with ``prototypes.pose_search`` the normals' reference pose is fitted first (``prn.models.registration``).
The result becomes buffers of the network, so checkpoints carry it and evaluation never recomputes it.
"""

from __future__ import annotations

import logging
import time

import lightning as L
import torch

from prn.models.patch_memory import build_patch_memory, median_normal_distance
from prn.models.prototypes import PrototypeFitting

log = logging.getLogger(__name__)


class PrototypeCallback(L.Callback):
    """Fills ``net.prototypes`` from the datamodule's normal training images."""

    def __init__(
        self,
        ratio: float = 0.1,
        iterations: int = 300,
        seed: int = 0,
        use_gpu: bool | None = None,
        refit: bool = False,
        patch_ratio: float = 0.01,
        max_patches: int = 4096,
        max_candidates: int = 100_000,
        memory_ratio: float = 0.01,
        max_memory: int = 16_384,
        memory_candidates: int = 200_000,
        kmeans_backend: str = "faiss",
    ) -> None:
        self.fitting = PrototypeFitting(
            ratio, iterations, seed, use_gpu, kmeans_backend, patch_ratio, max_patches, max_candidates
        )
        if not 0.0 < memory_ratio <= 1.0:
            raise ValueError(
                f"prototypes.memory_ratio must be in (0, 1], got {memory_ratio}: a fraction of all normal locations"
            )
        self.memory_ratio, self.max_memory, self.memory_candidates = memory_ratio, max_memory, memory_candidates
        self.memory_seconds = 0.0
        self.seed = seed
        self.refit = refit
        self.seconds = 0.0
        self.kmeans_on_gpu = False  # set when k-means runs: on a GPU wherever faiss-gpu sees one (use_gpu unset)

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        net = pl_module.net
        if stage != "fit" or not net.needs_prototypes:
            return
        memory, registration = net.patch_memory, net.registration
        fitted = [part.is_fitted for part in (net.prototypes, memory, registration) if part is not None]
        if all(fitted) and not self.refit:
            log.info("Prototypes already present (from a checkpoint): not recomputed")
            return
        datamodule = trainer.datamodule
        if datamodule is None or not hasattr(datamodule, "normal_dataloader"):
            raise RuntimeError(
                "PrototypeCallback needs a datamodule with normal_dataloader(): pass datamodule= to trainer.fit"
            )
        start = time.perf_counter()
        if registration is not None:
            self._fit_registration(registration, datamodule.normal_dataloader(), trainer.strategy.root_device)
        features = self._normal_features(net, datamodule.normal_dataloader(), trainer.strategy.root_device)
        if self.fitting.kmeans_backend == "torch":
            features = [maps.to(trainer.strategy.root_device) for maps in features]
        self.kmeans_on_gpu = net.prototypes.fit(features, self.fitting)
        prototypes = net.prototypes.prototypes()
        self.seconds = time.perf_counter() - start
        log.info(
            "Prototypes (%s match): %s per scale from %d normal images in %.1f s%s",
            net.prototypes.match,
            [p.shape[0] for p in prototypes],
            features[0].shape[0],
            self.seconds,
            " (k-means on the GPU)" if self.kmeans_on_gpu else "",
        )
        if memory is not None:
            self._fit_memory(memory, features, trainer.strategy.root_device)

    def _fit_memory(self, memory: torch.nn.Module, features: list[torch.Tensor], device: torch.device) -> None:
        """Coreset of the normal images' PatchCore descriptors, and the median normal distance (leave-self-out) as its unit."""
        start = time.perf_counter()
        descriptors = memory.descriptors([f.to(device) for f in features])
        vectors, sources = build_patch_memory(
            descriptors, self.memory_ratio, self.max_memory, self.memory_candidates, self.seed
        )
        scale = median_normal_distance(descriptors, vectors, sources, self.seed)
        memory.set_memory(vectors, sources, scale)
        self.memory_seconds = time.perf_counter() - start
        log.info(
            "Patch memory: %d of %d normal descriptors (%d channels), median normal distance %.3f, in %.1f s",
            vectors.shape[0],
            descriptors.shape[0] * descriptors.shape[2] * descriptors.shape[3],
            vectors.shape[1],
            scale,
            self.memory_seconds,
        )

    def _fit_registration(self, registration: torch.nn.Module, loader, device: torch.device) -> None:
        """The reference pose and its template, from every normal image (before the prototypes, made in that pose)."""
        start, home = time.perf_counter(), registration.template.device
        registration.to(device)
        signals = torch.cat([registration.signals(batch["image"].to(device)) for batch in loader])
        registration.fit(signals)
        registration.to(home)
        log.info(
            "Pose registration: template from %d normal images in %.1f s", signals.shape[0], time.perf_counter() - start
        )

    def _normal_features(self, net: torch.nn.Module, loader, device: torch.device) -> list[torch.Tensor]:
        """Frozen layer1–3 maps of every normal image, one ``[N, c, h, w]`` tensor per scale."""
        home = next(net.parameters()).device
        frozen = [net.encoder] if net.registration is None else [net.encoder, net.registration]
        for module in frozen:
            module.to(device)
        per_scale: list[list[torch.Tensor]] = []
        try:
            for batch in loader:
                maps = net.prototype_features(batch["image"].to(device))
                if not per_scale:
                    per_scale = [[] for _ in maps]
                for store, fmap in zip(per_scale, maps):
                    store.append(fmap.float().cpu())
        finally:
            for module in frozen:
                module.to(home)
        if not per_scale:
            raise RuntimeError(
                "No normal training images reached PrototypeCallback: check dataset.root and dataset.category"
            )
        return [torch.cat(store) for store in per_scale]


class TrainingTimer(L.Callback):
    """Wall time of the training loop alone (no data decoding, no prototypes), for honest s/step."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self._start = 0.0

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._start = time.perf_counter()

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.seconds = time.perf_counter() - self._start

    def seconds_per_step(self, steps: int) -> float:
        return self.seconds / max(steps, 1)
