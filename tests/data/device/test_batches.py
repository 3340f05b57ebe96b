"""``generation.on_device``: the loader carries plans, Lightning's batch hook makes the batch where the model is."""

from __future__ import annotations

from collections import Counter
from functools import partial
from pathlib import Path

import lightning
import pytest
import torch

from prn.data.device.batches import PLAN_KEY, device_twin, is_plan
from prn.data.device.sources import DeviceExtendedAnomalies, DeviceSimulatedAnomalies
from prn.data.generation import ExtendedAnomalySource, SimulatedAnomalySource
from prn.data.mvtec import MVTecDataModule
from prn.data.training import NO_BASE

COMPOSITION = {"normal": 0.5, "seen": 0.125, "ea": 0.125, "sa": 0.25}


def _module(root: Path, on_device: bool, **options) -> MVTecDataModule:
    generators = {
        "ea": partial(ExtendedAnomalySource, use_target_area=True),
        "sa": partial(SimulatedAnomalySource, use_heterologous=False, use_erase=True),
    }
    defaults = {"image_size": 64, "num_seen_anomalies": 3, "batch_size": 8, "eval_batch_size": 4}
    return MVTecDataModule(
        root,
        "widget",
        generators=generators,
        composition=COMPOSITION,
        generate_on_device=on_device,
        **{**defaults, **options},
    )


def test_twins_take_the_cpu_factorys_options():
    ea = device_twin("ea", partial(ExtendedAnomalySource, beta=(0.1, 0.2), max_placement_tries=3))
    assert isinstance(ea, DeviceExtendedAnomalies) and ea.beta == (0.1, 0.2) and ea.max_placement_tries == 3
    sa = device_twin("sa", partial(SimulatedAnomalySource, use_heterologous=False, use_target_area=False))
    assert isinstance(sa, DeviceSimulatedAnomalies) and sa.kinds == ["hoa"] and not sa.use_target_area


def test_a_generator_without_a_twin_is_named_with_the_fix():
    def my_scratches(pool):
        return None

    with pytest.raises(ValueError, match=r"dataset\.generators\.scratch .*generation\.on_device=false"):
        device_twin("scratch", my_scratches)


def test_plans_become_batches_of_the_cpu_paths_form(mvtec_root):
    cpu_module, device_module = _module(mvtec_root, False), _module(mvtec_root, True)
    cpu_batch = next(iter(cpu_module.train_dataloader()))
    plan = next(iter(device_module.train_dataloader()))
    assert is_plan(plan) and set(plan) == {PLAN_KEY, "base", "seed"} and "image" not in plan
    batch = device_module.on_after_batch_transfer(plan, 0)
    assert set(batch) == set(cpu_batch)
    assert Counter(batch["source"]) == Counter(cpu_batch["source"]) == {"normal": 4, "seen": 1, "ea": 1, "sa": 2}
    for key in ("image", "mask", "label", "base"):
        assert batch[key].shape == cpu_batch[key].shape and batch[key].dtype == cpu_batch[key].dtype, key
    image, mask = batch["image"], batch["mask"]
    assert 0.0 <= image.min() and image.max() <= 1.0 and torch.equal(image, (image * 255).round() / 255)
    for index, name in enumerate(batch["source"]):
        has_defect = bool(mask[index].any())
        assert batch["label"][index].item() == int(has_defect)
        assert has_defect == (name != "normal")
        if name == "normal":
            base = torch.from_numpy(device_module.pool.normals[int(batch["base"][index])].image)
            assert torch.equal((image[index] * 255).round().byte(), base.permute(2, 0, 1))
        assert (batch["base"][index].item() == NO_BASE) == (name == "seen")


def test_a_batch_is_reproducible_from_its_plan_and_epochs_differ(mvtec_root):
    module = _module(mvtec_root, True)
    loader = module.train_dataloader()
    plan = next(iter(loader))
    first, again = module.on_after_batch_transfer(plan, 0), module.on_after_batch_transfer(plan, 0)
    assert torch.equal(first["image"], again["image"]) and torch.equal(first["mask"], again["mask"])
    loader.batch_sampler.set_epoch(1)
    other = module.on_after_batch_transfer(next(iter(loader)), 0)
    assert not torch.equal(first["image"], other["image"])


def test_other_batches_pass_the_hook_untouched(mvtec_root):
    module = _module(mvtec_root, True)
    test_batch = next(iter(module.test_dataloader()))
    assert module.on_after_batch_transfer(test_batch, 0) is test_batch


def test_lightning_training_steps_see_the_made_batch(mvtec_root):
    class RecordingModule(lightning.LightningModule):
        def __init__(self):
            super().__init__()
            self.weight = torch.nn.Parameter(torch.zeros(1))
            self.seen = []

        def training_step(self, batch, batch_index):
            self.seen.append((batch["image"].shape, Counter(batch["source"])))
            return (self.weight - batch["image"].mean()) ** 2

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.0)

    model = RecordingModule()
    trainer = lightning.Trainer(
        max_steps=2,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        accelerator="cpu",
    )
    trainer.fit(model, datamodule=_module(mvtec_root, True))
    assert [shape for shape, _ in model.seen] == [(8, 3, 64, 64)] * 2
    assert model.seen[0][1] == {"normal": 4, "seen": 1, "ea": 1, "sa": 2}


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_the_batch_is_made_on_the_plans_device(mvtec_root):
    module = _module(mvtec_root, True)
    plan = {key: value.cuda() for key, value in next(iter(module.train_dataloader())).items()}
    batch = module.on_after_batch_transfer(plan, 0)
    assert batch["image"].is_cuda and batch["mask"].is_cuda and module._device_batches.pool.device.type == "cuda"
