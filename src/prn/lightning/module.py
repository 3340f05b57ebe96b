"""Lightning wrapper around the pure-torch :class:`prn.models.PRNet`.

Training, the optimiser and evaluation live here; the network itself stays free of
Lightning so it can be exported or reused. There is no validation-driven model
selection: the weights that are tested are the weights of the last step.
"""

from __future__ import annotations

import time
from typing import Any

import lightning as L
import torch

from prn.losses import PRNLoss
from prn.metrics import AnomalyMetrics
from prn.models import PRNet, anomaly_maps, anomaly_maps_and_scores


class PRNModule(L.LightningModule):
    """Trains PRN on composed batches and reports image and pixel metrics at test.

    The network is built from ``net_config`` (the keyword arguments of ``PRNet``) so a
    checkpoint alone rebuilds it: ``PRNModule.load_from_checkpoint(path)``. ``data_config``
    (the datamodule's resolved config) is only stored, so evaluation can rebuild the same
    split, with the same seen anomalies left out of the test set.
    """

    def __init__(
        self,
        net_config: dict[str, Any],
        data_config: dict[str, Any] | None = None,
        lr: float = 1e-4,
        weight_decay: float = 1e-2,
        focal_weight: float = 5.0,
        focal_alpha: float = 0.5,
        focal_gamma: float = 4.0,
        top_k: int = 100,
        channels_last: bool = False,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.net = PRNet(**net_config)
        self.loss = PRNLoss(focal_weight, focal_alpha, focal_gamma)
        self.metrics = AnomalyMetrics()
        self.test_results: dict[str, float] = {}
        self.inference_seconds = 0.0
        self.inference_images = 0

    def setup(self, stage: str) -> None:
        if self.hparams.channels_last:
            self.net.to(memory_format=torch.channels_last)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Anomaly map in [0, 1], shape ``[B, 1, H, W]``."""
        return anomaly_maps(self.net, self._as_input(images))

    def predict_maps_and_scores(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Float32 anomaly maps and image scores (mean of the top-k pixels, paper Sec. 3.5)."""
        with torch.autocast(images.device.type, enabled=False):
            return anomaly_maps_and_scores(self.net, self._as_input(images.float()), self.hparams.top_k)

    def _as_input(self, images: torch.Tensor) -> torch.Tensor:
        """Images in the memory format of the weights (NHWC when ``channels_last``)."""
        return images.contiguous(memory_format=torch.channels_last) if self.hparams.channels_last else images

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        losses = self.loss(self.net(self._as_input(batch["image"])), batch["mask"])
        batch_size = batch["image"].shape[0]
        self.log("train/loss", losses["loss"], prog_bar=True, batch_size=batch_size)
        self.log("train/smooth_l1", losses["smooth_l1"], batch_size=batch_size)
        self.log("train/focal", losses["focal"], batch_size=batch_size)
        return losses["loss"]

    @property
    def inference_seconds_per_image(self) -> float:
        """Network time per test image (map + score, no data loading), paper Table 3."""
        return self.inference_seconds / max(self.inference_images, 1)

    def on_test_epoch_start(self) -> None:
        self.metrics.reset()
        self.inference_seconds, self.inference_images = 0.0, 0

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        maps, scores = self._timed_inference(batch["image"])
        masks = batch.get("mask")
        self.metrics.update(maps.float().cpu(), None if masks is None else masks.cpu(), scores.float().cpu(), batch["label"].cpu())

    def on_test_epoch_end(self) -> None:
        self.test_results = self.metrics.compute()
        for name, value in self.test_results.items():
            self.log(f"test/{name}", value, sync_dist=True)  # every rank scored the whole test set: same value

    def _timed_inference(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if images.is_cuda:
            torch.cuda.synchronize(images.device)
        start = time.perf_counter()
        maps, scores = self.predict_maps_and_scores(images)
        if images.is_cuda:
            torch.cuda.synchronize(images.device)
        self.inference_seconds += time.perf_counter() - start
        self.inference_images += images.shape[0]
        return maps, scores

    def predict_step(self, batch: dict[str, Any], batch_idx: int) -> dict[str, Any]:
        maps, scores = self.predict_maps_and_scores(batch["image"])
        return {"anomaly_map": maps.cpu(), "score": scores.cpu(), "path": batch.get("path")}

    def configure_optimizers(self) -> torch.optim.Optimizer:
        trainable = [p for p in self.net.parameters() if p.requires_grad]
        return torch.optim.Adam(trainable, lr=self.hparams.lr, weight_decay=self.hparams.weight_decay)
