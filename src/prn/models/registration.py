"""Pose registration: bring every image to one reference pose before the location residual.

The location window compares each place of an image with the same place (+- a few cells) of the
normal maps. When the part moves and turns from image to image, that place holds something else,
and the residual carries pose instead of defects; a missing piece (a cut lead) is only visible
through *where* it should be. Registration estimates each image's rotation and shift against a
reference template of the normal training images, warps the image there before the network, and
warps the network's maps back, so maps, masks and scores stay in the image's own frame.

The estimate is a search: the image's grey levels (low resolution, mean removed, inside a disk so
that turning it brings nothing in or out) turned through every candidate angle, each correlated
with the template at every shift by FFT. The best angle is refined at twice the resolution. The
template is built from the normals themselves (``fit``): the first normal as anchor, every normal
registered to it and averaged, then once more to that average, so the reference pose is the
normals' own and the template is sharp where they agree.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from prn.models.fitted_buffers import resize_to_incoming

COARSE_SIZE = 64  # side of the signal for the angle search
FINE_SIZE = 128  # side of the signal for refining the best angle and the shift
COARSE_STEP = 3.0  # degrees between coarse candidates
FINE_STEP = 0.5  # degrees between fine candidates, within +- one coarse step
FIT_ROUNDS = 2  # template = mean of the normals registered to the anchor, then to that mean
FIT_CHUNK = 16  # normals registered at once while fitting (bounds memory; a forward pass takes its batch whole)


def _grey(images: Tensor) -> Tensor:
    return (0.299 * images[:, 0] + 0.587 * images[:, 1] + 0.114 * images[:, 2]).unsqueeze(1)


def _disk(size: int, device: torch.device) -> Tensor:
    coords = torch.arange(size, device=device, dtype=torch.float32) - (size - 1) / 2.0
    radius = torch.sqrt(coords[None, :] ** 2 + coords[:, None] ** 2)
    return (radius <= size / 2.0).float()


def signal(images: Tensor, size: int) -> Tensor:
    """``[B, 1, size, size]`` grey levels, longer side scaled to ``size`` (aspect kept, centred), mean 0 in a disk."""
    height, width = images.shape[-2:]
    scale = size / max(height, width)
    small = F.interpolate(
        _grey(images.float()),
        size=(max(1, round(height * scale)), max(1, round(width * scale))),
        mode="bilinear",
        align_corners=False,
        antialias=True,
    )
    top, left = (size - small.shape[-2]) // 2, (size - small.shape[-1]) // 2
    square = F.pad(small, (left, size - small.shape[-1] - left, top, size - small.shape[-2] - top), mode="replicate")
    disk = _disk(size, images.device)
    mean = (square * disk).sum(dim=(-2, -1), keepdim=True) / disk.sum()
    return (square - mean) * disk


def _rotation(angles: Tensor) -> Tensor:
    """``[A, 2, 2]`` matrices turning pixel offsets (x right, y down) by ``angles`` degrees."""
    radians = angles * (math.pi / 180.0)
    cos, sin = torch.cos(radians), torch.sin(radians)
    return torch.stack([torch.stack([cos, -sin], -1), torch.stack([sin, cos], -1)], -2)


def _sample(images: Tensor, linear: Tensor, offset: Tensor) -> Tensor:
    """Each output pixel ``p`` (offset from the centre, pixels) reads the input at ``linear @ p + offset``.

    ``images`` ``[B, C, H, W]``; ``linear`` ``[B, 2, 2]`` and ``offset`` ``[B, 2]`` in pixels of this size.
    Outside the input, the edge is repeated (as ``pose_jitter`` does).
    """
    height, width = images.shape[-2:]
    to_unit = torch.tensor([2.0 / width, 2.0 / height], device=images.device, dtype=torch.float32)
    theta_linear = to_unit[None, :, None] * linear.float() / to_unit[None, None, :]
    theta = torch.cat([theta_linear, (to_unit[None] * offset.float()).unsqueeze(-1)], dim=-1)
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    return F.grid_sample(images.float(), grid, mode="bilinear", padding_mode="border", align_corners=False).to(
        images.dtype
    )


def _best_shift(template_spectrum: Tensor, turned: Tensor, template_norm: Tensor) -> tuple[Tensor, Tensor]:
    """Normalised correlation peak of each turned signal ``[N, 1, s, s]`` with the template: score ``[N]``, shift ``[N, 2]`` (x, y)."""
    size = turned.shape[-1]
    padded = F.pad(turned, (0, size, 0, size))
    correlation = torch.fft.irfft2(torch.fft.rfft2(padded) * template_spectrum, s=padded.shape[-2:])
    flat = correlation.flatten(1)
    peak, index = flat.max(dim=1)
    rows, cols = index // padded.shape[-1], index % padded.shape[-1]
    wrap = padded.shape[-1]
    shift_y = torch.where(rows >= wrap // 2, rows - wrap, rows)
    shift_x = torch.where(cols >= wrap // 2, cols - wrap, cols)
    norms = turned.flatten(1).norm(dim=1) * template_norm
    return peak / norms.clamp_min(1e-12), torch.stack([shift_x, shift_y], dim=-1).float()


class PoseRegistration(nn.Module):
    """Estimates each image's pose against a reference template and warps images there and maps back.

    ``max_rotation`` (degrees) bounds the angle search (180: any angle). Pose is a rotation about the
    image centre followed by a shift; ``estimate`` returns it as the map from reference-frame pixels
    to image pixels (``linear``, ``offset``), ``to_reference`` and ``to_image`` warp with it.
    """

    def __init__(self, max_rotation: float = 180.0) -> None:
        super().__init__()
        if not 0.0 <= max_rotation <= 180.0:
            raise ValueError(
                f"prototypes.pose_search={max_rotation} must be in [0, 180] degrees (180: any angle, 0: shift only)"
            )
        self.max_rotation = float(max_rotation)
        self.register_buffer("template", torch.empty(0, 1, FINE_SIZE, FINE_SIZE))

    @property
    def is_fitted(self) -> bool:
        """Known from the shape alone, so exporting (a trace) never reads a tensor's value."""
        return self.template.shape[0] > 0

    @staticmethod
    def signals(images: Tensor) -> Tensor:
        """What ``fit`` needs of each normal image ``[B, 3, H, W]``: ``[B, 1, 128, 128]``, small enough to keep them all."""
        return signal(images, FINE_SIZE)

    @torch.no_grad()
    def fit(self, signals: Tensor) -> None:
        """Build the template from the normal training images' ``signals`` (the first is the anchor)."""
        if signals.shape[0] == 0:
            raise ValueError("PoseRegistration.fit needs at least one normal image")
        signals = signals.float()
        disk = _disk(FINE_SIZE, signals.device)
        template = signals[:1]
        for _ in range(FIT_ROUNDS):
            total = torch.zeros_like(template)
            for chunk in signals.split(FIT_CHUNK):
                total += _sample(chunk, *self._estimate_signals(chunk, template)).sum(dim=0, keepdim=True)
            template = total / signals.shape[0] * disk
        self.template = template.to(self.template)

    @torch.no_grad()
    def estimate(self, images: Tensor) -> tuple[Tensor, Tensor]:
        """Each image's pose: ``linear`` ``[B, 2, 2]`` and ``offset`` ``[B, 2]``, in pixels of ``images``."""
        if not self.is_fitted:
            raise RuntimeError("PoseRegistration has no template: the PrototypeCallback fits it from the normal images")
        linear, offset = self._estimate_signals(signal(images, FINE_SIZE), self.template.float())
        scale = max(images.shape[-2:]) / FINE_SIZE
        return linear, offset * scale

    def to_reference(self, images: Tensor, pose: tuple[Tensor, Tensor]) -> Tensor:
        """Warp ``images`` (any channels) into the reference pose."""
        linear, offset = pose
        return _sample(images, linear, offset)

    def to_image(self, maps: Tensor, pose: tuple[Tensor, Tensor], image_size: tuple[int, int]) -> Tensor:
        """Warp reference-frame ``maps`` ``[B, C, h, w]`` (any resolution) back to each image's own frame."""
        linear, offset = pose
        inverse = linear.float().transpose(-1, -2)  # a rotation: its inverse is its transpose (and exports)
        scale = maps.shape[-1] / image_size[-1]
        return _sample(maps, inverse, -(inverse @ (offset.float() * scale).unsqueeze(-1)).squeeze(-1))

    def _estimate_signals(self, signals: Tensor, template: Tensor) -> tuple[Tensor, Tensor]:
        """Poses of ``[N, 1, FINE_SIZE, FINE_SIZE]`` signals against ``template``, in FINE_SIZE pixels."""
        coarse_template = F.interpolate(template, size=(COARSE_SIZE, COARSE_SIZE), mode="area")
        coarse = F.interpolate(signals, size=(COARSE_SIZE, COARSE_SIZE), mode="area")
        steps = math.floor(self.max_rotation / COARSE_STEP)
        angles = torch.arange(-steps, steps + 1, device=signals.device, dtype=torch.float32) * COARSE_STEP
        if self.max_rotation >= 180.0:
            angles = angles[angles > -180.0]
        best, _ = self._search(coarse, coarse_template, angles.expand(signals.shape[0], -1))
        fine_offsets = torch.arange(-COARSE_STEP, COARSE_STEP + FINE_STEP / 2, FINE_STEP, device=signals.device)
        fine_angles = best.unsqueeze(1) + fine_offsets.unsqueeze(0)
        if self.max_rotation < 180.0:  # refining never leaves the search (0: shift only)
            fine_angles = fine_angles.clamp(-self.max_rotation, self.max_rotation)
        angle, shift = self._search(signals, template, fine_angles)
        linear = _rotation(angle)
        return linear, (linear @ shift.unsqueeze(-1)).squeeze(-1)

    def _search(self, signals: Tensor, template: Tensor, angles: Tensor) -> tuple[Tensor, Tensor]:
        """Per signal, the angle of ``angles`` ``[N, A]`` whose turned signal correlates best, and its shift."""
        count, per_signal = angles.shape
        size = signals.shape[-1]
        template_spectrum = torch.conj(torch.fft.rfft2(F.pad(template, (0, size, 0, size))))
        flat_angles = angles.reshape(-1)
        zero = torch.zeros(flat_angles.shape[0], 2, device=signals.device)
        sources = signals.repeat_interleave(per_signal, dim=0)
        turned = _sample(sources, _rotation(flat_angles), zero) * _disk(size, signals.device)
        score, shift = _best_shift(template_spectrum, turned, template.flatten().norm())
        best = score.view(count, per_signal).argmax(dim=1)
        rows = torch.arange(count, device=signals.device)
        return angles[rows, best], shift.view(count, per_signal, 2)[rows, best]

    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str, *args: Any, **kwargs: Any) -> None:
        resize_to_incoming(self, state_dict, prefix, ("template",))
        state_dict.pop(prefix + "fitted", None)  # an earlier flag, now read from the template's shape
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
