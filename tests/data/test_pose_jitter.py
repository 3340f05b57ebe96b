"""Pose jitter (``prn.data.pose_jitter``): one seeded similarity transform per file, shared by image and mask."""

import json
import math
from pathlib import Path

import numpy as np
import pytest

from prn.data.errors import DatasetError
from prn.data.mvtec import MVTecDataModule
from prn.data.pose_jitter import PoseParams, apply_pose, checked_pose_jitter, jitter_params, pose_matrix

JITTER = {"shift": 0.1, "rotation": 30}


def _square(size: int = 96) -> tuple[np.ndarray, np.ndarray]:
    """A dark image with a bright off-centre square, and the square's mask."""
    image = np.full((size, size, 3), 30, dtype=np.uint8)
    mask = np.zeros((size, size), dtype=bool)
    mask[30:60, 34:66] = True
    image[mask] = 240
    return image, mask


def _centroid(mask: np.ndarray) -> np.ndarray:
    rows, cols = np.nonzero(mask)
    return np.array([cols.mean(), rows.mean()])


def test_image_and_mask_get_the_same_transform():
    image, mask = _square()
    params = PoseParams(angle=25.0, dx=0.08, dy=-0.06)
    moved_image, moved_mask = apply_pose(image, mask, params)
    bright = moved_image.mean(axis=2) > 135
    assert (bright & moved_mask).sum() / (bright | moved_mask).sum() > 0.9  # mask pixels are the bright ones
    assert moved_image[moved_mask].mean() > 200 and moved_image[~moved_mask].mean() < 45
    assert not np.array_equal(moved_mask, mask)
    # rotation about the image centre, then the shift: the square's centre goes where the matrix sends it
    expected = pose_matrix(mask.shape, params) @ np.append(_centroid(mask), 1.0)
    assert np.abs(_centroid(moved_mask) - expected).max() < 1.0
    assert np.abs(expected - _centroid(mask) - [0.08 * 96, -0.06 * 96]).max() > 1.0  # the rotation moved it too


def test_masks_stay_binary_and_images_keep_their_type():
    image, mask = _square()
    moved_image, moved_mask = apply_pose(image, mask, PoseParams(angle=-17.3, dx=0.031, dy=0.047))
    assert moved_mask.dtype == bool and moved_mask.shape == mask.shape
    assert moved_image.dtype == np.uint8 and moved_image.shape == image.shape
    assert 0.85 < moved_mask.sum() / mask.sum() < 1.15  # a rigid motion keeps the area
    _, none = apply_pose(image, None, PoseParams(angle=10.0))
    assert none is None


def test_border_replicates_the_edge_so_no_black_wedges_appear():
    uniform = np.full((64, 80, 3), (200, 120, 40), dtype=np.uint8)
    moved, _ = apply_pose(uniform, None, PoseParams(angle=30.0, dx=0.1, dy=-0.1))
    assert (moved == uniform).all()


def test_params_are_deterministic_in_key_and_seed_and_within_bounds():
    key = "bottle/test/broken_large/000.png"
    assert jitter_params(key, 0, 0.1, 30) == jitter_params(key, 0, 0.1, 30)
    assert jitter_params(key, 0, 0.1, 30) != jitter_params("bottle/test/broken_large/001.png", 0, 0.1, 30)
    assert jitter_params(key, 0, 0.1, 30) != jitter_params(key, 1, 0.1, 30)
    draws = [jitter_params(f"a/{index:03d}.png", 7, 0.1, 30) for index in range(200)]
    angles = np.array([p.angle for p in draws])
    shifts = np.array([(p.dx, p.dy) for p in draws])
    assert np.abs(angles).max() <= 30 and np.abs(shifts).max() <= 0.1
    assert angles.min() < -20 and angles.max() > 20 and shifts.min() < -0.07 and shifts.max() > 0.07
    image, mask = _square()
    first = apply_pose(image, mask, jitter_params(key, 0, 0.1, 30))
    second = apply_pose(image, mask, jitter_params(key, 0, 0.1, 30))
    other = apply_pose(image, mask, jitter_params("bottle/test/good/000.png", 0, 0.1, 30))
    assert np.array_equal(first[0], second[0]) and np.array_equal(first[1], second[1])
    assert not np.array_equal(first[0], other[0]) and not np.array_equal(first[1], other[1])


def test_zero_jitter_is_the_identity():
    params = jitter_params("x/000.png", 3, 0.0, 0.0)
    assert params.is_identity
    image, mask = _square()
    same_image, same_mask = apply_pose(image, mask, params)
    assert np.array_equal(same_image, image) and np.array_equal(same_mask, mask)
    assert same_image is not image and same_mask is not mask
    assert checked_pose_jitter({}) == {"shift": 0.0, "rotation": 0.0}
    assert checked_pose_jitter(None) is None


