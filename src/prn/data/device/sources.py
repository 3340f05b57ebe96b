"""Extended and simulated anomalies (PRN Sec. 3.4) for a whole batch at once, on the training device.

Device twins of :class:`~prn.data.generation.ExtendedAnomalySource` and
:class:`~prn.data.generation.SimulatedAnomalySource`: constructed from the same options (the Hydra
factories' keywords), drawing from the same distributions, but called with the bases of every slot
of a source in one batch, ``(pool, bases, generator) -> (images [B, 3, H, W], masks [B, H, W])``,
images float in [0, 1]. Samples of one kind are made together: the colour operations per op, the
geometric ones as one ``grid_sample``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from prn.data.device.color import apply_random_ops, extended_color_ops, homologous_color_jitter, texture_ops
from prn.data.device.erase import DeviceErasedAnomalies, blur5, changed_after, value_ranges
from prn.data.device.lines import DeviceThinLines
from prn.data.device.perlin import perlin_masks
from prn.data.device.pool import PoolTensors, as_float
from prn.data.device.regions import (
    DEFAULT_TARGET_SCALE,
    TARGET_SHAPES,
    perlin_masks_within,
    random_pixels,
    target_areas,
)
from prn.data.generation.augment import validate_beta
from prn.data.generation.extended import AUG1_OP_COUNT
from prn.data.generation.simulated import MAX_VISIBLE_ATTEMPTS, MIN_VISIBLE_PIXELS, TEXTURE_OP_COUNT, list_textures
from prn.data.generation.thin_lines import resolve_lines


def uniform(count: int, bounds: Sequence[float], generator: torch.Generator, device: torch.device) -> Tensor:
    """``[count]`` draws of U(bounds[0], bounds[1])."""
    return bounds[0] + (bounds[1] - bounds[0]) * torch.rand(count, generator=generator, device=device)


def blend(base: Tensor, fill: Tensor, masks: Tensor, beta: Tensor) -> Tensor:
    """PRN Eq. 4 for a batch: ``(1-M)·N + (1-β)·M·fill + β·M·N``, β per image; outside M the base, exactly."""
    mixed = (1.0 - beta)[:, None, None, None] * fill + beta[:, None, None, None] * base
    return torch.where(masks[:, None], mixed, base)


def warp(images: Tensor, matrices: Tensor, mode: str) -> Tensor:
    """``images`` moved by pixel-space affine ``matrices`` ``[B, 2, 3]`` (output -> input), zeros outside."""
    batch, _, height, width = images.shape
    # pixel -> normalised [-1, 1] (align_corners=False): u = (2x + 1) / W - 1
    to_norm = torch.tensor(
        [[2.0 / width, 0.0, 1.0 / width - 1.0], [0.0, 2.0 / height, 1.0 / height - 1.0], [0.0, 0.0, 1.0]],
        device=images.device,
    )
    from_norm = torch.linalg.inv(to_norm)
    full = torch.cat([matrices, torch.tensor([[[0.0, 0.0, 1.0]]], device=images.device).expand(batch, 1, 3)], dim=1)
    theta = (to_norm @ full @ from_norm)[:, :2]
    grid = F.affine_grid(theta, [batch, 1, height, width], align_corners=False)
    return F.grid_sample(images, grid, mode=mode, padding_mode="zeros", align_corners=False)


def affine_matrices(
    count: int,
    shape: tuple[int, int],
    rotate: Sequence[float],
    shear: Sequence[float],
    shift: Sequence[float],
    generator: torch.Generator,
    device: torch.device,
) -> Tensor:
    """``[count, 2, 3]`` output->input maps of albumentations' Affine draws: rotation and x/y shear about the
    centre, then a shift of a fraction of the image size per axis."""
    height, width = shape
    angle = uniform(count, rotate, generator, device) * (math.pi / 180.0)
    shear_x = torch.tan(uniform(count, shear, generator, device) * (math.pi / 180.0))
    shear_y = torch.tan(uniform(count, shear, generator, device) * (math.pi / 180.0))
    move_x = torch.trunc(uniform(count, shift, generator, device) * width)
    move_y = torch.trunc(uniform(count, shift, generator, device) * height)
    cos, sin = torch.cos(angle), torch.sin(angle)
    rotation = torch.stack([torch.stack([cos, -sin], -1), torch.stack([sin, cos], -1)], -2)
    shearing = torch.stack(
        [torch.stack([torch.ones_like(shear_x), shear_x], -1), torch.stack([shear_y, torch.ones_like(shear_y)], -1)],
        -2,
    )
    forward = rotation @ shearing  # input -> output about the centre
    inverse = torch.linalg.inv(forward)
    centre = torch.tensor([(width - 1) / 2.0, (height - 1) / 2.0], device=device)
    offset = centre[None] + torch.stack([move_x, move_y], -1)
    # output p -> input: inverse @ (p - offset) + centre
    translation = centre[None] - (inverse @ offset[:, :, None])[:, :, 0]
    return torch.cat([inverse, translation[:, :, None]], dim=2)


def shift_matrices(shift_x: Tensor, shift_y: Tensor) -> Tensor:
    """``[B, 2, 3]`` output->input maps of plain shifts by ``(shift_x, shift_y)`` pixels."""
    eye = torch.eye(2, device=shift_x.device).expand(len(shift_x), 2, 2)
    return torch.cat([eye, torch.stack([-shift_x, -shift_y], -1)[:, :, None]], dim=2)


class DeviceExtendedAnomalies:
    """EA for a batch: seen defects re-coloured (2 of 7 ops), moved by a random affine until their region
    overlaps a target area enough (best of ``max_placement_tries``, else a plain shift onto it), clipped, blended.
    """

    def __init__(
        self,
        use_target_area: bool = True,
        beta: Sequence[float] = (0.0, 0.5),
        rotate: Sequence[float] = (-90.0, 90.0),
        shear: Sequence[float] = (-15.0, 15.0),
        shift: Sequence[float] = (-0.25, 0.25),
        target_shapes: Sequence[str] = TARGET_SHAPES,
        target_scale: Sequence[float] = DEFAULT_TARGET_SCALE,
        max_placement_tries: int = 10,
        min_overlap_fraction: float = 0.3,
    ) -> None:
        self.use_target_area = use_target_area
        self.beta = validate_beta(beta, "ExtendedAnomalySource")
        self.rotate, self.shear, self.shift = tuple(rotate), tuple(shear), tuple(shift)
        self.target_shapes = tuple(target_shapes)
        self.target_scale = (float(target_scale[0]), float(target_scale[1]))
        self.max_placement_tries = max(1, int(max_placement_tries))
        self.min_overlap_fraction = float(min_overlap_fraction)
        self.color_ops = extended_color_ops()

    def check_pool(self, pool: PoolTensors) -> None:
        if not pool.seen_masks.flatten(1).any(dim=1).any():
            raise ValueError(
                "Extended anomalies need seen anomalies with a non-empty mask; "
                "set num_seen_anomalies > 0 or turn extended anomalies (ea) off"
            )

    def __call__(self, pool: PoolTensors, bases: Tensor, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        device, count = bases.device, len(bases)
        usable = pool.seen_masks.flatten(1).any(dim=1).nonzero()[:, 0]
        chosen = usable[torch.randint(len(usable), (count,), generator=generator, device=device)]
        recoloured = apply_random_ops(
            as_float(pool.seen_images[chosen]), self.color_ops, AUG1_OP_COUNT, generator=generator
        )
        allowed = pool.allowed(bases, self.use_target_area)
        if self.use_target_area:
            targets = target_areas(allowed, generator, self.target_shapes, self.target_scale)
        else:
            targets = allowed
        moved, moved_masks = self._place(recoloured, pool.seen_masks[chosen], targets, generator)
        clipped = moved_masks & targets
        beta = uniform(count, self.beta, generator, device)
        return blend(pool.normal_images(bases), moved, clipped, beta), clipped.float()

    def _place(
        self, images: Tensor, masks: Tensor, targets: Tensor, generator: torch.Generator
    ) -> tuple[Tensor, Tensor]:
        """Aug_2 per sample, redrawn for those below the wanted overlap; each keeps its best draw."""
        count, device, shape = len(images), images.device, tuple(images.shape[2:])
        wanted = torch.clamp(
            self.min_overlap_fraction * torch.minimum(masks.flatten(1).sum(1), targets.flatten(1).sum(1)).float(),
            min=1.0,
        )
        best_images, best_masks = torch.zeros_like(images), torch.zeros_like(masks)
        best_overlap = torch.zeros(count, device=device)
        pending = torch.arange(count, device=device)
        for _ in range(self.max_placement_tries):
            matrices = affine_matrices(len(pending), shape, self.rotate, self.shear, self.shift, generator, device)
            moved = warp(images[pending], matrices, "bilinear")
            moved_masks = warp(masks[pending, None].float(), matrices, "nearest")[:, 0] > 0.5
            overlap = (moved_masks & targets[pending]).flatten(1).sum(1).float()
            better = overlap > best_overlap[pending]
            improved = pending[better]
            best_images[improved], best_masks[improved] = moved[better], moved_masks[better]
            best_overlap[improved] = overlap[better]
            pending = pending[overlap < wanted[pending]]
            if len(pending) == 0:
                return best_images, best_masks
        missed = (best_overlap == 0).nonzero()[:, 0]
        if len(missed):
            best_images[missed], best_masks[missed] = self._shift_onto(
                images[missed], masks[missed], targets[missed], generator
            )
        return best_images, best_masks

    @staticmethod
    def _shift_onto(
        images: Tensor, masks: Tensor, targets: Tensor, generator: torch.Generator
    ) -> tuple[Tensor, Tensor]:
        """A random region pixel moved onto a random target pixel: overlap is certain."""
        source_rows, source_cols = random_pixels(masks, generator)
        target_rows, target_cols = random_pixels(targets, generator)
        matrices = shift_matrices((target_cols - source_cols).float(), (target_rows - source_rows).float())
        moved = warp(images, matrices, "nearest")
        return moved, warp(masks[:, None].float(), matrices, "nearest")[:, 0] > 0.5


class DeviceSimulatedAnomalies:
    """SA for a batch: each sample one of HEA / HOA / erase / lines (evenly, among those on); Perlin blobs in a
    target area filled with an augmented DTD texture (HEA) or a re-coloured, turned and shifted other normal
    (HOA), a piece erased, or a thin crack or scratch."""

    KINDS = ("hea", "hoa", "erase", "lines")

    def __init__(
        self,
        dtd_dir: str | None = None,
        use_heterologous: bool = True,
        use_homologous: bool = True,
        use_target_area: bool = True,
        beta: Sequence[float] = (0.0, 0.8),
        perlin_threshold: float = 0.5,
        target_shapes: Sequence[str] = TARGET_SHAPES,
        target_scale: Sequence[float] = DEFAULT_TARGET_SCALE,
        texture_cache_size: int = 64,
        min_mask_fraction: float = 0.3,
        use_erase: bool = False,
        use_lines: bool | str = False,
        visible_only: bool = False,
    ) -> None:
        self.lines_setting = use_lines  # "auto" is settled by check_pool, once the foregrounds are known
        switches = dict(zip(self.KINDS, (use_heterologous, use_homologous, use_erase, bool(use_lines))))
        self.kinds = [kind for kind in self.KINDS if switches[kind]]
        if not self.kinds:
            raise ValueError(
                "SimulatedAnomalySource needs generation.hea, hoa, erase or lines on; with all off, leave simulated anomalies out"
            )
        self.texture_files = list_textures(dtd_dir) if use_heterologous else None
        self.eraser = DeviceErasedAnomalies(target_shapes) if use_erase else None
        self.liner = DeviceThinLines() if use_lines else None
        resolve_lines(use_lines, [])  # a bad setting fails here, not at the first batch
        self.use_target_area = use_target_area
        self.visible_only = visible_only
        self.beta = validate_beta(beta, "SimulatedAnomalySource")
        self.perlin_threshold = perlin_threshold
        self.min_mask_fraction = min_mask_fraction
        self.target_shapes = tuple(target_shapes)
        self.target_scale = (float(target_scale[0]), float(target_scale[1]))
        self.texture_ops = texture_ops()

    def check_pool(self, pool: PoolTensors) -> None:
        if self.lines_setting == "auto":
            self._settle_auto_lines(pool)
        if "hoa" in self.kinds and len(pool.normals) == 0:
            raise ValueError("Homologous anomalies (generation.hoa) need normal images, but the pool has none")
        if "hea" in self.kinds and pool.textures is None:
            raise ValueError("HEA on the device needs the DTD textures in the pool (PoolTensors.textures)")

    def __call__(self, pool: PoolTensors, bases: Tensor, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        device, count = bases.device, len(bases)
        kinds = torch.randint(len(self.kinds), (count,), generator=generator, device=device)
        images = torch.empty(count, 3, *pool.image_size, device=device)
        masks = torch.empty(count, *pool.image_size, device=device)
        for code, kind in enumerate(self.kinds):
            members = (kinds == code).nonzero()[:, 0]
            if len(members) == 0:
                continue
            if kind in ("erase", "lines"):
                allowed = pool.foregrounds[bases[members]] if self._uses_foreground(pool) else None
                remove_or_draw = self.eraser if kind == "erase" else self.liner
                images[members], masks[members] = remove_or_draw(pool.normal_images(bases[members]), allowed, generator)
            elif self.visible_only:
                images[members], masks[members] = self._visibly_pasted(kind, pool, bases[members], generator)
            else:
                images[members], masks[members] = self._pasted(kind, pool, bases[members], generator)
        return images, masks

    def _settle_auto_lines(self, pool: PoolTensors) -> None:
        """``use_lines="auto"``: lines stay among the kinds only where the normals fill the frame.

        The pool holds no foregrounds with target areas off, which reads as a surface here (the CPU
        path still sees the estimated foregrounds and decides on them).
        """
        if pool.foregrounds is None:
            coverages = [1.0]
        else:
            coverages = pool.foregrounds.flatten(1).float().mean(dim=1).tolist()
        if not resolve_lines("auto", coverages):
            self.kinds = [kind for kind in self.kinds if kind != "lines"]
            if not self.kinds:
                raise ValueError("generation.lines=auto found an object, not a surface, and every other kind is off")
        self.lines_setting = "settled"

    def _uses_foreground(self, pool: PoolTensors) -> bool:
        return self.use_target_area and pool.foregrounds is not None

    def _pasted(self, kind: str, pool: PoolTensors, bases: Tensor, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        if kind == "hea":
            fill = self._heterologous_fill(pool, len(bases), generator)
        else:
            fill = self._homologous_fill(pool, bases, generator)
        masks = self._anomaly_masks(pool, bases, generator)
        beta = uniform(len(bases), self.beta, generator, bases.device)
        return blend(pool.normal_images(bases), fill, masks, beta), masks.float()

    def _visibly_pasted(
        self, kind: str, pool: PoolTensors, bases: Tensor, generator: torch.Generator
    ) -> tuple[Tensor, Tensor]:
        """Pastes kept and labelled only where they visibly changed the base (the CPU path's ``visible_only``);
        images whose paste changed fewer than ``MIN_VISIBLE_PIXELS`` are redrawn, keeping each one's best."""
        normals = pool.normal_images(bases)
        blurred, ranges = blur5(normals), value_ranges(normals)
        result, masks = (
            normals.clone(),
            torch.zeros(len(bases), *pool.image_size, dtype=torch.bool, device=bases.device),
        )
        pending = torch.arange(len(bases), device=bases.device)
        for _ in range(MAX_VISIBLE_ATTEMPTS):
            pasted, blobs = self._pasted(kind, pool, bases[pending], generator)
            visible = changed_after(blurred[pending], ranges[pending], pasted, blobs > 0)
            count = visible.flatten(1).sum(dim=1)
            better = count > masks[pending].flatten(1).sum(dim=1)
            chosen = pending[better]
            result[chosen] = torch.where(visible[better, None], pasted[better], normals[chosen])
            masks[chosen] = visible[better]
            pending = pending[masks[pending].flatten(1).sum(dim=1) < MIN_VISIBLE_PIXELS]
            if len(pending) == 0:
                break
        return result, masks.float()

    def _heterologous_fill(self, pool: PoolTensors, count: int, generator: torch.Generator) -> Tensor:
        device = pool.device
        chosen = torch.randint(len(pool.textures), (count,), generator=generator, device=device)
        return apply_random_ops(
            as_float(pool.textures[chosen]), self.texture_ops, TEXTURE_OP_COUNT, generator=generator
        )

    def _homologous_fill(self, pool: PoolTensors, bases: Tensor, generator: torch.Generator) -> Tensor:
        """Another normal (never the base when there is another), re-coloured, turned, maybe flipped, rolled."""
        device, count = bases.device, len(bases)
        total = len(pool.normals)
        if total > 1:
            others = torch.randint(total - 1, (count,), generator=generator, device=device)
            others = others + (others >= bases).long()
        else:
            others = bases
        fill = homologous_color_jitter(pool.normal_images(others), generator=generator)
        height, width = pool.image_size
        turns = torch.randint(4, (count,), generator=generator, device=device)
        if height != width:
            turns = 2 * (turns % 2)
        for quarter in turns.unique().tolist():
            members = (turns == quarter).nonzero()[:, 0]
            fill[members] = torch.rot90(fill[members], quarter, dims=(2, 3))
        flips = torch.rand(count, generator=generator, device=device) < 0.5
        fill = torch.where(flips[:, None, None, None], fill.flip(3), fill)
        return roll_each(fill, generator)

    def _anomaly_masks(self, pool: PoolTensors, bases: Tensor, generator: torch.Generator) -> Tensor:
        if not self.use_target_area:
            return perlin_masks(len(bases), pool.image_size, generator, bases.device, self.perlin_threshold)
        allowed = pool.allowed(bases, True)
        targets = target_areas(allowed, generator, self.target_shapes, self.target_scale)
        return perlin_masks_within(targets, generator, self.perlin_threshold, self.min_mask_fraction)


def roll_each(images: Tensor, generator: torch.Generator) -> Tensor:
    """Every image cyclically shifted by its own offset of up to half its size per axis (the CPU path's ``np.roll``)."""
    count, _, height, width = images.shape
    device = images.device
    shift_y = torch.randint(-(height // 2), height // 2 + 1, (count,), generator=generator, device=device)
    shift_x = torch.randint(-(width // 2), width // 2 + 1, (count,), generator=generator, device=device)
    rows = (torch.arange(height, device=device)[None] - shift_y[:, None]) % height  # [B, H]
    cols = (torch.arange(width, device=device)[None] - shift_x[:, None]) % width  # [B, W]
    gathered = images.gather(2, rows[:, None, :, None].expand(count, 3, height, width))
    return gathered.gather(3, cols[:, None, None, :].expand(count, 3, height, width))
