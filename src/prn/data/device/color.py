"""The CPU path's albumentations image operations as batched torch operations, on whatever device the batch lives on.

:mod:`prn.data.generation.augment` runs albumentations on one uint8 image at a time; generating the
anomalies on the training device needs the same operations on a ``[B, 3, H, W]`` float batch in
[0, 1], each image with its own parameters, drawn from the same ranges. Every operation here
reproduces the albumentations 2.0 formula on the uint8 grid (look-up tables that truncate where
albumentations truncates, OpenCV's fixed-point HSV, ``cv2.equalizeHist``, reflect-101 borders) and
returns values on that grid, so that ``tests/data/device/test_color.py`` can hold each one to within
a grey level or so of albumentations on the same image and parameters.

An operation is a callable ``op(images, generator)``; its ``params`` draws ``[B]`` parameters from
``generator`` (which lives on the images' device) and its ``apply`` is deterministic in them. A
batch costs a few kernels per operation, not a Python loop over its images.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

ImageOp = Callable[[Tensor, torch.Generator], Tensor]
Params = Mapping[str, Tensor]

LEVELS = 256
MAX_LEVEL = 255.0
HUE_RANGE = 180  # OpenCV's uint8 hue: degrees / 2
HSV_SHIFT = 12  # OpenCV's fixed-point precision in RGB2HSV_b
GRAY_SHIFT = 15  # and in RGB2GRAY for uint8
GRAY_WEIGHTS = (9798, 19235, 3735)  # R, G, B; they sum to 2**15
# cv2's HSV2RGB: which of (v, p, q, t) each of r, g, b takes in each of the six hue sectors
SECTOR_RGB = ((0, 3, 1), (2, 0, 1), (1, 0, 3), (1, 2, 0), (3, 1, 0), (0, 1, 2))


def to_levels(images: Tensor) -> Tensor:
    """``[0, 1]`` images as float32 uint8 levels: ``round(255 x)`` in ``[0, 255]``."""
    return images.float().clamp(0.0, 1.0).mul(MAX_LEVEL).round()


def from_levels(levels: Tensor, like: Tensor) -> Tensor:
    """Levels back to ``like``'s dtype on the ``[0, 1]`` scale, rounded onto the uint8 grid and clipped."""
    return levels.round().clamp(0.0, MAX_LEVEL).div(MAX_LEVEL).to(like.dtype)


def _per_sample(values: Tensor) -> Tensor:
    return values.float().view(-1, 1, 1, 1)


def _uniform(batch: int, bounds: tuple[float, float], generator: torch.Generator, device: torch.device) -> Tensor:
    low, high = bounds
    return torch.rand(batch, generator=generator, device=device) * (high - low) + low


class RandomImageOp:
    """An image operation with per-image parameters: ``params`` draws them, ``apply`` uses them deterministically."""

    def params(self, batch: int, generator: torch.Generator, device: torch.device) -> dict[str, Tensor]:
        """``[batch]`` parameters per name, drawn from ``generator``; none by default."""
        return {}

    def apply(self, images: Tensor, params: Params) -> Tensor:
        """``images`` ``[B, 3, H, W]`` in ``[0, 1]`` transformed with ``params``."""
        raise NotImplementedError

    def __call__(self, images: Tensor, generator: torch.Generator) -> Tensor:
        return self.apply(images, self.params(images.shape[0], generator, images.device))


class RandomGamma(RandomImageOp):
    """``A.RandomGamma``: ``floor(255 (x / 255) ** gamma)``, the uint8 table truncating as albumentations' does."""

    def __init__(self, gamma: tuple[float, float] = (0.5, 2.0)):
        self.gamma = gamma

    def params(self, batch: int, generator: torch.Generator, device: torch.device) -> dict[str, Tensor]:
        return {"gamma": _uniform(batch, self.gamma, generator, device)}

    def apply(self, images: Tensor, params: Params) -> Tensor:
        levels = to_levels(images).div(MAX_LEVEL).pow(_per_sample(params["gamma"])).mul(MAX_LEVEL)
        return from_levels(torch.floor(levels + 1e-4), images)  # 1e-4: float32 pow may fall just short of a level


