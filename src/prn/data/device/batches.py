"""Training batches made on the device: the loader carries only the plan, the anomalies are drawn where the model is.

With ``generation.on_device=true`` the training dataloader yields what :class:`ComposedBatchSampler` decides
for every slot (source, base normal, seed) and nothing else; Lightning moves that plan to the training
device and the datamodule's ``on_after_batch_transfer`` calls :class:`DeviceBatchMaker`, which builds
the same batch the CPU path would (``image``, ``mask``, ``label``, ``source``, ``base``) from the pool's
uint8 tensors with batched torch operations. The CPU workers that decoded, blended and augmented per
sample (the paper schedule's bottleneck on a GPU) are gone. A batch is reproducible from its slots'
seeds, whatever the device; it does not equal the CPU path's batch, but draws from the same distributions.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any, Protocol

import torch
from torch import Tensor
from torch.utils.data import Dataset

from prn.data.device.pool import PoolTensors, as_float
from prn.data.device.sources import DeviceExtendedAnomalies, DeviceSimulatedAnomalies
from prn.data.generation import ExtendedAnomalySource, SimulatedAnomalySource
from prn.data.training import NO_BASE, NORMAL, SEEN, SlotPlan
from prn.data.types import SourceFactory

PLAN_KEY = "plan_source"
SEED_MODULUS = 2**63 - 1


class DeviceSource(Protocol):
    """Makes the slots of one source in a batch: ``(pool, bases, generator) -> (images, masks)``."""

    def check_pool(self, pool: PoolTensors) -> None: ...

    def __call__(self, pool: PoolTensors, bases: Tensor, generator: torch.Generator) -> tuple[Tensor, Tensor]: ...


DEVICE_TWINS: dict[type, type] = {
    ExtendedAnomalySource: DeviceExtendedAnomalies,
    SimulatedAnomalySource: DeviceSimulatedAnomalies,
}


def device_twin(name: str, factory: SourceFactory) -> DeviceSource:
    """The device source built with the options of a CPU generator factory (``_target_`` + ``_partial_``)."""
    target = factory.func if isinstance(factory, functools.partial) else factory
    twin = DEVICE_TWINS.get(target)
    if twin is None or (isinstance(factory, functools.partial) and factory.args):
        raise ValueError(
            f"dataset.generators.{name} ({getattr(target, '__qualname__', target)!r}) has no device twin, so "
            f"generation.on_device=true cannot make it; use generation.on_device=false, or one of "
            f"{sorted(cls.__name__ for cls in DEVICE_TWINS)}"
        )
    keywords = factory.keywords if isinstance(factory, functools.partial) else {}
    return twin(**keywords)


class PlanSet(Dataset):
    """The dataset of the device path: a slot's plan, as tensors the default collate stacks."""

    def __init__(self, source_names: list[str]) -> None:
        self.codes = {name: code for code, name in enumerate(source_names)}

    def __getitem__(self, plan: SlotPlan) -> dict[str, Tensor]:
        name, index, seed = plan
        return {
            PLAN_KEY: torch.tensor(self.codes[name]),
            "base": torch.tensor(index),
            "seed": torch.tensor(seed % SEED_MODULUS),
        }


def is_plan(batch: Any) -> bool:
    return isinstance(batch, Mapping) and PLAN_KEY in batch


class DeviceBatchMaker:
    """Executes a plan batch on the device it arrived on; the pool moves there with the first batch."""

    def __init__(self, pool: PoolTensors, sources: Mapping[str, DeviceSource], source_names: list[str]) -> None:
        self.pool = pool
        self.sources = dict(sources)
        self.source_names = list(source_names)
        for source in self.sources.values():
            source.check_pool(pool)

    def __call__(self, plan: Mapping[str, Tensor]) -> dict[str, Any]:
        codes, bases = plan[PLAN_KEY], plan["base"]
        device = bases.device
        self.pool = self.pool.to(device)
        generator = torch.Generator(device=device).manual_seed(int(plan["seed"][0]))
        count = len(bases)
        images = torch.empty(count, 3, *self.pool.image_size, device=device)
        masks = torch.zeros(count, *self.pool.image_size, device=device)
        base_out = bases.clone()
        for code in codes.unique().tolist():
            name = self.source_names[code]
            members = (codes == code).nonzero()[:, 0]
            images[members], masks[members] = self._make(name, bases[members], generator)
            if name == SEEN:
                base_out[members] = NO_BASE
        images = images.clamp_(0.0, 1.0).mul_(255.0).round_().div_(255.0)  # the uint8 grid the CPU path's images sit on
        return {
            "image": images,
            "mask": masks[:, None],
            "label": (masks.flatten(1) > 0).any(dim=1).long(),
            "source": [self.source_names[code] for code in codes.tolist()],
            "base": base_out,
        }

    def _make(self, name: str, bases: Tensor, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        pool = self.pool
        if name == NORMAL:
            return pool.normal_images(bases), torch.zeros(len(bases), *pool.image_size, device=bases.device)
        if name == SEEN:
            chosen = torch.randint(len(pool.seen_images), (len(bases),), generator=generator, device=bases.device)
            return as_float(pool.seen_images[chosen]), pool.seen_masks[chosen].float()
        return self.sources[name](pool, bases, generator)
