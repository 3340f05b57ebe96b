"""The batched torch image operations agree with the albumentations transforms the CPU path runs.

Each operation is held to albumentations on the same uint8 image with the same parameters (forced
through degenerate ranges), its parameter draws to the CPU path's ranges, and ``apply_random_ops``
to ``count`` distinct operations per image. Measured on 64x64 images: every operation bit-exact but
Sharpen (float summation order: a few pixels one level off) and Affine rotation (cv2's fixed-point
coordinates: a few pixels one level off); the tolerances leave room for other OpenCV builds.
"""

from __future__ import annotations

import albumentations as A
import cv2
import numpy as np
import pytest
import torch

from prn.data.device.color import (
    AutoContrast,
    BrightnessContrast,
    ColorJitter,
    Equalize,
    HueSaturation,
    Invert,
    Posterize,
    RandomGamma,
    Rotate,
    Sharpen,
    Solarize,
    apply_random_ops,
    extended_color_ops,
    homologous_color_jitter,
    opencv_hsv_to_rgb,
    rgb_to_opencv_hsv,
    texture_ops,
)
from prn.data.generation import augment

SIZE = 64  # a multiple of OpenCV's HSV vector block: its scalar tail, which rounds where the rest truncates, is empty
EXACT, ONE_OFF, INTERPOLATED = (0.01, 1), (0.05, 1), (0.1, 2)  # (mean, max) |difference| in grey levels


def natural_image(seed: int, size: int = SIZE) -> np.ndarray:
    """Smooth colour regions plus noise, clipped: uint8 ``[size, size, 3]`` with saturated pixels, like photos."""
    rng = np.random.default_rng(seed)
    low = rng.uniform(0, 255, (6, 6, 3)).astype(np.float32)
    image = cv2.resize(low, (size, size), interpolation=cv2.INTER_CUBIC) + rng.normal(0, 12, (size, size, 3))
    return np.clip(image, 0, 255).round().astype(np.uint8)


def to_batch(images: list[np.ndarray]) -> torch.Tensor:
    return torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float() / 255.0


def to_uint8(batch: torch.Tensor) -> np.ndarray:
    return (batch.permute(0, 2, 3, 1) * 255.0).round().to(torch.uint8).numpy()


def as_params(values: dict[str, float | int | list[int]]) -> dict[str, torch.Tensor]:
    """One image's parameters; floats as float64 so that they equal albumentations' Python floats."""
    return {
        key: torch.tensor([value], dtype=torch.float64 if isinstance(value, float) else None)
        for key, value in values.items()
    }


