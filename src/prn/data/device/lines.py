"""Thin-line anomalies (cracks, scratches) for a batch on the training device.

The device twin of :mod:`prn.data.generation.thin_lines` (its docstring says why lines need their
own source), with the same constants. A line's geometry is a polyline a few hundred points long,
drawn anti-aliased by OpenCV on the host from a numpy stream seeded by the torch generator: that
costs well under a millisecond an image, and a rasteriser in torch would cost more than it saves.
Everything that reads the image (its value range, the grain round the line, the shading, the
labelled pixels and the redraws) runs batched where the model trains.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from prn.data.device.erase import blur5, dilate, gaussian_taps, separable_filter, spread_on, value_ranges
from prn.data.generation.thin_lines import (
    DEFAULT_CONTRAST,
    DEFAULT_LENGTH,
    DEFAULT_WIDTH,
    LABEL_FRACTION,
    MAX_LINE_ATTEMPTS,
    MIN_LABELLED_PIXELS,
    MIN_NOISE_RATIO,
    checked_line_options,
    draw_line_profile,
    random_shading,
)

NEAR_RADIUS = 4  # the 9x9 neighbourhood whose grain bounds how faint a line may be
RIM_SIGMA = 1.5


def host_stream(generator: torch.Generator) -> np.random.Generator:
    """A numpy stream for the host-side geometry, seeded from ``generator`` so runs stay reproducible."""
    seed = torch.randint(2**62, (1,), generator=generator, device=generator.device)
    return np.random.default_rng(int(seed.item()))


def rim_profiles(profiles: Tensor) -> Tensor:
    """``[B, H, W]`` band beside each line's core (:func:`prn.data.generation.thin_lines.rim_profile`)."""
    taps = gaussian_taps(RIM_SIGMA)
    spread = separable_filter(profiles, taps, taps)
    return (2.0 * spread - profiles).clamp(0.0, 1.0) * (profiles < 0.5)


class DeviceThinLines:
    """Batched ``ThinLineAnomalySource``: returns (images with a thin line, its labelled pixels)."""

    def __init__(
        self,
        length: Sequence[float] = DEFAULT_LENGTH,
        width: Sequence[int] = DEFAULT_WIDTH,
        contrast: Sequence[float] = DEFAULT_CONTRAST,
    ) -> None:
        self.length, self.width, self.contrast = checked_line_options(length, width, contrast)

    def __call__(self, images: Tensor, foreground: Tensor | None, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        """(``[B, 3, H, W]`` images in [0, 1] with a line each, ``[B, H, W]`` float32 masks in {0, 1}).

        ``foreground`` ``[B, H, W]`` bool (None, or an image's empty mask: anywhere). Images whose
        line labelled fewer than ``MIN_LABELLED_PIXELS`` pixels are redrawn, keeping each one's best.
        """
        rng = host_stream(generator)
        allowed = None if foreground is None else foreground.cpu().numpy()
        result, masks = images.clone(), torch.zeros(images.shape[0], *images.shape[2:], device=images.device)
        pending = torch.arange(len(images), device=images.device)
        for _ in range(MAX_LINE_ATTEMPTS):
            lined, mask = self._attempt(
                images[pending], None if allowed is None else allowed[pending.cpu().numpy()], rng
            )
            better = mask.flatten(1).sum(dim=1) > masks[pending].flatten(1).sum(dim=1)
            chosen = pending[better]
            result[chosen], masks[chosen] = lined[better], mask[better].float()
            pending = pending[masks[pending].flatten(1).sum(dim=1) < MIN_LABELLED_PIXELS]
            if len(pending) == 0:
                break
        return result, masks

    def _attempt(self, images: Tensor, allowed: np.ndarray | None, rng: np.random.Generator) -> tuple[Tensor, Tensor]:
        """One line per image: (lined images, ``[B, H, W]`` bool pixels that moved by half the line's contrast)."""
        count, _, height, width = images.shape
        profiles = [
            draw_line_profile(
                (height, width), None if allowed is None else allowed[index], rng, self.length, self.width
            )
            for index in range(count)
        ]
        shadings = [random_shading(rng, self.contrast) for _ in range(count)]
        device = images.device
        profile = torch.from_numpy(np.stack(profiles)).to(device)
        polarity, contrast, rim = (
            torch.tensor([getattr(shading, name) for shading in shadings], device=device, dtype=torch.float32)
            for name in ("polarity", "contrast", "rim")
        )
        grey_levels = images * 255.0
        grain = spread_on(grey_levels - blur5(grey_levels), dilate(profile > 0, NEAR_RADIUS))
        strength = torch.maximum(contrast * value_ranges(images) * 255.0, MIN_NOISE_RATIO * grain)
        change = (polarity * strength)[:, None, None] * (profile - rim[:, None, None] * rim_profiles(profile))
        lined = (grey_levels + change[:, None]).clamp(0.0, 255.0)
        moved = (lined - grey_levels).abs().amax(dim=1)
        return lined / 255.0, moved >= LABEL_FRACTION * strength[:, None, None]
