"""ResNet18Encoder: weight loading (full / partial / broken / fallback), freezing, shapes."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch
from torchvision.models import ResNet18_Weights, resnet18

from prn.models.encoder import EncoderWeightsError, ResNet18Encoder

SHARED = Path(__file__).resolve().parents[2] / ".." / "shared"
PARTIAL_SHARED_WEIGHTS = SHARED / "weights" / "resnet18_imagenet_conv1_to_layer3.pth"
FROZEN_PREFIXES = ("conv1.", "bn1.", "layer1.", "layer2.", "layer3.")


@pytest.fixture(scope="module")
def reference_state() -> dict[str, torch.Tensor]:
    torch.manual_seed(123)
    return resnet18(weights=None).state_dict()


def _save(state: dict[str, torch.Tensor], path: Path) -> str:
    torch.save(state, path)
    return str(path)


def test_full_state_dict_loads_every_layer(tmp_path: Path, reference_state: dict) -> None:
    encoder = ResNet18Encoder(_save(reference_state, tmp_path / "full.pth"))
    for key, value in encoder.state_dict().items():
        if key != "_extra_state":
            assert torch.equal(value, reference_state[key]), key
    assert "stem+layer1-4 loaded" in encoder.weights_report
    assert "full.pth" in encoder.weights_report


def test_partial_state_dict_leaves_layer4_random_and_reports_it(
    tmp_path: Path, reference_state: dict, caplog: pytest.LogCaptureFixture
) -> None:
    partial = {k: v for k, v in reference_state.items() if k.startswith(FROZEN_PREFIXES)}
    with caplog.at_level(logging.WARNING):
        encoder = ResNet18Encoder(_save(partial, tmp_path / "partial.pth"))
    own = encoder.state_dict()
    assert all(torch.equal(own[k], v) for k, v in partial.items())
    assert not torch.equal(own["layer4.0.conv1.weight"], reference_state["layer4.0.conv1.weight"])
    assert "layer4 random (missing keys)" in encoder.weights_report
    assert "layer4 stays RANDOM" in caplog.text


def test_missing_file_names_option_and_path(tmp_path: Path) -> None:
    missing = tmp_path / "nope.pth"
    with pytest.raises(EncoderWeightsError, match=r"weights \(model\.net\.encoder_weights\).*nope\.pth.*not found"):
        ResNet18Encoder(str(missing))


def test_wrong_keys_are_rejected(tmp_path: Path) -> None:
    wrong = {"backbone.conv.weight": torch.zeros(3)}
    with pytest.raises(EncoderWeightsError, match="keys do not match"):
        ResNet18Encoder(_save(wrong, tmp_path / "wrong.pth"))


def test_missing_frozen_keys_are_rejected(tmp_path: Path, reference_state: dict) -> None:
    without_layer2 = {k: v for k, v in reference_state.items() if not k.startswith("layer2.")}
    with pytest.raises(EncoderWeightsError, match="layer2"):
        ResNet18Encoder(_save(without_layer2, tmp_path / "no_layer2.pth"))


def test_wrong_shapes_are_rejected(tmp_path: Path, reference_state: dict) -> None:
    bad = dict(reference_state)
    bad["conv1.weight"] = torch.zeros(32, 3, 7, 7)
    with pytest.raises(EncoderWeightsError, match="shapes"):
        ResNet18Encoder(_save(bad, tmp_path / "bad_shape.pth"))


def test_fallback_continues_random_and_says_so(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        encoder = ResNet18Encoder(str(tmp_path / "absent.pth"), allow_random_fallback=True)
    assert encoder.weights_report.startswith("random: fallback")
    assert "absent.pth" in encoder.weights_report
    assert "RANDOM encoder" in caplog.text


def test_imagenet_download_failure_raises(monkeypatch: pytest.MonkeyPatch) -> None:
    def offline(*args, **kwargs):
        raise OSError("network unreachable")

    monkeypatch.setattr(type(ResNet18_Weights.IMAGENET1K_V1), "get_state_dict", offline)
    with pytest.raises(
        EncoderWeightsError, match=r"weights \(model\.net\.encoder_weights\)='imagenet'.*network unreachable"
    ):
        ResNet18Encoder("imagenet")


def test_none_is_random_and_reported() -> None:
    assert ResNet18Encoder(None).weights_report.startswith("random: no weights requested")


def test_feature_shapes_and_frozen_features_match_forward() -> None:
    encoder = ResNet18Encoder(None).eval()
    images = torch.rand(2, 3, 128, 256)
    features = encoder(images)
    assert [tuple(f.shape) for f in features] == [(2, 64, 32, 64), (2, 128, 16, 32), (2, 256, 8, 16), (2, 512, 4, 8)]
    frozen = encoder.frozen_features(images)
    assert all(torch.equal(a, b) for a, b in zip(frozen, features[:3]))
    assert not any(f.requires_grad for f in frozen)


def test_frozen_part_stays_fixed_in_training_while_layer4_learns() -> None:
    encoder = ResNet18Encoder(None).train()
    frozen_before = {k: v.clone() for k, v in encoder.state_dict().items() if k.startswith(FROZEN_PREFIXES)}
    layer4_before = encoder.layer4[0].bn1.running_mean.clone()
    optimizer = torch.optim.SGD([p for p in encoder.parameters() if p.requires_grad], lr=0.1)
    encoder(torch.rand(2, 3, 128, 128))[-1].square().mean().backward()
    optimizer.step()
    assert all(not p.requires_grad for m in encoder.frozen_modules() for p in m.parameters())
    assert all(not m.training for m in encoder.frozen_modules())
    assert all(torch.equal(v, frozen_before[k]) for k, v in encoder.state_dict().items() if k in frozen_before)
    assert all(p.grad is not None for p in encoder.layer4.parameters())
    assert not torch.equal(layer4_before, encoder.layer4[0].bn1.running_mean)


def test_weights_report_travels_with_the_state_dict(tmp_path: Path, reference_state: dict) -> None:
    trained = ResNet18Encoder(_save(reference_state, tmp_path / "full.pth"))
    rebuilt = ResNet18Encoder(None)
    rebuilt.load_state_dict(trained.state_dict())
    assert rebuilt.weights_report == trained.weights_report


def test_normalisation_buffers_are_not_saved() -> None:
    keys = ResNet18Encoder(None).state_dict().keys()
    assert "mean" not in keys and "std" not in keys


@pytest.mark.shared
def test_shared_imagenet_file_gives_exact_layer1_to_3_values() -> None:
    if not PARTIAL_SHARED_WEIGHTS.is_file():
        pytest.skip(f"{PARTIAL_SHARED_WEIGHTS} absent")
    expected = torch.load(PARTIAL_SHARED_WEIGHTS, map_location="cpu", weights_only=True)
    encoder = ResNet18Encoder(str(PARTIAL_SHARED_WEIGHTS))
    own = encoder.state_dict()
    assert len(expected) == 90
    assert all(torch.equal(own[k], v) for k, v in expected.items())
    assert "layer4 random" in encoder.weights_report
