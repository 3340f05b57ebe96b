"""Device EA and SA draw from the CPU sources' distributions: mask areas, where they land, how strong they are."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from prn.data.device.pool import PoolTensors
from prn.data.device.sources import (
    DeviceExtendedAnomalies,
    DeviceSimulatedAnomalies,
    affine_matrices,
    blend,
    roll_each,
    warp,
)
from prn.data.generation import ExtendedAnomalySource, SimulatedAnomalySource
from prn.data.types import NormalImage, TrainingPool

SIZE = 64
DRAWS = 160


def _part(rng: np.random.Generator) -> np.ndarray:
    """A bright square part with a dark slot and a little grain on a dark background."""
    image = np.full((SIZE, SIZE, 3), 30, np.uint8)
    image[16:48, 16:48] = (200, 180, 160)
    image[20:44, 30:34] = 60
    return np.clip(image + rng.integers(0, 12, image.shape), 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def pool() -> TrainingPool:
    rng = np.random.default_rng(0)
    foreground = np.zeros((SIZE, SIZE), bool)
    foreground[14:50, 14:50] = True
    seen_mask = np.zeros((SIZE, SIZE), bool)
    seen_mask[22:32, 18:30] = True
    seen = _part(rng)
    seen[seen_mask] = (250, 20, 20)
    return TrainingPool(
        normals=[NormalImage(_part(rng), foreground) for _ in range(6)],
        seen_images=[seen],
        seen_masks=[seen_mask],
        image_size=(SIZE, SIZE),
    )


def _cpu_draws(source, pool: TrainingPool) -> tuple[np.ndarray, np.ndarray]:
    images, masks = [], []
    for index in range(DRAWS):
        image, mask = source(pool.normals[index % len(pool.normals)], np.random.default_rng(index))
        images.append(image.astype(np.float32) / 255.0)
        masks.append(mask > 0)
    return np.stack(images).transpose(0, 3, 1, 2), np.stack(masks)


def _device_draws(source, pool: TrainingPool) -> tuple[np.ndarray, np.ndarray]:
    tensors = PoolTensors.from_pool(pool)
    bases = torch.arange(DRAWS) % len(pool.normals)
    images, masks = source(tensors, bases, torch.Generator().manual_seed(0))
    return images.numpy(), masks.numpy() > 0


def _summary(images: np.ndarray, masks: np.ndarray, pool: TrainingPool) -> dict[str, float]:
    """Mask area quantiles, share on the foreground, and the mean change inside the mask."""
    bases = np.stack([normal.image for normal in pool.normals]).transpose(0, 3, 1, 2) / 255.0
    base = bases[np.arange(len(images)) % len(bases)]
    change = np.abs(images - base).mean(axis=1)
    areas = masks.mean(axis=(1, 2))
    foreground = pool.normals[0].foreground
    return {
        "q25": np.quantile(areas, 0.25),
        "q50": np.quantile(areas, 0.5),
        "q75": np.quantile(areas, 0.75),
        "on_foreground": masks[:, foreground].sum() / max(masks.sum(), 1),
        "change": change[masks].mean(),
        "outside_unchanged": float((change[~masks] < 1e-6).mean()),
    }


def _assert_close(device: dict[str, float], cpu: dict[str, float], area_tolerance: float, change_tolerance: float):
    for key in ("q25", "q50", "q75"):
        assert device[key] == pytest.approx(cpu[key], abs=area_tolerance), (key, device, cpu)
    assert device["on_foreground"] == pytest.approx(1.0) and cpu["on_foreground"] == pytest.approx(1.0)
    assert device["change"] == pytest.approx(cpu["change"], abs=change_tolerance), (device, cpu)
    assert device["outside_unchanged"] == 1.0


def test_extended_anomalies_match_the_cpu_source(pool):
    cpu = _summary(*_cpu_draws(ExtendedAnomalySource(pool), pool), pool)
    device = _summary(*_device_draws(DeviceExtendedAnomalies(), pool), pool)
    _assert_close(device, cpu, area_tolerance=0.01, change_tolerance=0.06)


def test_homologous_anomalies_match_the_cpu_source(pool):
    options = {"use_heterologous": False, "use_homologous": True}
    cpu = _summary(*_cpu_draws(SimulatedAnomalySource(pool, **options), pool), pool)
    device = _summary(*_device_draws(DeviceSimulatedAnomalies(**options), pool), pool)
    _assert_close(device, cpu, area_tolerance=0.01, change_tolerance=0.06)


def test_heterologous_anomalies_match_the_cpu_source(pool, tmp_path):
    from PIL import Image

    rng = np.random.default_rng(1)
    for index in range(4):  # textures of differing brightness and grain
        level = 40 + 50 * index
        texture = np.clip(level + rng.normal(0, 25, (40, 40, 3)), 0, 255).astype(np.uint8)
        Image.fromarray(texture).save(tmp_path / f"texture_{index}.png")
    options = {"dtd_dir": str(tmp_path), "use_heterologous": True, "use_homologous": False}
    cpu_source = SimulatedAnomalySource(pool, **options)
    cpu = _summary(*_cpu_draws(cpu_source, pool), pool)
    device_source = DeviceSimulatedAnomalies(**options)
    tensors = PoolTensors.from_pool(pool, device_source.texture_files)
    images, masks = device_source(tensors, torch.arange(DRAWS) % 6, torch.Generator().manual_seed(0))
    device = _summary(images.numpy(), masks.numpy() > 0, pool)
    _assert_close(device, cpu, area_tolerance=0.01, change_tolerance=0.06)


def test_visible_only_homologous_anomalies_match_the_cpu_source(pool):
    options = {"use_heterologous": False, "use_homologous": True, "visible_only": True}
    cpu = _summary(*_cpu_draws(SimulatedAnomalySource(pool, **options), pool), pool)
    device = _summary(*_device_draws(DeviceSimulatedAnomalies(**options), pool), pool)
    _assert_close(device, cpu, area_tolerance=0.015, change_tolerance=0.06)
    plain = _summary(*_cpu_draws(SimulatedAnomalySource(pool, use_heterologous=False), pool), pool)
    assert cpu["q50"] < plain["q50"] and cpu["change"] > plain["change"]  # fewer pixels, each visibly changed


@pytest.mark.parametrize("kind", ["erase", "lines"])
def test_erase_and_lines_kinds_run_beside_the_pasted_kinds(pool, kind):
    source = DeviceSimulatedAnomalies(use_heterologous=False, use_homologous=True, **{f"use_{kind}": True})
    images, masks = source(PoolTensors.from_pool(pool), torch.arange(12) % 6, torch.Generator().manual_seed(2))
    assert images.shape == (12, 3, SIZE, SIZE) and masks.shape == (12, SIZE, SIZE)
    assert (masks.flatten(1).sum(1) > 0).float().mean() > 0.8


def test_auto_lines_are_settled_by_the_pools_foregrounds(pool):
    on_object = DeviceSimulatedAnomalies(use_heterologous=False, use_lines="auto")
    on_object.check_pool(PoolTensors.from_pool(pool))
    assert on_object.kinds == ["hoa"]  # the part covers a third of the frame
    surface_pool = TrainingPool([NormalImage(normal.image, None) for normal in pool.normals], [], [], (SIZE, SIZE))
    on_surface = DeviceSimulatedAnomalies(use_heterologous=False, use_lines="auto")
    on_surface.check_pool(PoolTensors.from_pool(surface_pool))
    assert on_surface.kinds == ["hoa", "lines"]


def test_homologous_fill_never_uses_the_base_when_another_normal_exists(pool):
    tensors = PoolTensors.from_pool(pool)
    source = DeviceSimulatedAnomalies(use_heterologous=False)
    bases = torch.arange(6).repeat(20)
    generator = torch.Generator().manual_seed(0)
    others = torch.randint(5, (len(bases),), generator=generator)
    others = others + (others >= bases).long()
    assert not (others == bases).any() and set(others.tolist()) == set(range(6))
    assert source._homologous_fill(tensors, bases, torch.Generator().manual_seed(0)).shape == (120, 3, SIZE, SIZE)


def test_blend_keeps_the_base_outside_the_mask_and_pastes_inside():
    base, fill = torch.zeros(2, 3, 4, 4), torch.ones(2, 3, 4, 4)
    masks = torch.zeros(2, 4, 4, dtype=torch.bool)
    masks[:, 1, 1] = True
    out = blend(base, fill, masks, torch.tensor([0.0, 0.75]))
    assert out[0, :, 1, 1].tolist() == [1.0] * 3 and out[1, :, 1, 1].tolist() == [0.25] * 3
    assert out[:, :, 0].abs().sum() == 0


def test_roll_each_shifts_every_image_cyclically():
    images = torch.arange(2 * 3 * 4 * 6, dtype=torch.float32).view(2, 3, 4, 6)
    rolled = roll_each(images, torch.Generator().manual_seed(0))
    for index in range(2):
        matches = [
            (dy, dx)
            for dy in range(4)
            for dx in range(6)
            if torch.equal(rolled[index], torch.roll(images[index], (dy, dx), dims=(1, 2)))
        ]
        assert len(matches) == 1


def test_affine_without_motion_is_the_identity_and_shifts_move_by_whole_pixels():
    images = torch.rand(2, 3, 16, 20, generator=torch.Generator().manual_seed(0))
    still = affine_matrices(2, (16, 20), (0, 0), (0, 0), (0, 0), torch.Generator(), torch.device("cpu"))
    assert torch.allclose(warp(images, still, "bilinear"), images, atol=1e-5)
    moved = affine_matrices(1, (16, 20), (0, 0), (0, 0), (0.25, 0.25), torch.Generator(), torch.device("cpu"))
    shifted = warp(images[:1], moved, "nearest")
    assert torch.equal(shifted[0, :, 4:, 5:], images[0, :, :12, :15])  # +5 columns (of 20), +4 rows (of 16)