@pytest.mark.parametrize(
    ("value", "pattern"),
    [
        ({"shift": -0.1, "rotation": 30}, r"dataset\.pose_jitter\.shift=-0\.1 must be in \[0, 0\.5\]"),
        ({"shift": 0.6}, r"dataset\.pose_jitter\.shift=0\.6 must be in \[0, 0\.5\]"),
        ({"shift": "0.1"}, r"dataset\.pose_jitter\.shift='0\.1' must be a number"),
        ({"rotation": 200}, r"dataset\.pose_jitter\.rotation=200 must be in \[0, 180\] \(degrees"),
        ({"rotation": math.nan}, r"dataset\.pose_jitter\.rotation=nan"),
        ({"rotation": True}, r"dataset\.pose_jitter\.rotation=True must be a number"),
        (
            {"shift": 0.1, "scale": 1.2},
            r"dataset\.pose_jitter has unknown keys \['scale'\]; use only shift and rotation",
        ),
        ([0.1, 30], r"dataset\.pose_jitter=\[0\.1, 30\] must be null or a mapping like \{shift: 0\.1, rotation: 30\}"),
    ],
)
def test_bad_options_raise_naming_the_option(mvtec_root, value, pattern):
    with pytest.raises(DatasetError, match=pattern):
        checked_pose_jitter(value)
    with pytest.raises(DatasetError, match=pattern):
        MVTecDataModule(mvtec_root, "widget", pose_jitter=value)


def _module(root: Path, **options) -> MVTecDataModule:
    defaults = {"image_size": 64, "num_seen_anomalies": 3, "batch_size": 4}
    return MVTecDataModule(root, "widget", **{**defaults, **options})


def _arrays(module: MVTecDataModule) -> dict[str, list]:
    module.setup()
    test_set = module.test_dataloader().dataset
    return {
        "normals": [normal.image for normal in module.pool.normals],
        "seen_images": module.pool.seen_images,
        "seen_masks": module.pool.seen_masks,
        "test_images": test_set.images,
        "test_masks": test_set.masks,
    }


def _same(first: dict[str, list], second: dict[str, list]) -> bool:
    return all(
        len(first[name]) == len(second[name])
        and all((a is None and b is None) or np.array_equal(a, b) for a, b in zip(first[name], second[name]))
        for name in first
    )


def test_datamodule_jitters_every_image_and_its_mask_alike(make_mvtec, tmp_path):
    root = make_mvtec(size=64)
    seen_by_foreground = []

    def everything(images, category):
        seen_by_foreground.extend(images)
        return [np.ones(image.shape[:2], dtype=bool) for image in images]

    plain = _module(root)
    jittered = _module(root, pose_jitter=JITTER, foreground=everything, output_dir=tmp_path / "run")
    before, after = _arrays(plain), _arrays(jittered)
    split = jittered.split

    def expected(record, image, mask):
        key = record.image_path.relative_to(root).as_posix()
        return apply_pose(image, mask, jitter_params(key, 0, 0.1, 30))

    for records, images, masks in [
        (split.train_normal, "normals", None),
        (split.seen, "seen_images", "seen_masks"),
        (split.test, "test_images", "test_masks"),
    ]:
        plain_masks = [None] * len(records) if masks is None else before[masks]
        for index, record in enumerate(records):
            want_image, want_mask = expected(record, before[images][index], plain_masks[index])
            assert np.array_equal(after[images][index], want_image), record.image_path
            assert not np.array_equal(after[images][index], before[images][index]), record.image_path
            if masks is not None:
                got = after[masks][index]
                assert (got is None) == (record.mask_path is None)
                if got is not None:
                    assert got.dtype == bool and np.array_equal(got, want_mask) and got.any()
                    assert not np.array_equal(got, plain_masks[index])
    # target areas are estimated on the perturbed normals, as a user with moving parts would have them
    assert len(seen_by_foreground) == 12 and all(
        np.array_equal(a, b) for a, b in zip(seen_by_foreground, after["normals"])
    )
    assert json.loads((tmp_path / "run" / "split.json").read_text())["pose_jitter"] == {"shift": 0.1, "rotation": 30.0}
    assert plain.split_summary()["pose_jitter"] is None


def test_same_seed_gives_identical_arrays_and_another_seed_other_ones(make_mvtec):
    root = make_mvtec(size=64)
    first, second = _arrays(_module(root, pose_jitter=JITTER)), _arrays(_module(root, pose_jitter=JITTER))
    assert _same(first, second)
    other = _arrays(_module(root, pose_jitter=JITTER, seed=1))
    assert not np.array_equal(first["normals"][0], other["normals"][0])
