"""Lightning wrapper around the pure-torch :class:`prn.models.PRNet`.

Training, the optimiser and evaluation live here; the network itself stays free of
Lightning so it can be exported or reused. Hydra builds every part (``conf/model/prn.yaml``):
the network, the loss, and the optimiser and scheduler as partials called here. There is
no validation-driven model selection: the weights that are tested are those of the last step.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from functools import partial
from typing import Any

import lightning as L
import torch
import torch.distributed as dist
from torch import Tensor, nn

from prn.calibration import Calibration
from prn.losses import PRNLoss
from prn.metrics import AnomalyMetrics
from prn.models import AnomalyScorer, PRNet, anomaly_maps, anomaly_maps_and_scores
from prn.models.scorer import map_components
from prn.score_selection import ScoreChoice, choose_score
from prn.utils.hardware import warn_if_bf16_is_emulated

OptimizerFactory = Callable[[Iterable[nn.Parameter]], torch.optim.Optimizer]
SchedulerFactory = Callable[[torch.optim.Optimizer], torch.optim.lr_scheduler.LRScheduler]
CALIBRATION_KEY = "prn_calibration"
SCORE_CHOICE_KEY = "prn_score_choice"
PAPER_OPTIMIZER: OptimizerFactory = partial(torch.optim.Adam, lr=1e-4, weight_decay=1e-2)


def per_rank(value: int) -> list[int]:
    """``value`` of every process, in rank order (just ``[value]`` without a process group)."""
    if not (dist.is_available() and dist.is_initialized()):
        return [value]
    gathered: list[int] = [0] * dist.get_world_size()
    dist.all_gather_object(gathered, value)
    return gathered


def gathered_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every process's rows, in rank order (just ``rows`` without a process group)."""
    if not (dist.is_available() and dist.is_initialized()):
        return rows
    gathered: list[list[dict[str, Any]]] = [[] for _ in range(dist.get_world_size())]
    dist.all_gather_object(gathered, rows)
    return [row for rank_rows in gathered for row in rank_rows]