class BrightnessContrast(RandomImageOp):
    """``A.RandomBrightnessContrast`` (by max): ``floor(clip(alpha x + 255 beta))``, alpha = 1 + contrast."""

    def __init__(self, brightness: tuple[float, float] = (-0.12, 0.12), contrast: tuple[float, float] = (-0.2, 0.2)):
        self.brightness, self.contrast = brightness, contrast

    def params(self, batch: int, generator: torch.Generator, device: torch.device) -> dict[str, Tensor]:
        alpha = 1.0 + _uniform(batch, self.contrast, generator, device)
        return {"alpha": alpha, "beta": _uniform(batch, self.brightness, generator, device)}

    def apply(self, images: Tensor, params: Params) -> Tensor:
        levels = to_levels(images) * _per_sample(params["alpha"]) + _per_sample(params["beta"]) * MAX_LEVEL
        return from_levels(torch.floor(levels.clamp(0.0, MAX_LEVEL)), images)


class Sharpen(RandomImageOp):
    """``A.Sharpen`` (kernel method): the 3x3 kernel ``(1 - a) I + a [[-1, -1, -1], [-1, 8 + l, -1], [-1, -1, -1]]``.

    Written as ``(1 + a (8 + l)) x - a box3(x)``: one box filter for the batch over reflect-101
    borders (cv2.filter2D's default), then a per-image scale.
    """

    def __init__(self, alpha: tuple[float, float] = (0.5, 1.0), lightness: tuple[float, float] = (0.8, 1.2)):
        self.alpha, self.lightness = alpha, lightness

    def params(self, batch: int, generator: torch.Generator, device: torch.device) -> dict[str, Tensor]:
        alpha = _uniform(batch, self.alpha, generator, device)
        return {"alpha": alpha, "lightness": _uniform(batch, self.lightness, generator, device)}

    def apply(self, images: Tensor, params: Params) -> Tensor:
        levels = to_levels(images)
        box = F.avg_pool2d(F.pad(levels, (1, 1, 1, 1), mode="reflect"), 3, stride=1) * 9.0
        alpha, lightness = _per_sample(params["alpha"]), _per_sample(params["lightness"])
        return from_levels((1.0 + alpha * (8.0 + lightness)) * levels - alpha * box, images)


def rgb_to_opencv_hsv(levels: Tensor) -> Tensor:
    """``[B, 3, H, W]`` RGB levels to OpenCV's uint8 HSV (hue 0..179, S and V 0..255), OpenCV's integer arithmetic."""
    rgb = levels.round().to(torch.int32)
    red, green, blue = rgb.unbind(1)
    value, value_min = rgb.amax(1), rgb.amin(1)
    diff = value - value_min
    steps = torch.arange(LEVELS, device=levels.device, dtype=torch.float64)
    sat_table = torch.where(steps > 0, (MAX_LEVEL * 2**HSV_SHIFT / steps).round(), 0.0).to(torch.int32)
    hue_table = torch.where(steps > 0, (HUE_RANGE * 2**HSV_SHIFT / (6.0 * steps)).round(), 0.0).to(torch.int32)
    half = 1 << (HSV_SHIFT - 1)
    saturation = (diff * sat_table[value] + half) >> HSV_SHIFT
    hue = torch.where(
        value == red, green - blue, torch.where(value == green, blue - red + 2 * diff, red - green + 4 * diff)
    )
    hue = (hue * hue_table[diff] + half) >> HSV_SHIFT
    hue = torch.where(hue < 0, hue + HUE_RANGE, hue)
    return torch.stack((hue, saturation, value), 1).float()