# name -> (our op, parameters, the albumentations transform forced to them, (mean, max) tolerance)
CASES = {
    "gamma": (RandomGamma(), {"gamma": 0.5}, A.RandomGamma(gamma_limit=(50, 50), p=1.0), EXACT),
    "gamma_high": (RandomGamma(), {"gamma": 1.75}, A.RandomGamma(gamma_limit=(175, 175), p=1.0), EXACT),
    "brightness": (
        BrightnessContrast(),
        {"alpha": 0.8, "beta": 0.12},
        A.RandomBrightnessContrast(brightness_limit=(0.12, 0.12), contrast_limit=(-0.2, -0.2), p=1.0),
        EXACT,
    ),
    "darkness": (
        BrightnessContrast(),
        {"alpha": 1.15, "beta": -0.1},
        A.RandomBrightnessContrast(brightness_limit=(-0.1, -0.1), contrast_limit=(0.15, 0.15), p=1.0),
        EXACT,
    ),
    "sharpness": (
        Sharpen(),
        {"alpha": 0.5, "lightness": 0.8},
        A.Sharpen(alpha=(0.5, 0.5), lightness=(0.8, 0.8), p=1.0),
        ONE_OFF,
    ),
    "sharpness_full": (
        Sharpen(),
        {"alpha": 1.0, "lightness": 1.2},
        A.Sharpen(alpha=(1.0, 1.0), lightness=(1.2, 1.2), p=1.0),
        ONE_OFF,
    ),
    "hue_saturation": (
        HueSaturation(),
        {"hue_shift": 12.7, "sat_shift": -33.3, "val_shift": 0.0},
        A.HueSaturationValue(hue_shift_limit=(12.7, 12.7), sat_shift_limit=(-33.3, -33.3), val_shift_limit=0, p=1.0),
        ONE_OFF,
    ),
    "hue_saturation_wrap": (
        HueSaturation(),
        {"hue_shift": -25.0, "sat_shift": 50.0, "val_shift": 0.0},
        A.HueSaturationValue(hue_shift_limit=(-25, -25), sat_shift_limit=(50, 50), val_shift_limit=0, p=1.0),
        ONE_OFF,
    ),
    "solarize": (Solarize(), {"threshold": 0.3}, A.Solarize(threshold_range=(0.3, 0.3), p=1.0), EXACT),
    "solarize_low": (
        Solarize(),
        {"threshold": 32 / 255},
        A.Solarize(threshold_range=(32 / 255, 32 / 255), p=1.0),
        EXACT,
    ),
    "posterize_2": (Posterize(), {"bits": 2}, A.Posterize(num_bits=(2, 2), p=1.0), EXACT),
    "posterize_5": (Posterize(), {"bits": 5}, A.Posterize(num_bits=(5, 5), p=1.0), EXACT),
    "invert": (Invert(), {}, A.InvertImg(p=1.0), EXACT),
    "auto_contrast": (AutoContrast(), {}, A.AutoContrast(p=1.0), EXACT),
    "equalize": (Equalize(), {}, A.Equalize(p=1.0), EXACT),
    "rotate": (
        Rotate(),
        {"degrees": 30.0},
        A.Affine(rotate=(30, 30), border_mode=cv2.BORDER_REFLECT_101, p=1.0),
        INTERPOLATED,
    ),
    "rotate_back": (
        Rotate(),
        {"degrees": -45.0},
        A.Affine(rotate=(-45, -45), border_mode=cv2.BORDER_REFLECT_101, p=1.0),
        INTERPOLATED,
    ),
}


@pytest.mark.parametrize("name", list(CASES))
def test_apply_matches_albumentations_on_the_same_parameters(name):
    op, values, reference, (mean_limit, max_limit) = CASES[name]
    for seed in (0, 1):
        image = natural_image(seed)
        ours = to_uint8(op.apply(to_batch([image]), as_params(values)))[0].astype(int)
        theirs = reference(image=image)["image"].astype(int)
        difference = np.abs(ours - theirs)
        assert difference.mean() <= mean_limit and difference.max() <= max_limit, (name, seed, difference.mean())


@pytest.mark.parametrize(
    "values",
    [
        {"brightness": 0.5, "contrast": 1.5, "saturation": 0.3, "hue": 0.15, "order": [0, 1, 2, 3]},
        {"brightness": 1.5, "contrast": 0.5, "saturation": 1.7, "hue": -0.15, "order": [3, 2, 1, 0]},
        {"brightness": 1.1, "contrast": 0.9, "saturation": 1.2, "hue": 0.07, "order": [2, 0, 3, 1]},
    ],
)
def test_color_jitter_matches_albumentations_in_the_given_order(values):
    transform = augment.homologous_color_ops()
    for seed in (0, 1):
        image = natural_image(seed)
        ours = to_uint8(ColorJitter().apply(to_batch([image]), as_params(values)))[0].astype(int)
        theirs = transform.apply(image, **values).astype(int)
        difference = np.abs(ours - theirs)
        assert difference.mean() <= ONE_OFF[0] and difference.max() <= 2, (seed, difference.mean())


def test_the_hsv_conversions_are_opencvs():
    colours = np.random.default_rng(2).integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8)
    hsv = cv2.cvtColor(colours, cv2.COLOR_RGB2HSV)
    ours = rgb_to_opencv_hsv(torch.from_numpy(colours).permute(2, 0, 1)[None].float())
    np.testing.assert_array_equal(ours[0].permute(1, 2, 0).numpy(), hsv)
    back = opencv_hsv_to_rgb(torch.from_numpy(hsv).permute(2, 0, 1)[None].float())[0].permute(1, 2, 0).numpy()
    assert np.abs(back - cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)).max() <= 1  # bit-exact on the AVX2 wheels


