"""PRNet composition (Fig. 3): shapes, ablation switches, freezing, prototypes in checkpoints."""

from __future__ import annotations

import itertools

import pytest
import torch

from prn.models import MSAStack, MultiScaleFusion, MultiSizeSelfAttention, PRNet, PrototypeBank, build_prototypes


def _fitted_net(size: tuple[int, int] = (128, 128), msa_depth: int = 1, **switches: bool) -> PRNet:
    """A random-encoder PRNet with prototypes; MSA depth 1 keeps the tests fast."""
    torch.manual_seed(0)
    net = PRNet(encoder_weights=None, msa_depth=msa_depth, **switches)
    if net.needs_prototypes:
        normal_images = torch.rand(3, 3, *size)
        net.set_prototypes(build_prototypes(net.prototype_features(normal_images), ratio=1.0))
    return net


def _count(net: PRNet, kind: type) -> int:
    return sum(isinstance(m, kind) for m in net.modules())


@pytest.mark.parametrize("size", [(128, 128), (256, 256), (128, 256)])
def test_logits_match_input_size(size: tuple[int, int]) -> None:
    net = _fitted_net(size).eval()
    with torch.no_grad():
        assert net(torch.rand(1, 3, *size)).shape == (1, 1, *size)


@pytest.mark.parametrize(("use_mp", "use_msa", "use_mf"), list(itertools.product([False, True], repeat=3)))
def test_every_switch_combination_trains(use_mp: bool, use_msa: bool, use_mf: bool) -> None:
    net = _fitted_net(use_mp=use_mp, use_msa=use_msa, use_mf=use_mf).train()
    logits = net(torch.rand(2, 3, 128, 128))
    assert logits.shape == (2, 1, 128, 128)
    logits.mean().backward()
    assert net.decoder.to_logits.weight.grad is not None
    assert _count(net, PrototypeBank) == int(use_mp)
    assert _count(net, MSAStack) == 3 * int(use_msa)
    assert _count(net, MultiScaleFusion) == (2 + int(use_mp)) * int(use_mf)
    assert net.needs_prototypes == use_mp
    skip_in = net.decoder.skip_stages[0][0].in_channels - 512
    assert skip_in == (512 if use_mp else 256)  # C*_3 has 2c_3 channels only with MP


def test_frozen_encoder_gets_no_grad_and_keeps_bn_stats() -> None:
    net = _fitted_net(msa_depth=3).train()
    assert _count(net, MultiSizeSelfAttention) == 9  # paper: N = 3 per scale
    frozen_keys = [
        k
        for k in net.state_dict()
        if k.startswith(("encoder.conv1", "encoder.bn1", "encoder.layer1", "encoder.layer2", "encoder.layer3"))
    ]
    before = {k: net.state_dict()[k].clone() for k in frozen_keys}
    optimizer = torch.optim.Adam([p for p in net.parameters() if p.requires_grad], lr=1e-2)
    net(torch.rand(2, 3, 128, 128)).mean().backward()
    optimizer.step()
    after = net.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in frozen_keys)
    assert all(p.grad is None for m in net.encoder.frozen_modules() for p in m.parameters())
    assert all(p.grad is not None for p in net.encoder.layer4.parameters())


def test_rejects_sizes_not_multiple_of_128() -> None:
    net = PRNet(encoder_weights=None, use_mp=False, use_msa=False, use_mf=False)
    with pytest.raises(ValueError, match="image_size"):
        net(torch.rand(1, 3, 128, 200))
    with pytest.raises(ValueError, match="image_size"):
        net.prototype_features(torch.rand(1, 3, 96, 128))


def test_forward_without_prototypes_explains_the_fix() -> None:
    net = PRNet(encoder_weights=None)
    with pytest.raises(RuntimeError, match="PrototypeCallback"):
        net(torch.rand(1, 3, 128, 128))


def test_checkpoint_with_prototypes_loads_into_fresh_net() -> None:
    net = _fitted_net().eval()
    images = torch.rand(1, 3, 128, 128)
    fresh = PRNet(encoder_weights=None, msa_depth=1).eval()
    fresh.load_state_dict(net.state_dict())
    assert fresh.prototypes.prototypes_1.shape == (3, 64, 32, 32)
    with torch.no_grad():
        assert torch.allclose(fresh(images), net(images))


def test_set_prototypes_without_mp_raises() -> None:
    with pytest.raises(RuntimeError, match="use_mp=False"):
        PRNet(encoder_weights=None, use_mp=False).set_prototypes([])