def opencv_hsv_to_rgb(hsv: Tensor) -> Tensor:
    """OpenCV uint8 HSV ``[B, 3, H, W]`` back to RGB levels, as cv2.COLOR_HSV2RGB's vectorised path.

    The same float32 steps, truncating like it (its scalar tail, the last few pixels of an image,
    would round instead); ``1 - s * f`` is rounded once, as the fused multiply-add the compiler makes
    of it in the AVX2 build of the opencv-python wheels: bit-exact against cv2 there.
    """
    hue, saturation, value = hsv.float().unbind(1)
    saturation, value = saturation * (1.0 / MAX_LEVEL), value * (1.0 / MAX_LEVEL)
    hue = hue * (6.0 / HUE_RANGE)
    sector = torch.trunc(hue)
    fraction = hue - sector
    sector = torch.remainder(sector, 6.0)

    def one_minus(product_a: Tensor, product_b: Tensor) -> Tensor:  # fnmadd: exact product, one rounding
        return (1.0 - product_a.double() * product_b.double()).float()

    table = torch.stack(
        (
            value,
            value * (1 - saturation),
            value * one_minus(saturation, fraction),
            value * one_minus(saturation, 1 - fraction),
        ),
        1,
    )
    pick = torch.tensor(SECTOR_RGB, device=hsv.device)[sector.long()].permute(0, 3, 1, 2)  # [B, 3, H, W]
    return torch.trunc(table.gather(1, pick) * MAX_LEVEL)


def shift_hue_levels(hsv: Tensor, shift: Tensor) -> Tensor:
    """Hue plus ``shift`` (per image, OpenCV units), wrapped to [0, 180) and truncated: albumentations' hue table."""
    hue = torch.remainder(hsv[:, 0].double() + shift.double().view(-1, 1, 1), HUE_RANGE)  # float64, as numpy's
    return torch.cat((hue.floor().float()[:, None], hsv[:, 1:]), 1)


class HueSaturation(RandomImageOp):
    """``A.HueSaturationValue`` on uint8: OpenCV HSV, hue shifted (truncated, mod 180), S and V + int(shift).

    Grey pixels (S = 0) stay grey; an image whose three shifts are all 0 is returned untouched.
    """

    def __init__(
        self,
        hue: tuple[float, float] = (-25.0, 25.0),
        saturation: tuple[float, float] = (-50.0, 50.0),
        value: tuple[float, float] = (0.0, 0.0),
    ):
        self.hue, self.saturation, self.value = hue, saturation, value

    def params(self, batch: int, generator: torch.Generator, device: torch.device) -> dict[str, Tensor]:
        return {
            "hue_shift": _uniform(batch, self.hue, generator, device),
            "sat_shift": _uniform(batch, self.saturation, generator, device),
            "val_shift": _uniform(batch, self.value, generator, device),
        }

    def apply(self, images: Tensor, params: Params) -> Tensor:
        levels = to_levels(images)
        hsv = shift_hue_levels(rgb_to_opencv_hsv(levels), params["hue_shift"])
        hue, saturation, value = hsv.unbind(1)
        sat_shift = torch.trunc(params["sat_shift"].float()).view(-1, 1, 1)
        saturation = torch.where(saturation == 0, saturation, (saturation + sat_shift).clamp(0.0, MAX_LEVEL))
        value = (value + torch.trunc(params["val_shift"].float()).view(-1, 1, 1)).clamp(0.0, MAX_LEVEL)
        shifted = opencv_hsv_to_rgb(torch.stack((hue, saturation, value), 1))
        unchanged = (params["hue_shift"] == 0) & (params["sat_shift"] == 0) & (params["val_shift"] == 0)
        return from_levels(torch.where(_per_sample(unchanged).bool(), levels, shifted), images)


class Solarize(RandomImageOp):
    """``A.Solarize``: levels ``>= 255 * threshold`` inverted, ``threshold`` on albumentations' 0..1 scale."""

    def __init__(self, threshold: tuple[float, float] = (32 / 255, 128 / 255)):
        self.threshold = threshold

    def params(self, batch: int, generator: torch.Generator, device: torch.device) -> dict[str, Tensor]:
        return {"threshold": _uniform(batch, self.threshold, generator, device)}

    def apply(self, images: Tensor, params: Params) -> Tensor:
        levels = to_levels(images)
        above = levels >= _per_sample(params["threshold"]) * MAX_LEVEL
        return from_levels(torch.where(above, MAX_LEVEL - levels, levels), images)


