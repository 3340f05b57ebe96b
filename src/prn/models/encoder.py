"""ResNet-18 encoder of PRN (paper Sec. 3 and 4, "Implementation Details").

The stem and layer1-3 are ImageNet-pretrained and frozen: their features define the
prototypes, so they must never drift (weights *and* BatchNorm statistics). layer4
only feeds the decoder and is trainable. ImageNet normalisation lives inside the
module (buffers) so that exported models take plain [0, 1] images.

Weight loading never falls back silently: a failure raises `EncoderWeightsError`
unless the caller opts into `allow_random_fallback`, and `weights_report` always says
exactly what was loaded so that results can record it.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from torch import Tensor, nn
from torchvision.models import ResNet18_Weights, resnet18

logger = logging.getLogger(__name__)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
FROZEN_PREFIXES = ("conv1.", "bn1.", "layer1.", "layer2.", "layer3.")
TRAINABLE_PREFIXES = ("layer4.",)
IGNORED_PREFIXES = ("fc.",)  # classifier head: PRN never uses it
OPTION_NAME = "weights (model.net.encoder_weights)"


class EncoderWeightsError(RuntimeError):
    """The requested encoder weights could not be loaded."""


def _weights_error(source: str, problem: str, fix: str) -> EncoderWeightsError:
    return EncoderWeightsError(f"{OPTION_NAME}={source!r}: {problem}. Fix: {fix}")


def _read_state_dict_file(path: Path) -> dict[str, Tensor]:
    """Read a (possibly nested / DataParallel-prefixed) resnet18 state dict."""
    if not path.is_file():
        raise _weights_error(
            str(path),
            "file not found",
            "point it to an existing resnet18 state-dict .pth file, use 'imagenet' "
            "(torchvision download) or null (random init)",
        )
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises many types for corrupt files
        raise _weights_error(
            str(path), f"cannot be read by torch.load ({error})", "re-save it with torch.save(model.state_dict(), path)"
        ) from error
    if isinstance(loaded, dict) and isinstance(loaded.get("state_dict"), dict):
        loaded = loaded["state_dict"]
    if not isinstance(loaded, dict) or not all(isinstance(v, Tensor) for v in loaded.values()):
        raise _weights_error(
            str(path), "does not hold a state dict of tensors", "save torchvision resnet18().state_dict() to the file"
        )
    return {key.removeprefix("module."): value for key, value in loaded.items()}


def _download_imagenet_state_dict() -> dict[str, Tensor]:
    """torchvision's own download + cache ($TORCH_HOME) of IMAGENET1K_V1."""
    try:
        return ResNet18_Weights.IMAGENET1K_V1.get_state_dict(progress=False)
    except Exception as error:  # network / cache failures come in many types
        raise _weights_error(
            "imagenet",
            f"torchvision could not download or find ResNet18_Weights.IMAGENET1K_V1 ({error})",
            "connect to the internet once (torchvision caches it under $TORCH_HOME), or set "
            f"{OPTION_NAME} to a local resnet18 state-dict file",
        ) from error


