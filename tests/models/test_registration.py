"""Pose registration: poses recovered on a turned and shifted part, warps that undo each other, the PRNet switch."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from prn.data.pose_jitter import PoseParams, apply_pose
from prn.models import PRNet, build_prototypes
from prn.models.registration import PoseRegistration

SIZE = 128


def _part() -> np.ndarray:
    """An asymmetric part on a flat background: a bar, a disc off its axis and a thin lead."""
    image = np.full((SIZE, SIZE, 3), 40, np.uint8)
    image[40:88, 44:84] = 200
    yy, xx = np.mgrid[:SIZE, :SIZE]
    image[(yy - 44) ** 2 + (xx - 92) ** 2 < 90] = (90, 160, 230)
    image[88:112, 52:56] = 255
    return image


def _tensor(images: list[np.ndarray]) -> torch.Tensor:
    return torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float() / 255.0


def _fitted(images: torch.Tensor, max_rotation: float = 180.0) -> PoseRegistration:
    registration = PoseRegistration(max_rotation)
    registration.fit(registration.signals(images))
    return registration


def _angle(linear: torch.Tensor) -> torch.Tensor:
    return torch.rad2deg(torch.atan2(linear[:, 1, 0], linear[:, 0, 0]))


POSES = [PoseParams(25.0, 0.06, -0.04), PoseParams(-40.0, -0.08, 0.02), PoseParams(150.0, 0.0, 0.05)]


def test_turned_and_shifted_parts_come_back_to_the_reference_pose() -> None:
    part = _part()
    registration = _fitted(_tensor([part]))
    moved = _tensor([apply_pose(part, None, pose)[0] for pose in POSES])
    linear, offset = registration.estimate(moved)
    # cv2's angle turns the picture counter-clockwise, i.e. clockwise in (x right, y down) offsets
    assert torch.allclose(_angle(linear), -torch.tensor([p.angle for p in POSES]), atol=1.5)
    back = registration.to_reference(moved, (linear, offset))
    reference = _tensor([part])
    centre = slice(24, 104)
    error = (back - reference)[..., centre, centre].abs().mean(dim=(1, 2, 3))
    assert error.max() < 0.04, error  # the bar, disc and lead are back in place (misplaced: ~0.2)


def test_search_range_bounds_the_angle() -> None:
    part = _part()
    registration = _fitted(_tensor([part]), max_rotation=30.0)
    moved = _tensor([apply_pose(part, None, PoseParams(120.0, 0.0, 0.0))[0]])
    angle = _angle(registration.estimate(moved)[0])
    assert angle.abs().item() <= 30.0 + 1e-4  # never beyond the search, refinement included (float rounding)


def test_a_search_of_zero_degrees_only_shifts() -> None:
    part = _part()
    registration = _fitted(_tensor([part]), max_rotation=0.0)
    moved = _tensor([apply_pose(part, None, PoseParams(10.0, 0.1, 0.0))[0]])
    linear, offset = registration.estimate(moved)
    assert torch.equal(linear, torch.eye(2)[None]) and 8.0 <= offset[0, 0].item() <= 18.0  # ~12.8 px right


def test_to_image_undoes_to_reference_inside_the_frame() -> None:
    registration = _fitted(_tensor([_part()]))
    blocks = torch.rand(2, 1, 16, 16, generator=torch.Generator().manual_seed(0))  # seeded: the bound is not luck
    maps = blocks.repeat_interleave(8, -1).repeat_interleave(8, -2)  # smooth enough to resample
    angle = torch.tensor([20.0, -35.0])
    radians = torch.deg2rad(angle)
    linear = torch.stack(
        [torch.stack([radians.cos(), -radians.sin()], -1), torch.stack([radians.sin(), radians.cos()], -1)], -2
    )
    pose = (linear, torch.tensor([[6.0, -4.0], [-3.0, 5.0]]))
    round_trip = registration.to_image(registration.to_reference(maps, pose), pose, (SIZE, SIZE))
    centre = slice(40, 88)
    assert (round_trip - maps)[..., centre, centre].abs().mean() < 0.05


def test_maps_at_another_resolution_are_warped_back_with_their_own_scale() -> None:
    registration = _fitted(_tensor([_part()]))
    pose = (torch.eye(2)[None], torch.tensor([[16.0, 0.0]]))  # 16 image pixels right
    coarse = torch.zeros(1, 1, 16, 16)
    coarse[..., 8, 4] = 1.0  # a spot in the reference frame, 1/8 of the image's resolution
    back = registration.to_image(coarse, pose, (SIZE, SIZE))
    row, col = divmod(int(back.flatten().argmax()), 16)
    assert (row, col) == (8, 6)  # moved 16 / 8 = 2 cells right


def test_an_unfitted_registration_names_what_fits_it() -> None:
    with pytest.raises(RuntimeError, match="PrototypeCallback"):
        PoseRegistration().estimate(torch.rand(1, 3, SIZE, SIZE))


@pytest.mark.parametrize("bad", [-1.0, 181.0, math.nan])
def test_a_search_outside_0_180_degrees_names_the_option(bad: float) -> None:
    with pytest.raises(ValueError, match="prototypes.pose_search"):
        PoseRegistration(bad)


def test_prnet_registers_before_the_residuals_and_returns_maps_in_the_image_frame() -> None:
    torch.manual_seed(0)
    net = PRNet(encoder_weights=None, msa_depth=1, pose_search=180.0).eval()
    part = _part()
    net.registration.fit(net.registration.signals(_tensor([part])))
    reference_features = net.prototype_features(_tensor([part]))
    net.set_prototypes(build_prototypes(reference_features, ratio=1.0))
    moved = _tensor([apply_pose(part, None, POSES[0])[0]])
    for moved_maps, maps in zip(net.prototype_features(moved), reference_features, strict=True):
        # the moved part's features are taken in the reference pose: close to the part's own
        assert (moved_maps - maps).abs().mean() < 0.5 * maps.abs().mean()
    with torch.no_grad():
        logits, distance = net.forward_with_distance(moved)
    assert logits.shape == (1, 1, SIZE, SIZE) and distance is None


def test_registration_is_only_offered_with_the_prototype_residual() -> None:
    with pytest.raises(ValueError, match="use_mp=true"):
        PRNet(encoder_weights=None, use_mp=False, pose_search=30.0)


def test_the_template_travels_in_the_state_dict() -> None:
    registration = _fitted(_tensor([_part()]))
    restored = PoseRegistration()
    restored.load_state_dict(registration.state_dict())
    assert restored.is_fitted and torch.equal(restored.template, registration.template)