class Posterize(RandomImageOp):
    """``A.Posterize``: keep the top ``bits`` bits of each level, ``bits`` an integer drawn inclusively."""

    def __init__(self, bits: tuple[int, int] = (2, 6)):
        self.bits = bits

    def params(self, batch: int, generator: torch.Generator, device: torch.device) -> dict[str, Tensor]:
        return {"bits": torch.randint(self.bits[0], self.bits[1] + 1, (batch,), generator=generator, device=device)}

    def apply(self, images: Tensor, params: Params) -> Tensor:
        step = torch.pow(2.0, 8.0 - _per_sample(params["bits"]))
        return from_levels(torch.floor(to_levels(images) / step) * step, images)


class Invert(RandomImageOp):
    """``A.InvertImg``: ``255 - x``."""

    def apply(self, images: Tensor, params: Params) -> Tensor:
        return from_levels(MAX_LEVEL - to_levels(images), images)


def equalize_levels(levels: Tensor, count_white: bool = True) -> Tensor:
    """Histogram equalisation of every channel of every image at once: one bincount, one cumsum, one gather.

    ``lut[i] = round(255 (cdf[i] - hist[lo]) / (counted - hist[lo]))`` for ``lo <= i <= hi``, the lowest
    and highest level counted, 0 below and 255 above; a channel with one counted level is kept as it
    is. With ``count_white`` this is ``cv2.equalizeHist``; without, level 255 is left out of the
    histogram, as albumentations' AutoContrast (``cv2.calcHist`` over the half-open range [0, 255)).
    """
    batch, channels, height, width = levels.shape
    planes = levels.round().long().clamp(0, LEVELS - 1).reshape(batch * channels, height * width)
    offsets = torch.arange(batch * channels, device=levels.device)[:, None] * LEVELS
    hist = torch.bincount((planes + offsets).flatten(), minlength=batch * channels * LEVELS).view(-1, LEVELS)
    if not count_white:
        hist[:, LEVELS - 1] = 0
    present = hist > 0
    steps = torch.arange(LEVELS, device=levels.device)
    low = present.int().argmax(1, keepdim=True)
    high = (LEVELS - 1) - present.flip(1).int().argmax(1, keepdim=True)
    low_count = hist.gather(1, low)
    spread = (hist.sum(1, keepdim=True) - low_count).float()
    scale = torch.where(spread > 0, MAX_LEVEL / spread.clamp(min=1.0), 0.0)
    lut = ((hist.cumsum(1) - low_count).float() * scale).round().clamp(0.0, MAX_LEVEL)
    lut = torch.where(steps > high, MAX_LEVEL, torch.where(steps < low, 0.0, lut))
    equalized = torch.where(spread > 0, lut.gather(1, planes), planes.float())
    return equalized.view(batch, channels, height, width)


class Equalize(RandomImageOp):
    """``A.Equalize()`` defaults (mode "cv", by_channels): cv2.equalizeHist per channel."""

    def apply(self, images: Tensor, params: Params) -> Tensor:
        return from_levels(equalize_levels(to_levels(images)), images)


class AutoContrast(RandomImageOp):
    """``A.AutoContrast()`` defaults (cutoff 0, method "cdf"): histogram equalisation per channel, not PIL's stretch.

    Its "cdf" table spreads the cumulative histogram over the occupied range ``[lo, hi]``; the
    histogram leaves level 255 out (``cv2.calcHist`` over [0, 255)), which is all that sets it apart
    from :class:`Equalize`.
    """

    def apply(self, images: Tensor, params: Params) -> Tensor:
        return from_levels(equalize_levels(to_levels(images), count_white=False), images)


