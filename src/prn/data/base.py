"""The generic Lightning datamodule: scan and validate, decode every image once, then serve batches.

:class:`AnomalyDataModule` is generic over a *scanner* (``(root, category) -> DatasetSplit``)
so that every benchmark only has to describe its folder layout (``prn.data.mvtec``,
``prn.data.btad``, ...). It applies the seen-anomaly protocol of ``prn.data.split`` and
writes the resulting split to ``split.json``. With ``pose_jitter`` set, every decoded
image and its mask are shifted and rotated (``prn.data.pose_jitter``), a stress test.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from lightning.pytorch import LightningDataModule
from torch.utils.data import DataLoader, Dataset

from prn.data.device.batches import DeviceBatchMaker, PlanSet, device_twin, is_plan
from prn.data.device.pool import PoolTensors
from prn.data.errors import DatasetError
from prn.data.eval_set import EvalImageSet, ShardSampler
from prn.data.generation.held_out import HELD_OUT_KINDS, HeldOutAnomalySource, defect_type
from prn.data.image_io import aspect_image_size, decode_images, decode_masks, image_size_of, parse_image_size
from prn.data.pose_jitter import apply_pose, checked_pose_jitter, jitter_params
from prn.data.records import DatasetSplit, Record
from prn.data.split import SEEN_FROM_CHOICES, ResolvedSplit, resolve_split
from prn.data.training import (
    BUILTIN_SOURCES,
    SEEN,
    ComposedBatchSampler,
    ComposedTrainingSet,
    validate_composition,
)
from prn.data.types import ForegroundFn, NormalImage, SourceFactory, TrainingPool
from prn.utils.io import write_json_atomically

SELECTION_STREAM = 1009  # seeds the anomalies generated on held-out normals apart from the training batches
SELECTION_DRAWS = 8  # held-out anomalies built on each held-out normal for the score choice
SELECTION_KEY = (SELECTION_DRAWS, HELD_OUT_KINDS)  # what a selection set is built from; a cached one must match

log = logging.getLogger(__name__)

Scanner = Callable[[Path, str], DatasetSplit]
DEFAULT_COMPOSITION = {"normal": 0.5, "seen": 0.5}


class AnomalyDataModule(LightningDataModule):
    """Few-shot supervised anomaly-detection data for any folder layout a ``scanner`` understands.

    ``composition`` maps training sources to batch fractions; ``normal`` and ``seen`` are
    built in, every other key must be a ``generators`` entry (a factory called with the
    decoded :class:`TrainingPool`).

    ``val_normals`` (a fraction or a count) holds normal training images out of training and
    prototypes; :meth:`calibration_dataloader` serves them for fitting the OK/NG thresholds.

    ``keep_aspect`` with an int ``image_size``: that int is the side of the pixel budget and
    ``(h, w)`` follows the normal training images' aspect ratio (:func:`aspect_image_size`), so a
    long part is not squashed into a square; the resolved size is what checkpoints record.

    ``pose_jitter`` (``{shift, rotation}``, default ``None``) gives every decoded image --
    normals, seen anomalies and test images -- and its mask one random rotation about the
    centre and shift, drawn from ``seed`` and the file's path relative to ``root``.
    """

    def __init__(
        self,
        root: str | Path,
        category: str,
        *,
        scanner: Scanner,
        image_size: int | Sequence[int] = 256,
        num_seen_anomalies: int = 10,
        seen_from: str = "test",
        seed: int = 0,
        batch_size: int = 8,
        eval_batch_size: int = 16,
        num_workers: int | str = 0,
        composition: Mapping[str, float] | None = None,
        generators: Mapping[str, SourceFactory] | None = None,
        foreground: ForegroundFn | None = None,
        texture_categories: Iterable[str] = (),
        output_dir: str | Path | None = None,
        pose_jitter: Mapping[str, float] | None = None,
        val_normals: float | int = 0,
        generate_on_device: bool = False,
        keep_aspect: bool = False,
    ) -> None:
        super().__init__()
        self.root = Path(root).expanduser()
        self.category = str(category)
        self.scanner = scanner
        self.image_size = parse_image_size(image_size)
        self.num_seen_anomalies = _checked_int(num_seen_anomalies, "dataset.num_seen_anomalies", minimum=0)
        self.seen_from = _checked_choice(seen_from, SEEN_FROM_CHOICES, "dataset.seen_from")
        self.seed = _checked_int(seed, "dataset.seed", minimum=0)
        self.batch_size = _checked_int(batch_size, "dataset.batch_size", minimum=1)
        self.eval_batch_size = _checked_int(eval_batch_size, "dataset.eval_batch_size", minimum=1)
        self.num_workers = resolve_num_workers(num_workers)
        self.generators = dict((generators or {}).items())
        self.composition = validate_composition(
            DEFAULT_COMPOSITION if composition is None else composition, [*BUILTIN_SOURCES, *self.generators]
        )
        if self.composition.get(SEEN, 0.0) > 0 and self.num_seen_anomalies == 0:
            raise DatasetError(
                "dataset.composition.seen > 0 but dataset.num_seen_anomalies=0; "
                "set dataset.num_seen_anomalies > 0 or dataset.composition.seen=0."
            )
        self.foreground = foreground
        self.texture_categories = tuple(str(name) for name in texture_categories)
        self.output_dir = None if output_dir is None else Path(output_dir).expanduser()
        self.pose_jitter = checked_pose_jitter(pose_jitter)
        self.val_normals = val_normals  # checked against the number of normals when the split is resolved
        self.generate_on_device = bool(generate_on_device)
        self._device_batches: DeviceBatchMaker | None = None
        self.pool: TrainingPool | None = None
        self._split: ResolvedSplit | None = None
        self._train_set: ComposedTrainingSet | None = None
        self._test_set: EvalImageSet | None = None
        if keep_aspect and isinstance(image_size, (int, np.integer)):  # an explicit [h, w] is taken as given
            self.image_size = aspect_image_size(
                [image_size_of(record.image_path) for record in self.split.train_normal], self.image_size[0]
            )

    @property
    def is_texture(self) -> bool:
        return self.category in self.texture_categories

    def setup(self, stage: str | None = None) -> None:
        """``fit``: decode normals + seen anomalies and build the pool; ``test``/``predict``/``validate``: decode the test set."""
        if stage in (None, "fit"):
            self._setup_fit()
        if stage in (None, "test", "predict", "validate"):
            self._setup_test()
        if self.output_dir is not None:
            write_json_atomically(self.output_dir / "split.json", self.split_summary())

    def train_dataloader(self) -> DataLoader:
        self._setup_fit()
        trainer = self.trainer
        replicas, rank = (trainer.world_size, trainer.global_rank) if trainer is not None else (1, 0)
        sampler = ComposedBatchSampler(
            len(self.pool.normals), self.composition, self.batch_size, self.seed, num_replicas=replicas, rank=rank
        )
        if self._device_batches is not None:  # the loader carries plans; on_after_batch_transfer makes the batch
            return DataLoader(PlanSet(self._device_batches.source_names), batch_sampler=sampler)
        return self._loader(self._train_set, batch_sampler=sampler)

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        """With ``generation.on_device``, a training plan becomes its batch here, on the training device."""
        if self._device_batches is not None and is_plan(batch):
            return self._device_batches(batch)
        return batch

    def test_dataloader(self) -> DataLoader:
        """The test set in file order; under DDP each rank gets its own shard (see :class:`ShardSampler`)."""
        self._setup_test()
        trainer = self.trainer
        if trainer is not None and trainer.world_size > 1:
            sampler = ShardSampler(len(self._test_set), trainer.world_size, trainer.global_rank)
            return self._loader(self._test_set, batch_size=self.eval_batch_size, sampler=sampler)
        return self._loader(self._test_set, batch_size=self.eval_batch_size, shuffle=False)

    def predict_dataloader(self) -> DataLoader:
        return self.test_dataloader()

    def normal_dataloader(self) -> DataLoader:
        """The normal training images in file order, unaugmented: what the prototypes are built from."""
        self._setup_fit()
        normals = EvalImageSet(
            self.split.train_normal, [normal.image for normal in self.pool.normals], [None] * len(self.pool.normals)
        )
        return self._loader(normals, batch_size=self.eval_batch_size, shuffle=False)

    def calibration_dataloader(self) -> DataLoader | None:
        """The held-out normal images (``val_normals``), unaugmented, or None when none are held out."""
        records = self.split.val_normal
        if not records:
            return None
        images, _ = self._decode(records, with_masks=False)
        return self._loader(
            EvalImageSet(records, images, [None] * len(records)), batch_size=self.eval_batch_size, shuffle=False
        )

    def selection_dataloader(self) -> DataLoader | None:
        """Held-out normals and, built on each, ``SELECTION_DRAWS`` anomalies of kinds no training source makes (with
        their masks): where the image score, map smoothing and memory weight are chosen (``prn.score_selection``).
        None without held-out normals.

        Held out, because every real defect is one the network never trained on. Anomalies of the training
        sources are the network's own lessons: on them its map scored 0.99 region-balanced pixel AUROC, and a
        choice made on them trusted it alone and ranked candidates unlike the test (shifted transistor seed 0:
        rank correlation 0.22; transistor seed 1: 0.05; on held-out kinds 0.51 and 0.46; docs/moving-parts.md).
        An anomaly that changed nothing visible is left out: it is not one."""
        records = self.split.val_normal
        if not records:
            return None
        images, _ = self._decode(records, with_masks=False)
        bases = [NormalImage(image, foreground) for image, foreground in zip(images, self._foregrounds(images))]
        source = HeldOutAnomalySource()
        anomalies, masks, anomaly_records = [], [], []
        for index, (record, base) in enumerate(zip(records, bases)):
            for draw in range(SELECTION_DRAWS):
                image, mask, kind = source.draw(base, self._selection_rng(index, draw))
                if not np.any(mask):
                    continue
                anomalies.append(image)
                masks.append(np.asarray(mask, dtype=np.float32))
                anomaly_records.append(Record(record.image_path, 1, None, defect_type(kind)))
        selection = EvalImageSet([*records, *anomaly_records], [*images, *anomalies], [None] * len(records) + masks)
        return self._loader(selection, batch_size=self.eval_batch_size, shuffle=False)

    def _selection_rng(self, normal: int, draw: int) -> np.random.Generator:
        """The random stream of one selection anomaly, apart from every training batch's."""
        return np.random.default_rng(np.random.SeedSequence([self.seed, SELECTION_STREAM, normal, draw]))

    @property
    def split(self) -> ResolvedSplit:
        """The resolved split; scanning (no decoding) happens on first access."""
        if self._split is None:
            self._split = self._resolve_split()
        return self._split

    def split_summary(self) -> dict[str, Any]:
        """Counts and file lists (relative to ``root``) that make a run's split auditable."""
        split = self.split
        return {
            "root": str(self.root),
            "category": self.category,
            "seed": self.seed,
            "num_seen_anomalies": len(split.seen),
            "seen_from": self.seen_from,
            "seen_source": self._seen_source(),
            "pixel_labels": split.pixel_labels,
            "image_size": list(self.image_size),
            "pose_jitter": None if self.pose_jitter is None else dict(self.pose_jitter),
            "composition": dict(self.composition),
            "counts": {
                "train_normal": len(split.train_normal),
                "val_normal": len(split.val_normal),
                "seen_anomalies": len(split.seen),
                "test": len(split.test),
                "test_good": sum(record.label == 0 for record in split.test),
                "test_anomalous": sum(record.label == 1 for record in split.test),
            },
            "train_normal": [self._relative(record.image_path) for record in split.train_normal],
            "val_normal": [self._relative(record.image_path) for record in split.val_normal],
            "seen_anomalies": [self._relative(record.image_path) for record in split.seen],
            "test": [self._relative(record.image_path) for record in split.test],
        }

    def _seen_source(self) -> dict[str, Any]:
        """Where the seen anomalies came from and what happened to the ones not drawn."""
        split = self.split
        not_drawn = split.seen_candidates - len(split.seen)
        return {
            "split": self.seen_from,
            "candidates": split.seen_candidates,
            "drawn": len(split.seen),
            "not_drawn": not_drawn,
            "not_drawn_go_to": "test" if self.seen_from == "test" else "unused",
        }

    def _resolve_split(self) -> ResolvedSplit:
        """Scan (subclasses may prepare the data first), then apply the seen-anomaly protocol."""
        found = self.scanner(self.root, self.category)
        return resolve_split(found, self.seen_from, self.num_seen_anomalies, self.seed, self.val_normals)

    def check_fit_inputs(self) -> None:
        """Fail now on a missing input of a generator that batches draw from (a DTD folder), not after the
        minutes of decoding and foreground estimation that building the generators waits for.

        Not in the constructor: evaluation rebuilds the training datamodule and never generates anything.
        """
        for name, factory in self.generators.items():
            if self.composition.get(name, 0.0) > 0:
                check_source_inputs(factory)

    def _setup_fit(self) -> None:
        if self._train_set is not None:
            return
        self.check_fit_inputs()
        split = self.split
        normal_images, _ = self._decode(split.train_normal, with_masks=False)
        seen_images, seen_masks = self._decode(split.seen, with_masks=True)
        foregrounds = self._foregrounds(normal_images)
        self.pool = TrainingPool(
            normals=[NormalImage(image, foreground) for image, foreground in zip(normal_images, foregrounds)],
            seen_images=seen_images,
            seen_masks=seen_masks,
            image_size=self.image_size,
            category=self.category,
            is_texture=self.is_texture,
        )
        # Only the sources a batch draws from are built: a switched-off strategy costs nothing
        # and cannot fail on inputs it would never use (e.g. no DTD folder with HEA off).
        sources = {
            name: factory(self.pool) for name, factory in self.generators.items() if self.composition.get(name, 0.0) > 0
        }
        self._train_set = ComposedTrainingSet(self.pool, sources, self.composition)
        if self.generate_on_device:
            self._device_batches = self._device_batch_maker()

    def _device_batch_maker(self) -> DeviceBatchMaker:
        """The device twins of the generators a batch draws from, and the pool (with DTD textures) as tensors."""
        twins = {
            name: device_twin(name, factory)
            for name, factory in self.generators.items()
            if self.composition.get(name, 0.0) > 0
        }
        texture_files = next(
            (twin.texture_files for twin in twins.values() if getattr(twin, "texture_files", None)), None
        )
        pool = PoolTensors.from_pool(self.pool, texture_files)
        log.info("generation.on_device: pool of %.0f MB as uint8 tensors", pool.nbytes() / 2**20)
        return DeviceBatchMaker(pool, twins, list(self._train_set.sources))

    def _setup_test(self) -> None:
        if self._test_set is not None:
            return
        records, pixel_labels = self.split.test, self.split.pixel_labels
        if not pixel_labels:
            log.warning(
                "Test anomalies of %s/%s have no ground-truth masks: only image-level metrics (image AUROC) "
                "are computed; pixel AUROC, AUPRO and pixel AP are skipped.",
                self.root,
                self.category,
            )
        images, masks = self._decode(records, with_masks=pixel_labels)
        self._test_set = EvalImageSet(records, images, masks, with_masks=pixel_labels)

    def _decode(self, records: Sequence[Record], with_masks: bool) -> tuple[list[np.ndarray], list[np.ndarray | None]]:
        """Images (and masks, else ``None``s) at the model size, each pair pose-jittered alike when that is on."""
        images = decode_images([record.image_path for record in records], self.image_size)
        if with_masks:
            masks = decode_masks([record.mask_path for record in records], self.image_size)
        else:
            masks = [None] * len(records)
        if self.pose_jitter is None:
            return images, masks
        shift, rotation = self.pose_jitter["shift"], self.pose_jitter["rotation"]
        jittered = [
            apply_pose(image, mask, jitter_params(self._relative(record.image_path), self.seed, shift, rotation))
            for record, image, mask in zip(records, images, masks)
        ]
        return [image for image, _ in jittered], [mask for _, mask in jittered]

    def _foregrounds(self, images: list[np.ndarray]) -> list[np.ndarray | None]:
        """Object categories get one bool mask per normal image; textures (or no fn) get None."""
        if self.foreground is None or self.is_texture:
            return [None] * len(images)
        masks = list(self.foreground(images, self.category))
        if len(masks) != len(images) or any(np.shape(mask) != self.image_size for mask in masks):
            raise DatasetError(
                f"dataset.foreground returned {len(masks)} masks for {len(images)} images of category "
                f"{self.category!r}; it must return one {self.image_size} mask per image."
            )
        return [np.asarray(mask, dtype=bool) for mask in masks]

    def _loader(self, dataset: Dataset, **options: Any) -> DataLoader:
        return DataLoader(
            dataset,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
            pin_memory=torch.cuda.is_available(),
            **options,
        )

    def _relative(self, path: Path) -> str:
        try:
            return path.relative_to(self.root).as_posix()
        except ValueError:
            return path.as_posix()


