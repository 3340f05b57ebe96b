"""Training set with a fixed per-batch composition of sources (paper Sec. 4: 32 normal +
16 extended + 16 simulated anomalies per batch of 64).

The batch sampler decides, for every slot, which source fills it, which normal image is
its base and which seed drives its randomness; the dataset only executes that plan. All
randomness therefore comes from ``(seed, epoch, batch, position)``, so a batch is the
same whatever the number of dataloader workers.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Mapping
from numbers import Real

import numpy as np
import torch
from torch.utils.data import Dataset

from prn.data.errors import DatasetError
from prn.data.types import AnomalySource, NormalImage, TrainingPool

NORMAL = "normal"
SEEN = "seen"
NO_BASE = -1  # a seen anomaly is not built on a normal training image
BUILTIN_SOURCES = (NORMAL, SEEN)
COMPOSITION_OPTION = "dataset.composition"

SlotPlan = tuple[str, int, int]
"""``(source_name, normal_index, item_seed)``: everything needed to make one training item."""


def validate_composition(
    composition: Mapping[str, float], known_sources: Iterable[str] | None = None
) -> dict[str, float]:
    """Check fractions (non-negative, sum 1, some normals) and, if given, that every key is a known source."""
    if not isinstance(composition, Mapping) or not composition:
        raise DatasetError(
            f"{COMPOSITION_OPTION}={composition!r} must map source names to fractions, e.g. {{normal: 0.5, seen: 0.5}}."
        )
    fractions = {}
    for name, fraction in composition.items():
        if isinstance(fraction, bool) or not isinstance(fraction, Real) or not math.isfinite(fraction) or fraction < 0:
            raise DatasetError(f"{COMPOSITION_OPTION}.{name}={fraction!r} must be a number >= 0.")
        fractions[str(name)] = float(fraction)
    total = sum(fractions.values())
    if not math.isclose(total, 1.0, abs_tol=1e-6):
        raise DatasetError(f"{COMPOSITION_OPTION} fractions sum to {total:g}; they must sum to 1 (got {fractions}).")
    if fractions.get(NORMAL, 0.0) <= 0:
        raise DatasetError(f"{COMPOSITION_OPTION}.{NORMAL} must be > 0: an epoch is one pass over the normal images.")
    if known_sources is not None:
        known = sorted(set(known_sources))
        unknown = sorted(set(fractions) - set(known))
        if unknown:
            raise DatasetError(
                f"{COMPOSITION_OPTION} names unknown sources {unknown}; available: {known}. "
                "Add a generator under dataset.generators or remove the key."
            )
    return fractions


def slot_counts(composition: Mapping[str, float], batch_size: int) -> dict[str, int]:
    """Split ``batch_size`` by largest remainder; every positive source gets >= 1 slot when it fits."""
    fractions = validate_composition(composition)
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise DatasetError(f"dataset.batch_size={batch_size!r} must be an int >= 1.")
    positive = [name for name, fraction in fractions.items() if fraction > 0]
    exact = {name: fractions[name] * batch_size for name in positive}
    counts = {name: math.floor(value + 1e-9) for name, value in exact.items()}
    by_remainder = sorted(
        positive, key=lambda name: (-(exact[name] - counts[name]), -fractions[name], positive.index(name))
    )
    for name in by_remainder[: batch_size - sum(counts.values())]:
        counts[name] += 1
    if batch_size >= len(positive):
        _give_every_source_a_slot(counts)
    if counts[NORMAL] < 1:
        raise DatasetError(f"dataset.batch_size={batch_size} leaves no slot for normal images; raise it.")
    return counts


def _give_every_source_a_slot(counts: dict[str, int]) -> None:
    for name in [name for name, count in counts.items() if count == 0]:
        donor = max(counts, key=lambda other: counts[other])
        counts[donor] -= 1
        counts[name] = 1


def image_tensor(image: np.ndarray) -> torch.Tensor:
    """``uint8 (H, W, 3)`` to the ``float (3, H, W)`` in ``[0, 1]`` that the model takes."""
    return torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1))).float().div_(255.0)


def item_seed(seed: int, epoch: int, batch: int, position: int) -> int:
    """A well-mixed 64-bit seed for one slot, independent of workers and of the other slots."""
    return int(np.random.SeedSequence([seed, epoch, batch, position]).generate_state(1, np.uint64)[0])


class _EpochForwarder:
    """Lightning calls ``set_epoch`` on ``batch_sampler.sampler`` only; this forwards it."""

    def __init__(self, owner: ComposedBatchSampler) -> None:
        self._owner = owner

    def set_epoch(self, epoch: int) -> None:
        self._owner.set_epoch(epoch)


class ComposedBatchSampler:
    """Yields batches of :data:`SlotPlan` with a fixed number of slots per source.

    An epoch is one pass over the normal images in the normal slots; the last batch is
    topped up with normals from a fresh permutation so every batch keeps the same
    composition. Generated slots draw their base normal image at random.

    Under data parallelism (``num_replicas`` > 1) every process builds the same epoch plan
    and takes every ``num_replicas``-th batch from ``rank`` on, wrapping round so that
    all processes make the same number of steps (DDP would hang otherwise).
    """

    def __init__(
        self,
        num_normals: int,
        composition: Mapping[str, float],
        batch_size: int,
        seed: int,
        shuffle: bool = True,
        num_replicas: int = 1,
        rank: int = 0,
    ) -> None:
        if isinstance(num_normals, bool) or not isinstance(num_normals, (int, np.integer)) or num_normals < 1:
            raise DatasetError(
                f"ComposedBatchSampler needs at least one normal image, got num_normals={num_normals!r}."
            )
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
            raise DatasetError(f"dataset.seed={seed!r} must be an int >= 0.")
        self.num_normals = int(num_normals)
        self.counts = slot_counts(composition, batch_size)
        self.batch_size = int(batch_size)
        self.seed = int(seed)
        self.shuffle = shuffle
        self.epoch = 0
        if not 0 <= rank < num_replicas:
            raise DatasetError(f"ComposedBatchSampler rank={rank} must be in [0, num_replicas={num_replicas}).")
        self.num_replicas, self.rank = int(num_replicas), int(rank)
        self.sampler = _EpochForwarder(self)

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose batches ``__iter__`` yields (same seed + epoch -> same batches)."""
        self.epoch = int(epoch)

    @property
    def batches_per_epoch(self) -> int:
        """Batches of the whole epoch plan, over all processes."""
        return math.ceil(self.num_normals / self.counts[NORMAL])

    def __len__(self) -> int:
        return math.ceil(self.batches_per_epoch / self.num_replicas)

    def __iter__(self) -> Iterator[list[SlotPlan]]:
        plan = self._epoch_plan()
        for step in range(len(self)):
            yield plan[(step * self.num_replicas + self.rank) % len(plan)]

    def _epoch_plan(self) -> list[list[SlotPlan]]:
        rng = np.random.default_rng(np.random.SeedSequence([self.seed, self.epoch]))
        normal_slots = self.counts[NORMAL]
        normal_order = self._normal_order(rng, self.batches_per_epoch * normal_slots)
        plan = []
        for batch in range(self.batches_per_epoch):
            slots = [(NORMAL, int(index)) for index in normal_order[batch * normal_slots : (batch + 1) * normal_slots]]
            for name, count in self.counts.items():
                if name != NORMAL:
                    slots.extend((name, int(index)) for index in rng.integers(self.num_normals, size=count))
            plan.append(
                [
                    (name, index, item_seed(self.seed, self.epoch, batch, position))
                    for position, (name, index) in enumerate(slots)
                ]
            )
        return plan

    def _normal_order(self, rng: np.random.Generator, length: int) -> np.ndarray:
        """Each normal once, then more passes only to fill the last batch."""
        passes = math.ceil(length / self.num_normals)
        if self.shuffle:
            order = np.concatenate([rng.permutation(self.num_normals) for _ in range(passes)])
        else:
            order = np.tile(np.arange(self.num_normals), passes)
        return order[:length]