class PRNModule(L.LightningModule):
    """Trains PRN on composed batches and reports image and pixel metrics at test.

    Hydra passes the built ``net``; a checkpoint rebuilds it from the stored ``net_config``
    (``PRNModule.load_from_checkpoint(path)``), with the encoder's weights taken from the
    checkpoint rather than downloaded. ``data_config`` (the datamodule's resolved config) is
    stored so that evaluation rebuilds the same split, with the same seen anomalies left
    out of the test set.
    """

    def __init__(
        self,
        net: PRNet | None = None,
        optimizer: OptimizerFactory = PAPER_OPTIMIZER,
        scheduler: SchedulerFactory | None = None,
        loss: nn.Module | None = None,
        top_k: int = 100,
        map_sigma: float = 0.0,
        memory_weight: float = 0.0,
        channels_last: bool = False,
        compile: bool = False,
        leave_self_out: bool = True,
        data_config: dict[str, Any] | None = None,
        net_config: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        if (net is None) == (net_config is None):
            raise ValueError(
                "PRNModule takes a network (net=PRNet(...)) or, from a checkpoint, its net_config: exactly one"
            )
        net = net if net is not None else PRNet(**net_config)
        saved_net_config = {
            **net.config,
            "encoder_weights": None,
            "allow_random_fallback": False,
        }  # weights: in the state dict
        self.save_hyperparameters(
            {
                "net_config": saved_net_config,
                "encoder_weights": net.config["encoder_weights"],
                "data_config": data_config,
                "top_k": top_k,
                "map_sigma": map_sigma,
                "memory_weight": memory_weight,
                "channels_last": channels_last,
            }
        )
        self.net = net
        self.compile_training = compile  # a run option, not part of the model: not saved in the checkpoint
        self.leave_self_out = leave_self_out  # training only (prn.models.prototypes): not saved either
        self._training_forward: Callable[[torch.Tensor], torch.Tensor] | None = None
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler
        self.loss = loss if loss is not None else PRNLoss()
        self.metrics = AnomalyMetrics()
        self.test_results: dict[str, float] = {}
        self.test_images_per_rank: list[int] = []
        self.test_rows: list[dict[str, Any]] = []  # per test image: path, defect type, label, score
        self.inference_seconds = 0.0
        self.inference_images = 0
        self.calibration: Calibration | None = None  # fitted on held-out normals after training (prn.calibration)
        self.score_choice: ScoreChoice | None = (
            None  # top_k, map_sigma and memory_weight chosen on held-out data (prn.score_selection)
        )

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        if self.calibration is not None:
            checkpoint[CALIBRATION_KEY] = self.calibration.to_dict()
        if self.score_choice is not None:
            checkpoint[SCORE_CHOICE_KEY] = self.score_choice.to_dict()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        saved = checkpoint.get(CALIBRATION_KEY)
        self.calibration = None if saved is None else Calibration.from_dict(saved)
        choice = checkpoint.get(SCORE_CHOICE_KEY)
        self.score_choice = None if choice is None else ScoreChoice.from_dict(choice)

    def apply_score_choice(self, choice: ScoreChoice) -> None:
        """Score with the chosen map smoothing, top-k and memory weight from now on (hyper-parameters: checkpoints keep them)."""
        self.score_choice = choice
        self.hparams.top_k, self.hparams.map_sigma = choice.top_k, choice.map_sigma
        self.hparams.memory_weight = choice.memory_weight

    def setup(self, stage: str) -> None:
        if self.hparams.channels_last:
            self.net.to(memory_format=torch.channels_last)
        if stage == "fit" and self.compile_training and self._training_forward is None:
            # the bound forward, not the module: no `_orig_mod.` in state-dict keys, and test,
            # predict and export keep running the plain network (no second compilation)
            self._training_forward = torch.compile(self.net.forward)

    def on_fit_start(self) -> None:
        warn_if_bf16_is_emulated(self.trainer.precision, self.device)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Anomaly map in [0, 1], shape ``[B, 1, H, W]``."""
        return anomaly_maps(self.net, self._as_input(images), self.memory_weight)

    @property
    def memory_weight(self) -> float:
        """The patch memory's share of the map (0: the network alone; checkpoints from before it have none)."""
        return float(self.hparams.get("memory_weight", 0.0))

    def scorer(self) -> AnomalyScorer:
        """The network with sigmoid, fusion, smoothing and top-k as one module: what exports and runtimes run."""
        return AnomalyScorer(self.net, self.hparams.top_k, self.hparams.get("map_sigma", 0.0), self.memory_weight)

    def predict_maps_and_scores(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Float32 anomaly maps and image scores (mean of the top-k pixels, paper Sec. 3.5)."""
        with torch.autocast(images.device.type, enabled=False):
            return anomaly_maps_and_scores(
                self.net,
                self._as_input(images.float()),
                self.hparams.top_k,
                self.hparams.get("map_sigma", 0.0),
                self.memory_weight,
            )

    def _as_input(self, images: torch.Tensor) -> torch.Tensor:
        """Images in the memory format of the weights (NHWC when ``channels_last``)."""
        return images.contiguous(memory_format=torch.channels_last) if self.hparams.channels_last else images

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        network = self._training_forward or self.net
        exclude = batch.get("base") if self.leave_self_out else None
        losses = self.loss(network(self._as_input(batch["image"]), exclude), batch["mask"])
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
        self.test_rows = []
        self.inference_seconds, self.inference_images = 0.0, 0

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        maps, scores = self._timed_inference(batch["image"])
        masks = batch.get("mask")
        self.test_rows.extend(
            {"path": path, "defect_type": defect_type, "label": int(label), "score": float(score)}
            for path, defect_type, label, score in zip(
                batch["path"], batch["defect_type"], batch["label"].tolist(), scores.tolist()
            )
        )
        self.metrics.update(
            maps.float().cpu(),
            None if masks is None else masks.cpu(),
            scores.float().cpu(),
            batch["label"].cpu(),
            batch.get("defect_type"),
        )

    def on_test_epoch_end(self) -> None:
        """Every rank scored its shard; ``compute`` syncs the states, so every rank logs the whole test set's value."""
        self.test_results = self.metrics.compute()
        self.test_images_per_rank = per_rank(self.inference_images)
        self.test_rows = gathered_rows(self.test_rows)
        for name, value in self.test_results.items():
            self.log(f"test/{name}", value, sync_dist=True)  # equal on every rank already: the mean changes nothing

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

    @torch.no_grad()
    def score_held_out_normals(self, loader: Iterable[dict[str, Any]]) -> tuple[list[float], list[float]]:
        """Image scores and per-image map maxima of the held-out normals, for :func:`prn.calibration.fit_calibration`.

        Every process scores the whole (small) set, so all ranks fit the same thresholds without a sync.
        """
        was_training, device = self.training, next(self.net.parameters()).device
        self.eval()
        scores: list[float] = []
        maxima: list[float] = []
        for batch in loader:
            maps, batch_scores = self.predict_maps_and_scores(batch["image"].to(device))
            scores.extend(batch_scores.float().cpu().tolist())
            maxima.extend(maps.flatten(1).amax(dim=1).float().cpu().tolist())
        self.train(was_training)
        return scores, maxima

    @torch.no_grad()
    def choose_score(self, loader: Iterable[dict[str, Any]]) -> ScoreChoice:
        """Pick map smoothing, top-k and memory weight on held-out normals and held-out anomalies (:func:`prn.score_selection.choose_score`)."""
        maps, memory, masks, labels = self.map_components(loader)
        return choose_score(maps, masks, labels, memory_maps=memory)

    @torch.no_grad()
    def map_components(self, loader: Iterable[dict[str, Any]]) -> tuple[Tensor, Tensor | None, Tensor, Tensor]:
        """Float32 network maps, patch-memory maps (None without memory), masks and labels of every image in
        ``loader``, unsmoothed and unfused: what every score candidate is computed from."""
        was_training, device = self.training, next(self.net.parameters()).device
        self.eval()
        with_memory = self.net.patch_memory is not None
        maps, memory_maps, masks, labels = [], [], [], []
        for batch in loader:
            images = self._as_input(batch["image"].to(device).float())
            with torch.autocast(device.type, enabled=False):
                if with_memory:
                    network_map, memory = map_components(self.net, images)
                    memory_maps.append(memory.float().cpu())
                else:
                    network_map = anomaly_maps(self.net, images)
            maps.append(network_map.float().cpu())
            masks.append(batch["mask"] if "mask" in batch else torch.zeros_like(maps[-1]))
            labels.append(batch["label"])
        self.train(was_training)
        memory = torch.cat(memory_maps) if with_memory else None
        return torch.cat(maps), memory, torch.cat(masks), torch.cat(labels)

    def predict_step(self, batch: dict[str, Any], batch_idx: int) -> dict[str, Any]:
        maps, scores = self.predict_maps_and_scores(batch["image"])
        return {"anomaly_map": maps.cpu(), "score": scores.cpu(), "path": batch.get("path")}

    def configure_optimizers(self) -> torch.optim.Optimizer | dict[str, Any]:
        """The configured optimiser over the trainable parameters (the frozen encoder stays out), and its scheduler."""
        optimizer = self.optimizer_factory([p for p in self.net.parameters() if p.requires_grad])
        if self.scheduler_factory is None:
            return optimizer
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": self.scheduler_factory(optimizer), "interval": "step"},
        }
