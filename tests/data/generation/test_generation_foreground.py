import logging

import numpy as np
import pytest
from generation_helpers import disc_image, disc_mask
from PIL import Image

from prn.data.generation.foreground import ForegroundEstimator, otsu_threshold


def _disc_images(count: int = 4) -> tuple[list[np.ndarray], list[np.ndarray]]:
    rng = np.random.default_rng(0)
    truths = [disc_mask(centre=(28 + 3 * i, 34 - 2 * i), radius=16 + i) for i in range(count)]
    return [disc_image(rng, truth) for truth in truths], truths


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / (a | b).sum())


def test_otsu_separates_two_modes():
    values = np.concatenate([np.full(100, 10.0), np.full(100, 200.0)])
    assert 10.0 < otsu_threshold(values) <= 200.0


def test_estimator_recovers_discs():
    images, truths = _disc_images()
    masks = ForegroundEstimator(method="colour")(images, "disc")
    assert len(masks) == len(images)
    for mask, truth in zip(masks, truths):
        assert mask.dtype == bool and mask.shape == truth.shape
        assert _iou(mask, truth) > 0.9


def test_estimator_fills_holes_and_drops_specks():
    images, truths = _disc_images(1)
    image = images[0].copy()
    image[30:34, 30:34] = 225  # background-coloured hole inside the object
    image[2:4, 2:4] = 0  # dark speck on the background
    mask = ForegroundEstimator(method="colour")([image], "disc")[0]
    assert mask[31, 31] and not mask[2, 2]


def test_second_call_hits_the_cache(tmp_path):
    images, _ = _disc_images()
    estimator = ForegroundEstimator(method="colour", cache_dir=str(tmp_path))
    first = estimator(images, "disc")
    assert estimator.last_source == "estimated"
    assert estimator.cache_path(images, "disc").is_file()
    second = ForegroundEstimator(method="colour", cache_dir=str(tmp_path))
    again = second(images, "disc")
    assert second.last_source == "cache"
    assert all(np.array_equal(a, b) for a, b in zip(first, again))


def test_cache_key_changes_with_the_images(tmp_path):
    images, _ = _disc_images()
    estimator = ForegroundEstimator(method="colour", cache_dir=str(tmp_path))
    changed = [images[0] ^ 1] + images[1:]
    assert estimator.cache_path(images, "disc") != estimator.cache_path(changed, "disc")
    assert estimator.cache_path(images, "disc") != estimator.cache_path(images[:-1], "disc")


def test_uniform_images_fall_back_to_whole_image_with_one_warning_for_all(caplog):
    plain = [np.full((32, 32, 3), 128, dtype=np.uint8) for _ in range(3)]
    with caplog.at_level(logging.WARNING):
        masks = ForegroundEstimator(method="colour")(plain, "blank")
    assert all(mask.all() for mask in masks)
    fallbacks = [record.getMessage() for record in caplog.records if "whole image" in record.getMessage()]
    assert len(fallbacks) == 1 and "3 of 3 images" in fallbacks[0] and "'blank'" in fallbacks[0]


def _write_masks(folder, masks):
    folder.mkdir(parents=True, exist_ok=True)
    for index, mask in enumerate(masks):
        Image.fromarray(mask.astype(np.uint8) * 255).save(folder / f"{index:03d}.png")


def test_user_masks_replace_estimation_in_file_order(tmp_path):
    images, _ = _disc_images(3)
    users = [np.zeros((64, 64), bool) for _ in range(3)]
    for index, mask in enumerate(users):
        mask[index * 10 : index * 10 + 5, :] = True
    _write_masks(tmp_path / "disc", users)
    estimator = ForegroundEstimator(mask_dir=str(tmp_path))
    loaded = estimator(images, "disc")
    assert estimator.last_source == "mask_dir"
    assert all(np.array_equal(a, b) for a, b in zip(loaded, users))


def test_user_masks_of_another_resolution_are_resized(tmp_path):
    images, truths = _disc_images(2)
    _write_masks(tmp_path, [np.kron(t, np.ones((2, 2), bool)) for t in truths])
    loaded = ForegroundEstimator(mask_dir=str(tmp_path))(images, "disc")
    assert all(np.array_equal(a, b) for a, b in zip(loaded, truths))


def test_user_mask_count_mismatch_is_reported(tmp_path):
    images, truths = _disc_images(3)
    _write_masks(tmp_path, truths[:2])
    with pytest.raises(ValueError, match="2 mask files for 3 training images"):
        ForegroundEstimator(mask_dir=str(tmp_path))(images, "disc")


def test_user_mask_aspect_mismatch_is_reported(tmp_path):
    images, _ = _disc_images(1)
    _write_masks(tmp_path, [np.ones((64, 32), bool)])
    with pytest.raises(ValueError, match="aspect ratio"):
        ForegroundEstimator(mask_dir=str(tmp_path))(images, "disc")


def test_missing_mask_dir_is_reported(tmp_path):
    images, _ = _disc_images(1)
    with pytest.raises(FileNotFoundError, match="mask_dir"):
        ForegroundEstimator(mask_dir=str(tmp_path / "nope"))(images, "disc")