class ResNet18Encoder(nn.Module):
    """ImageNet ResNet-18 returning [layer1, layer2, layer3, layer4] feature maps."""

    def __init__(self, weights: str | None = "imagenet", allow_random_fallback: bool = False) -> None:
        super().__init__()
        backbone = resnet18(weights=None)
        self.conv1, self.bn1, self.relu, self.maxpool = (backbone.conv1, backbone.bn1, backbone.relu, backbone.maxpool)
        self.layer1, self.layer2, self.layer3, self.layer4 = (
            backbone.layer1,
            backbone.layer2,
            backbone.layer3,
            backbone.layer4,
        )
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        self.weights_report = "random: loading not finished"
        self.weights_report = self._load_weights(weights, allow_random_fallback)
        for module in self.frozen_modules():
            module.requires_grad_(False)
        self.train(self.training)

    @property
    def channels(self) -> tuple[int, int, int, int]:
        return (64, 128, 256, 512)

    def frozen_modules(self) -> list[nn.Module]:
        return [self.conv1, self.bn1, self.layer1, self.layer2, self.layer3]

    def train(self, mode: bool = True) -> ResNet18Encoder:
        """Keep the frozen part in eval mode so its BatchNorm statistics never change."""
        super().train(mode)
        for module in self.frozen_modules():
            module.eval()
        return self

    def _load_weights(self, weights: str | None, allow_random_fallback: bool) -> str:
        if weights is None:
            return "random: no weights requested (all layers random init)"
        try:
            if weights == "imagenet":
                return "imagenet:torchvision IMAGENET1K_V1; " + self._apply_state_dict(
                    _download_imagenet_state_dict(), "imagenet"
                )
            path = Path(weights).expanduser()
            return f"file={path}; " + self._apply_state_dict(_read_state_dict_file(path), str(path))
        except EncoderWeightsError as error:
            if not allow_random_fallback:
                raise
            logger.warning("%s -- continuing with a RANDOM encoder (allow_random_fallback=True)", error)
            return f"random: fallback after load failure ({error})"

    def _apply_state_dict(self, state_dict: dict[str, Tensor], source: str) -> str:
        """Load stem/layer1-4; layer4 may be missing (reported), anything else must match."""
        wanted = {k: v for k, v in state_dict.items() if not k.startswith(IGNORED_PREFIXES)}
        own = {k: v for k, v in self.state_dict().items() if isinstance(v, Tensor)}
        unexpected = sorted(set(wanted) - set(own))
        missing = sorted(set(own) - set(wanted))
        missing_required = [k for k in missing if not k.startswith(TRAINABLE_PREFIXES)]
        if unexpected or missing_required:
            raise _weights_error(
                source,
                f"keys do not match torchvision resnet18 (unexpected: {unexpected[:5]}"
                f"{'...' if len(unexpected) > 5 else ''}, missing: {missing_required[:5]}"
                f"{'...' if len(missing_required) > 5 else ''})",
                "use a torchvision resnet18 state dict (at least conv1/bn1/layer1-3 keys)",
            )
        bad_shapes = [k for k, v in wanted.items() if v.shape != own[k].shape]
        if bad_shapes:
            raise _weights_error(
                source,
                f"tensor shapes differ from resnet18 for {bad_shapes[:5]}",
                "use weights of a torchvision resnet18, not another depth/width",
            )
        self.load_state_dict(wanted, strict=False)
        if missing:
            logger.warning("Encoder weights from %s have no layer4 keys: layer4 stays RANDOM", source)
            return "stem+layer1-3 loaded; layer4 random (missing keys)"
        return "stem+layer1-4 loaded (all keys)"

    def get_extra_state(self) -> dict[str, str]:
        """Save `weights_report` in checkpoints: a net rebuilt with weights=None to load a
        checkpoint must still report the weights it was trained with."""
        return {"weights_report": self.weights_report}

    def set_extra_state(self, state: dict[str, str]) -> None:
        self.weights_report = state["weights_report"]

    def normalize(self, images: Tensor) -> Tensor:
        return (images - self.mean) / self.std

    def _frozen_forward(self, images: Tensor) -> list[Tensor]:
        x = self.maxpool(self.relu(self.bn1(self.conv1(self.normalize(images)))))
        layer1 = self.layer1(x)
        layer2 = self.layer2(layer1)
        return [layer1, layer2, self.layer3(layer2)]

    def forward(self, images: Tensor) -> list[Tensor]:
        """[0,1] images [B,3,H,W] -> [layer1 (H/4), layer2 (H/8), layer3 (H/16), layer4 (H/32)]."""
        frozen = self._frozen_forward(images)
        return [*frozen, self.layer4(frozen[-1])]

    @torch.no_grad()
    def frozen_features(self, images: Tensor) -> list[Tensor]:
        """layer1-3 features without autograd: the inputs of prototype clustering."""
        return self._frozen_forward(images)