EXPECTED_RANGES = {  # op name -> parameter -> (low, high), as augment.texture_ops() / extended_color_ops()
    "gamma_contrast": {"gamma": (0.5, 2.0)},
    "brightness": {"alpha": (0.8, 1.2), "beta": (-0.12, 0.12)},
    "sharpness": {"alpha": (0.5, 1.0), "lightness": (0.8, 1.2)},
    "hue_saturation": {"hue_shift": (-25.0, 25.0), "sat_shift": (-50.0, 50.0), "val_shift": (0.0, 0.0)},
    "solarize": {"threshold": (32 / 255, 128 / 255)},
    "posterize": {"bits": (2, 6)},
    "rotate": {"degrees": (-45.0, 45.0)},
}
EXTENDED_RANGES = {"solarize": {"threshold": (0.3, 0.7)}, "posterize": {"bits": (2, 5)}}


def check_draws(op, ranges: dict[str, tuple[float, float]], draws: int = 2000) -> None:
    first = op.params(draws, torch.Generator().manual_seed(5), torch.device("cpu"))
    again = op.params(draws, torch.Generator().manual_seed(5), torch.device("cpu"))
    other = op.params(draws, torch.Generator().manual_seed(6), torch.device("cpu"))
    assert set(first) == set(ranges)
    for key, (low, high) in ranges.items():
        values = first[key].double()
        assert values.shape == (draws,) and torch.equal(first[key], again[key])
        assert low - 1e-6 <= values.min() and values.max() <= high + 1e-6, key
        if high > low:
            assert not torch.equal(first[key], other[key]) and len(values.unique()) > 1, key
            assert values.min() < low + 0.05 * (high - low) and values.max() > high - 0.05 * (high - low), key


def test_parameter_draws_keep_the_cpu_paths_ranges_and_are_seeded():
    ops, extended = texture_ops(), extended_color_ops()
    assert list(ops) == list(augment.texture_ops()) and list(extended) == list(augment.extended_color_ops())
    for name, op in ops.items():
        check_draws(op, EXPECTED_RANGES.get(name, {}))
    for name, op in extended.items():
        check_draws(op, EXTENDED_RANGES.get(name, EXPECTED_RANGES.get(name, {})))
    bits = ops["posterize"].params(2000, torch.Generator().manual_seed(0), torch.device("cpu"))["bits"]
    assert bits.unique().tolist() == [2, 3, 4, 5, 6]  # integers, both ends included, as randint


def test_color_jitter_draws_its_ranges_and_a_permutation_per_image():
    jitter = ColorJitter()
    check_draws(
        _WithoutOrder(jitter),
        {"brightness": (0.5, 1.5), "contrast": (0.5, 1.5), "saturation": (0.3, 1.7), "hue": (-0.15, 0.15)},
    )
    order = jitter.params(500, torch.Generator().manual_seed(0), torch.device("cpu"))["order"]
    assert torch.equal(order.sort(dim=1).values, torch.arange(4).expand(500, 4))
    assert len(order.unique(dim=0)) == 24  # every order occurs


class _WithoutOrder:
    def __init__(self, jitter: ColorJitter):
        self.jitter = jitter

    def params(self, batch, generator, device):
        params = self.jitter.params(batch, generator, device)
        del params["order"]
        return params


def all_ops():
    ops = {f"texture/{name}": op for name, op in texture_ops().items()}
    ops |= {f"extended/{name}": op for name, op in extended_color_ops().items()}
    ops["jitter"] = ColorJitter()
    return ops


def test_a_batch_applies_each_images_own_parameters():
    images = to_batch([natural_image(seed, 32) for seed in range(4)])
    for name, op in all_ops().items():
        params = op.params(4, torch.Generator().manual_seed(3), torch.device("cpu"))
        batched = op.apply(images, params)
        for index in range(4):
            alone = op.apply(
                images[index : index + 1], {key: value[index : index + 1] for key, value in params.items()}
            )
            assert torch.equal(batched[index : index + 1], alone), (name, index)