def check_source_inputs(factory: SourceFactory) -> None:
    """Call ``check_inputs`` of the class a generator factory builds, with the factory's options, if it has one.

    Generators are configured as partials (``_partial_: true``) and called only with the decoded pool;
    a class defines ``check_inputs(**options)`` to fail on its other inputs before that.
    """
    check = getattr(getattr(factory, "func", factory), "check_inputs", None)
    if check is not None:
        check(**getattr(factory, "keywords", {}))


def resolve_num_workers(value: int | str) -> int:
    """An int >= 0, or ``auto``: up to 8 workers when a GPU trains, none on a CPU-only machine.

    On a GPU the network step is far shorter than generating a batch in one process
    (benchmarks/data_pipeline.py), so workers decide the speed; on a CPU the cores are
    better spent on the network, and generation is about 1 % of a step.
    """
    if value == "auto":
        return min(8, max(1, (os.cpu_count() or 2) - 1)) if torch.cuda.is_available() else 0
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
        raise DatasetError(f"num_workers={value!r} must be auto or an int >= 0.")
    return int(value)


def _checked_int(value: Any, option: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise DatasetError(f"{option}={value!r} must be an int >= {minimum}.")
    return int(value)


def _checked_choice(value: Any, choices: Sequence[str], option: str) -> str:
    if value not in choices:
        raise DatasetError(f"{option}={value!r} is not one of {list(choices)}.")
    return str(value)