class Rotate(RandomImageOp):
    """``A.Affine(rotate=..., border_mode=cv2.BORDER_REFLECT_101)``: a turn about ``((w - 1) / 2, (h - 1) / 2)``.

    Bilinear; ``grid_sample``'s reflection with ``align_corners=True`` mirrors about the edge pixels'
    centres, which is reflect-101. Positive angles turn the content counter-clockwise, as albumentations.
    """

    def __init__(self, degrees: tuple[float, float] = (-45.0, 45.0)):
        self.degrees = degrees

    def params(self, batch: int, generator: torch.Generator, device: torch.device) -> dict[str, Tensor]:
        return {"degrees": _uniform(batch, self.degrees, generator, device)}

    def apply(self, images: Tensor, params: Params) -> Tensor:
        batch, _, height, width = images.shape
        radians = params["degrees"].float() * (math.pi / 180.0)
        cos, sin = torch.cos(radians), torch.sin(radians)
        aspect = (height - 1) / max(width - 1, 1)
        # output -> input in align_corners=True normalised coordinates: the inverse of albumentations' matrix
        theta = torch.zeros(batch, 2, 3, device=images.device)
        theta[:, 0, 0], theta[:, 0, 1] = cos, -sin * aspect
        theta[:, 1, 0], theta[:, 1, 1] = sin / aspect, cos
        grid = F.affine_grid(theta, [batch, 3, height, width], align_corners=True)
        levels = to_levels(images)
        turned = F.grid_sample(levels, grid, mode="bilinear", padding_mode="reflection", align_corners=True)
        return from_levels(turned, images)


def gray_levels(levels: Tensor) -> Tensor:
    """``[B, 1, H, W]`` cv2.COLOR_RGB2GRAY of RGB levels, OpenCV's fixed-point weights and rounding."""
    weights = torch.tensor(GRAY_WEIGHTS, device=levels.device, dtype=torch.int64).view(1, 3, 1, 1)
    total = (levels.round().long() * weights).sum(1, keepdim=True)
    return ((total + (1 << (GRAY_SHIFT - 1))) >> GRAY_SHIFT).float()


def _jitter_brightness(levels: Tensor, factor: Tensor) -> Tensor:
    return torch.floor((levels * _per_sample(factor)).clamp(0.0, MAX_LEVEL))


def _jitter_contrast(levels: Tensor, factor: Tensor) -> Tensor:
    mean = gray_levels(levels).mean(dim=(1, 2, 3), keepdim=True)
    factor = _per_sample(factor)
    return torch.floor((levels * factor + mean * (1.0 - factor)).clamp(0.0, MAX_LEVEL))


def _jitter_saturation(levels: Tensor, factor: Tensor) -> Tensor:
    # cv2.addWeighted in float32, its SIMD path fusing ``x * alpha + (gray * beta)`` into one rounding
    alpha, beta = _per_sample(factor), _per_sample((1.0 - factor.double()).float())
    blend = levels.double() * alpha.double() + (gray_levels(levels) * beta).double()
    return blend.float().round().clamp(0.0, MAX_LEVEL)


def _jitter_hue(levels: Tensor, factor: Tensor) -> Tensor:
    shifted = opencv_hsv_to_rgb(shift_hue_levels(rgb_to_opencv_hsv(levels), factor.double() * HUE_RANGE))
    return torch.where(_per_sample(factor == 0).bool(), levels, shifted)


JITTERS = (_jitter_brightness, _jitter_contrast, _jitter_saturation, _jitter_hue)


def _apply_in_rounds(
    images: Tensor, choices: Tensor, apply_one: Callable[[int, Tensor, Tensor], Tensor], options: int
) -> Tensor:
    """Round ``r`` applies option ``choices[b, r]`` to image ``b``: per round, one call per option on its images."""
    result = images.clone()
    choices_cpu = choices.cpu()  # the one host sync: which images each call gets
    for step in range(choices_cpu.shape[1]):
        for option in range(options):
            members = (choices_cpu[:, step] == option).nonzero()[:, 0]
            if len(members) == 0:
                continue
            members = members.to(images.device)
            result[members] = apply_one(option, result[members], members)
    return result