def test_outputs_keep_shape_dtype_range_and_the_uint8_grid():
    images = torch.rand(5, 3, 32, 32, generator=torch.Generator().manual_seed(0))  # off the grid on purpose
    for name, op in all_ops().items():
        out = op(images, torch.Generator().manual_seed(1))
        assert out.shape == images.shape and out.dtype == images.dtype, name
        assert out.min() >= 0.0 and out.max() <= 1.0, name
        assert torch.equal(out, out.mul(255).round().div(255)), name
        assert torch.equal(out, op(images, torch.Generator().manual_seed(1))), name
    same = images[:1].expand(5, -1, -1, -1)
    jittered = homologous_color_jitter(same, torch.Generator().manual_seed(1))
    assert jittered.shape == same.shape and not torch.equal(jittered[0], jittered[1])  # per-image factors


def recording_ops(count: int):
    """Ops on ``[B, count + 1]`` records: op k writes the step it ran at into column k; the last column counts steps."""

    def make(k: int):
        def op(records: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
            records = records.clone()
            records[:, -1] += 1
            records[:, k] += records[:, -1]
            return records

        return op

    return {f"op{k}": make(k) for k in range(count)}


@pytest.mark.parametrize("batch", [1, 7, 64])
@pytest.mark.parametrize("count", [1, 3, 5])
def test_apply_random_ops_runs_count_distinct_ops_per_image(batch, count):
    ops = recording_ops(5)
    records = apply_random_ops(torch.zeros(batch, 6), ops, count, torch.Generator().manual_seed(batch + count))
    assert torch.equal(records[:, -1], torch.full((batch,), float(count)))
    steps = records[:, :-1]
    assert torch.equal((steps > 0).sum(1), torch.full((batch,), count))  # count distinct ops, each once
    assert torch.equal(steps.sort(dim=1).values[:, -count:], torch.arange(1.0, count + 1).expand(batch, count))


def test_apply_random_ops_chooses_ops_and_orders_uniformly():
    records = apply_random_ops(torch.zeros(2000, 6), recording_ops(5), 2, torch.Generator().manual_seed(0))
    chosen = (records[:, :-1] > 0).float().mean(0)
    assert torch.allclose(chosen, torch.full((5,), 0.4), atol=0.05)  # each op in 2 of 5 draws
    first_of_pair = (records[:, 0] == 1) & (records[:, 1] == 2)
    second_of_pair = (records[:, 0] == 2) & (records[:, 1] == 1)
    assert first_of_pair.sum() > 30 and second_of_pair.sum() > 30  # both orders


def test_apply_random_ops_on_images_is_seeded_and_validates_count():
    images = to_batch([natural_image(seed, 32) for seed in range(3)])
    ops = texture_ops()
    first = apply_random_ops(images, ops, 3, torch.Generator().manual_seed(4))
    assert torch.equal(first, apply_random_ops(images, ops, 3, torch.Generator().manual_seed(4)))
    assert first.shape == images.shape and 0.0 <= first.min() and first.max() <= 1.0
    for count in (0, len(ops) + 1):
        with pytest.raises(ValueError, match="count must be in"):
            apply_random_ops(images, ops, count, torch.Generator())


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_the_ops_run_on_the_gpu_as_on_the_cpu():
    device = torch.device("cuda")
    images = to_batch([natural_image(seed) for seed in range(4)])
    for name, op in all_ops().items():
        params = op.params(4, torch.Generator(device=device).manual_seed(0), device)
        on_gpu = op.apply(images.to(device), params).cpu()
        on_cpu = op.apply(images, {key: value.cpu() for key, value in params.items()})
        assert (on_gpu - on_cpu).abs().mul(255).mean() <= 0.05, name
    generator = torch.Generator(device=device).manual_seed(0)
    mixed = apply_random_ops(images.to(device), texture_ops(), 3, generator)
    assert mixed.device.type == "cuda" and mixed.shape == images.shape