class ComposedTrainingSet(Dataset):
    """Makes the training item a :data:`SlotPlan` asks for.

    Built-in sources: ``normal`` (the base image, empty mask) and ``seen`` (a random seen
    anomaly with its ground-truth mask). Generated sources come from ``sources``.
    """

    def __init__(
        self,
        pool: TrainingPool,
        sources: Mapping[str, AnomalySource] | None = None,
        composition: Mapping[str, float] | None = None,
    ) -> None:
        sources = dict(sources or {})
        clashes = sorted(set(sources) & set(BUILTIN_SOURCES))
        if clashes:
            raise DatasetError(f"dataset.generators may not be named {clashes}: those names are built in; rename them.")
        self.pool = pool
        self.sources: dict[str, AnomalySource] = {NORMAL: self._normal, SEEN: self._seen, **sources}
        if composition is not None:
            fractions = validate_composition(composition, self.sources)
            if fractions.get(SEEN, 0.0) > 0 and not pool.seen_images:
                raise _no_seen_anomalies()

    def __len__(self) -> int:
        return len(self.pool.normals)

    def __getitem__(self, plan: SlotPlan) -> dict:
        name, index, seed = plan
        if name not in self.sources:
            raise DatasetError(f"unknown training source {name!r}; available: {sorted(self.sources)}.")
        image, mask = self.sources[name](self.pool.normals[index], np.random.default_rng(seed))
        self._check_output(name, image, mask)
        return {
            "image": image_tensor(image),
            "mask": torch.from_numpy(np.array(mask, dtype=np.float32))[None],
            "label": torch.tensor(int(np.any(mask > 0)), dtype=torch.int64),
            "source": name,
            "base": torch.tensor(
                NO_BASE if name == SEEN else index, dtype=torch.int64
            ),  # for leave-self-out prototypes
        }

    @staticmethod
    def _normal(base: NormalImage, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        return base.image, np.zeros(base.image.shape[:2], dtype=np.float32)

    def _seen(self, base: NormalImage, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        if not self.pool.seen_images:
            raise _no_seen_anomalies()
        choice = int(rng.integers(len(self.pool.seen_images)))
        return self.pool.seen_images[choice], self.pool.seen_masks[choice].astype(np.float32)

    def _check_output(self, name: str, image: np.ndarray, mask: np.ndarray) -> None:
        """A plugged-in generator with the wrong output shape should fail here, by name."""
        height, width = self.pool.image_size
        if image.shape != (height, width, 3) or image.dtype != np.uint8 or np.shape(mask) != (height, width):
            raise DatasetError(
                f"training source {name!r} returned image {image.shape} {image.dtype} and mask {np.shape(mask)}; "
                f"expected uint8 ({height}, {width}, 3) and ({height}, {width})."
            )


def _no_seen_anomalies() -> DatasetError:
    return DatasetError(
        f"{COMPOSITION_OPTION}.{SEEN} > 0 but there are no seen anomalies; "
        f"set dataset.num_seen_anomalies > 0 or {COMPOSITION_OPTION}.{SEEN}=0."
    )