class ColorJitter(RandomImageOp):
    """``A.ColorJitter`` on uint8: brightness, contrast, saturation and hue in a random order per image.

    Brightness and contrast truncate (albucore's look-up tables), contrast pulls towards the mean of
    the cv2 grey image, saturation blends with that grey image (rounded), hue shifts OpenCV's hue by
    ``180 * factor`` (truncated, mod 180). Each image draws its own four factors and its own order.
    """

    def __init__(
        self,
        brightness: tuple[float, float] = (0.5, 1.5),
        contrast: tuple[float, float] = (0.5, 1.5),
        saturation: tuple[float, float] = (0.3, 1.7),
        hue: tuple[float, float] = (-0.15, 0.15),
    ):
        self.ranges = {"brightness": brightness, "contrast": contrast, "saturation": saturation, "hue": hue}

    def params(self, batch: int, generator: torch.Generator, device: torch.device) -> dict[str, Tensor]:
        params = {name: _uniform(batch, bounds, generator, device) for name, bounds in self.ranges.items()}
        params["order"] = torch.rand(batch, len(JITTERS), generator=generator, device=device).argsort(dim=1)
        return params

    def apply(self, images: Tensor, params: Params) -> Tensor:
        factors = torch.stack([params[name] for name in self.ranges], 1)  # [B, 4] in JITTERS' order

        def jitter(option: int, levels: Tensor, members: Tensor) -> Tensor:
            return JITTERS[option](levels, factors[members, option])

        return from_levels(_apply_in_rounds(to_levels(images), params["order"], jitter, len(JITTERS)), images)


def texture_ops() -> dict[str, RandomImageOp]:
    """:func:`prn.data.generation.augment.texture_ops` (DRAEM's texture augmentations), key for key."""
    return {
        "gamma_contrast": RandomGamma((0.5, 2.0)),
        "brightness": BrightnessContrast((-0.12, 0.12), (-0.2, 0.2)),
        "sharpness": Sharpen((0.5, 1.0), (0.8, 1.2)),
        "hue_saturation": HueSaturation((-25.0, 25.0), (-50.0, 50.0), (0.0, 0.0)),
        "solarize": Solarize((32 / 255, 128 / 255)),
        "posterize": Posterize((2, 6)),
        "invert": Invert(),
        "auto_contrast": AutoContrast(),
        "equalize": Equalize(),
        "rotate": Rotate((-45.0, 45.0)),
    }


def extended_color_ops() -> dict[str, RandomImageOp]:
    """:func:`prn.data.generation.augment.extended_color_ops` (PRN's Aug_1), key for key."""
    return {
        "equalize": Equalize(),
        "solarize": Solarize((0.3, 0.7)),
        "posterize": Posterize((2, 5)),
        "sharpness": Sharpen((0.5, 1.0), (0.8, 1.2)),
        "auto_contrast": AutoContrast(),
        "invert": Invert(),
        "gamma_contrast": RandomGamma((0.5, 2.0)),
    }


HOMOLOGOUS_JITTER = ColorJitter((0.5, 1.5), (0.5, 1.5), (0.3, 1.7), (-0.15, 0.15))


def homologous_color_jitter(images: Tensor, generator: torch.Generator) -> Tensor:
    """:func:`prn.data.generation.augment.homologous_color_ops` on a batch: each image its own factors and order."""
    return HOMOLOGOUS_JITTER(images, generator)


def apply_random_ops(images: Tensor, ops: Mapping[str, ImageOp], count: int, generator: torch.Generator) -> Tensor:
    """Every image gets ``count`` distinct operations of ``ops``, chosen uniformly, applied in a random order.

    As :func:`prn.data.generation.augment.apply_random_ops` per image; the batch runs in ``count``
    rounds, each operation called once per round on the images that drew it there.
    """
    if not 0 < count <= len(ops):
        raise ValueError(f"apply_random_ops: count must be in [1, {len(ops)}], got {count}")
    chosen: Sequence[ImageOp] = list(ops.values())
    keys = torch.rand(images.shape[0], len(chosen), generator=generator, device=images.device)
    order = keys.argsort(dim=1)[:, :count]  # a uniformly random ordered choice without replacement

    def run(option: int, subset: Tensor, members: Tensor) -> Tensor:
        return chosen[option](subset, generator)

    return _apply_in_rounds(images, order, run, len(chosen))
