"""Prototypical Residual Network (paper Fig. 3), composed from its parts.

  F_j = encoder layer j (j = 1..3, frozen; layer4 trainable feeds the decoder)
  MP : D_j = |F_j - P*_j|                     (prototypes.PrototypeBank)
       with patch_memory: D_j = W_j [D_j, g(d_j-1)]  (patch_memory.PatchMemory: d = PatchCore's distance map,
                                                resized to scale j; W_j a 1x1 conv, identity on D_j at start)
  MF : F* = MF_F(F), D* = MF_D(D)             (fusion.MultiScaleFusion)
       C*_j = concat(F*_j, D*_j)  (2c_j ch; c_j ch without MP)
  MSA: T_j = MSAStack_j(C*_j)                 (attention.MSAStack, depth 3)
  MF : T* = MF_T(T)
  decoder(layer4, T*) -> logits [B, 1, H, W]  (decoder.UNetDecoder)
  with pose_search: all of the above runs on the image turned and shifted to the normals' reference
       pose (registration.PoseRegistration), and the maps are warped back to the image's own frame

Each ablation switch removes exactly its module(s): use_mp the prototype bank and the
residual fusion, use_mf all three fusion blocks (replaced by identity), use_msa the
three MSA stacks. Sigmoid is left to the caller (losses work on logits).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from prn.models.attention import MSAStack
from prn.models.decoder import UNetDecoder
from prn.models.encoder import ResNet18Encoder
from prn.models.fusion import MultiScaleFusion
from prn.models.patch_memory import MEMORY_LAYERS, PatchMemory
from prn.models.prototypes import PrototypeBank
from prn.models.registration import PoseRegistration

SIZE_MULTIPLE = 128  # layer3 (H/16) must split into 8x8 MSA patches


def check_image_size(images: Tensor) -> None:
    """Raise a ValueError naming `image_size` unless images are [B, 3, H, W], H, W % 128 == 0."""
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"PRNet expects images [B, 3, H, W], got shape {tuple(images.shape)}")
    h, w = images.shape[-2:]
    if h % SIZE_MULTIPLE or w % SIZE_MULTIPLE:
        raise ValueError(
            f"image_size must be a multiple of {SIZE_MULTIPLE} in height and width "
            f"(got {h}x{w}); set data.image_size to e.g. 256"
        )


def _apply(modules: nn.ModuleList | None, maps: Sequence[Tensor]) -> list[Tensor]:
    """Apply per-scale modules, or pass maps through when the switch removed them."""
    if modules is None:
        return list(maps)
    return [module(m) for module, m in zip(modules, maps, strict=True)]


class ResidualMixer(nn.Module):
    """W [D, g (d - 1)]: a scale's prototype residual D (c channels) joined by the patch memory's distance d
    (1 channel, resized to D's grid) through a 1x1 conv that starts as the identity on D, so the
    network begins as plain PRN and learns where the distance helps.

    d is 1 on a typical normal patch, so d - 1 keeps the identity start on normals. The gain g is an
    equalised learning rate for the distance's zero-initialised column: Adam moves each weight by
    about lr per step whatever its gradient, so at lr 1e-4 a column starting at zero stays under 0.03
    over schedule=cpu's 300 steps (measured: |w| <= 0.005 after training, the distance ignored);
    with g = 10 its effective weight can reach 0.3 there, and grow further on longer schedules.
    """

    DISTANCE_GAIN = 10.0

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.mix = nn.Conv2d(channels + 1, channels, kernel_size=1)
        with torch.no_grad():
            self.mix.weight.zero_()
            self.mix.weight[:, :channels, 0, 0].copy_(torch.eye(channels))
            self.mix.bias.zero_()

    def forward(self, residual: Tensor, distance: Tensor) -> Tensor:
        if distance.shape[-2:] != residual.shape[-2:]:
            distance = nn.functional.interpolate(
                distance, size=residual.shape[-2:], mode="bilinear", align_corners=False
            )
        scaled = (distance - 1.0) * self.DISTANCE_GAIN
        return self.mix(torch.cat([residual, scaled.to(residual.dtype)], dim=1))


def _fuse(fusion: MultiScaleFusion | None, maps: Sequence[Tensor]) -> list[Tensor]:
    return list(maps) if fusion is None else fusion(maps)


class PRNet(nn.Module):
    """PRN: [0,1] images [B, 3, H, W] -> anomaly logits [B, 1, H, W]."""

    def __init__(
        self,
        encoder_weights: str | None = "imagenet",
        allow_random_fallback: bool = False,
        use_mp: bool = True,
        use_msa: bool = True,
        use_mf: bool = True,
        msa_depth: int = 3,
        msa_reduction: int = 4,
        prototype_match: str = "image",
        location_window: int = 0,
        location_candidates: int = 4,
        patch_memory: bool = False,
        memory_layers: Sequence[int] = MEMORY_LAYERS,
        pose_search: float | None = None,
    ) -> None:
        super().__init__()
        self.config = {
            "encoder_weights": encoder_weights,
            "allow_random_fallback": allow_random_fallback,
            "use_mp": use_mp,
            "use_msa": use_msa,
            "use_mf": use_mf,
            "msa_depth": msa_depth,
            "msa_reduction": msa_reduction,
            "prototype_match": prototype_match,
            "location_window": location_window,
            "location_candidates": location_candidates,
            "patch_memory": patch_memory,
            "memory_layers": list(memory_layers),
            "pose_search": pose_search,
        }  # the constructor's arguments: a checkpoint rebuilds the network from them
        self.use_mp, self.use_msa, self.use_mf = use_mp, use_msa, use_mf
        self.encoder = ResNet18Encoder(encoder_weights, allow_random_fallback)
        skip_channels = self.encoder.channels[:3]
        branch_channels = tuple(2 * c for c in skip_channels) if use_mp else skip_channels
        self.prototypes = (
            PrototypeBank(len(skip_channels), prototype_match, location_window, location_candidates) if use_mp else None
        )
        if patch_memory and not use_mp:
            raise ValueError(
                "prototypes.patch_memory=true joins the prototype residual: it needs use_mp=true (ablation=full)"
            )
        if pose_search is not None and not use_mp:
            raise ValueError("prototypes.pose_search registers images for the prototype residual: it needs use_mp=true")
        self.registration = PoseRegistration(pose_search) if pose_search is not None else None
        self.patch_memory = PatchMemory(memory_layers) if patch_memory else None
        self.residual_mixers = nn.ModuleList(ResidualMixer(c) for c in skip_channels) if patch_memory else None
        self.feature_fusion = MultiScaleFusion(skip_channels) if use_mf else None
        self.residual_fusion = MultiScaleFusion(skip_channels) if use_mf and use_mp else None
        self.msa = (
            nn.ModuleList(MSAStack(c, msa_depth, reduction=msa_reduction) for c in branch_channels) if use_msa else None
        )
        self.output_fusion = MultiScaleFusion(branch_channels) if use_mf else None
        self.decoder = UNetDecoder(branch_channels, self.encoder.channels[3])

    @property
    def needs_prototypes(self) -> bool:
        """True when MP is on, i.e. the PrototypeCallback must fill `self.prototypes`
        (check `self.prototypes.is_fitted` to skip a bank restored from a checkpoint)."""
        return self.prototypes is not None

    @property
    def weights_report(self) -> str:
        return self.encoder.weights_report

    def set_prototypes(self, prototypes: Sequence[Tensor], sources: Sequence[Tensor] | None = None) -> None:
        if self.prototypes is None:
            raise RuntimeError("set_prototypes called on a PRNet built with use_mp=False")
        self.prototypes.set_prototypes(prototypes, sources)

    def prototype_features(self, images: Tensor) -> list[Tensor]:
        """Frozen layer1-3 maps (no autograd) from which the prototypes are clustered (in the reference pose
        when registering: fit ``self.registration`` first)."""
        check_image_size(images)
        if self.registration is not None:
            images = self.registration.to_reference(images, self.registration.estimate(images))
        return self.encoder.frozen_features(images)

    def skip_connections(
        self, features: Sequence[Tensor], exclude: Tensor | None = None, distance: Tensor | None = None
    ) -> list[Tensor]:
        """F_1..3 -> T*_1..3: MP, MF, concat, MSA, MF as switched on (``distance``: the patch memory's, if computed)."""
        branches = _fuse(self.feature_fusion, features)
        if self.prototypes is not None:
            residuals = self.prototypes.residuals(features, exclude)
            if self.patch_memory is not None:
                distance = self.patch_memory(features, exclude) if distance is None else distance
                residuals = [mixer(r, distance) for mixer, r in zip(self.residual_mixers, residuals, strict=True)]
            residuals = _fuse(self.residual_fusion, residuals)
            branches = [torch.cat(pair, dim=1) for pair in zip(branches, residuals, strict=True)]
        return _fuse(self.output_fusion, _apply(self.msa, branches))

    def forward(self, images: Tensor, exclude: Tensor | None = None) -> Tensor:
        """``exclude`` (training only): each image's base normal index, whose own prototypes it may not match."""
        return self.forward_with_distance(images, exclude)[0]

    def forward_with_distance(self, images: Tensor, exclude: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
        """Logits and the patch memory's distance map ``[B, 1, H/8, W/8]`` (None without patch memory), computed once."""
        check_image_size(images)
        if self.registration is None:
            return self._forward_in_place(images, exclude)
        pose = self.registration.estimate(images)
        logits, distance = self._forward_in_place(self.registration.to_reference(images, pose), exclude)
        size = images.shape[-2:]
        logits = self.registration.to_image(logits, pose, size)
        return logits, None if distance is None else self.registration.to_image(distance, pose, size)

    def _forward_in_place(self, images: Tensor, exclude: Tensor | None) -> tuple[Tensor, Tensor | None]:
        *skips, bottom = self.encoder(images)
        distance = None if self.patch_memory is None else self.patch_memory(skips, exclude)
        return self.decoder(bottom, self.skip_connections(skips, exclude, distance)), distance
