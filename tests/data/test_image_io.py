from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from prn.data.errors import DatasetError
from prn.data.image_io import (
    aspect_image_size,
    decode_images,
    decode_masks,
    image_size_of,
    load_image,
    load_mask,
    parse_image_size,
)


@pytest.mark.parametrize(("value", "expected"), [(256, (256, 256)), ([128, 96], (128, 96)), ((64, 32), (64, 32))])
def test_parse_image_size_accepts_int_and_pair(value, expected):
    assert parse_image_size(value) == expected


@pytest.mark.parametrize("value", [0, -3, True, "256", [1, 2, 3], [64.0, 64], None])
def test_parse_image_size_rejects_bad_values_naming_the_option(value):
    with pytest.raises(DatasetError, match=r"dataset\.image_size"):
        parse_image_size(value)


@pytest.mark.parametrize(
    ("native", "side", "expected"),
    [
        ((256, 1024), 256, (128, 512)),  # a 4:1 strip: the same pixel budget, half the resolution both ways
        ((1024, 256), 256, (512, 128)),
        ((300, 300), 256, (256, 256)),  # square parts are untouched
        ((230, 630), 256, (128, 384)),  # KolektorSDD2's shape: 3:1, three quarters of the budget
        ((100, 150), 256, (256, 384)),
        ((256, 1024), 384, (256, 1024)),
    ],
)
def test_aspect_image_size_keeps_the_shape_near_the_pixel_budget(native, side, expected):
    assert aspect_image_size([native], side) == expected


def test_aspect_image_size_follows_the_median_image():
    assert aspect_image_size([(256, 1024)] * 3 + [(256, 256)] * 2, 256) == (128, 512)


def test_aspect_image_size_without_images_names_keep_aspect():
    with pytest.raises(DatasetError, match="keep_aspect"):
        aspect_image_size([], 256)


def _save(path: Path, image: Image.Image) -> Path:
    image.save(path)
    return path


def test_gray_image_becomes_rgb_with_equal_channels(tmp_path):
    pixels = np.arange(64 * 48, dtype=np.uint32).reshape(48, 64) % 256
    path = _save(tmp_path / "gray.png", Image.fromarray(pixels.astype(np.uint8), mode="L"))
    image = load_image(path, (48, 64))
    assert image.dtype == np.uint8 and image.shape == (48, 64, 3)
    assert np.array_equal(image[..., 0], pixels) and np.array_equal(image[..., 0], image[..., 2])


def test_rgba_image_drops_alpha(tmp_path):
    rgba = np.zeros((8, 8, 4), dtype=np.uint8)
    rgba[..., 0], rgba[..., 3] = 200, 255
    image = load_image(_save(tmp_path / "rgba.png", Image.fromarray(rgba, mode="RGBA")), (8, 8))
    assert image.shape == (8, 8, 3) and (image[..., 0] == 200).all() and (image[..., 1] == 0).all()


def test_sixteen_bit_gray_is_rescaled_not_clipped(tmp_path):
    values = np.array([[0, 32768], [65535, 1000]], dtype=np.uint16)
    path = _save(tmp_path / "deep.png", Image.fromarray(values))
    assert Image.open(path).mode.startswith("I")
    image = load_image(path, (2, 2))
    assert image[0, 0, 0] == 0 and image[1, 0, 0] == 255 and 126 <= image[0, 1, 0] <= 129 and image[1, 1, 0] == 4


def test_downscaling_is_antialiased(tmp_path):
    checkerboard = ((np.indices((64, 64)).sum(axis=0) % 2) * 255).astype(np.uint8)
    image = load_image(_save(tmp_path / "checker.png", Image.fromarray(checkerboard)), (16, 16))
    assert image.shape == (16, 16, 3)
    assert np.abs(image.astype(int) - 128).max() <= 2


def test_mask_is_binarised_before_nearest_resize(tmp_path):
    values = np.zeros((8, 8), dtype=np.uint8)
    values[:4, :4] = 1  # faint but non-zero still counts as anomalous
    mask = load_mask(_save(tmp_path / "m.png", Image.fromarray(values)), (16, 16))
    assert mask.dtype == bool and mask.shape == (16, 16)
    assert mask[:8, :8].all() and not mask[8:, :].any() and not mask[:, 8:].any()


def test_image_size_of_reads_height_then_width(tmp_path):
    path = _save(tmp_path / "wide.png", Image.new("RGB", (30, 20)))
    assert image_size_of(path) == (20, 30)


def test_truncated_png_fails_at_decode_naming_the_file(tmp_path):
    path = _save(
        tmp_path / "whole.png", Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8))
    )
    data = path.read_bytes()
    broken = tmp_path / "broken.png"
    broken.write_bytes(data[: len(data) // 2])
    assert image_size_of(broken) == (64, 64)  # the header alone is still fine
    with pytest.raises(DatasetError, match="broken.png"):
        load_image(broken, (32, 32))


@pytest.mark.parametrize("loader", [load_image, load_mask])
def test_garbage_and_missing_files_name_the_file(tmp_path, loader):
    garbage = tmp_path / "garbage.png"
    garbage.write_bytes(b"not an image at all")
    with pytest.raises(DatasetError, match="garbage.png"):
        loader(garbage, (8, 8))
    with pytest.raises(DatasetError, match="absent.png"):
        loader(tmp_path / "absent.png", (8, 8))


def test_decode_images_keeps_the_order_and_resizes(tmp_path):
    paths = [
        _save(tmp_path / f"{i}.png", Image.fromarray(np.full((10, 12, 3), 20 * i, dtype=np.uint8))) for i in range(5)
    ]
    images = decode_images(paths, (4, 6))
    assert [image.shape for image in images] == [(4, 6, 3)] * 5
    assert [int(image[0, 0, 0]) for image in images] == [0, 20, 40, 60, 80]
    assert decode_images([], (4, 6)) == []


def test_decode_masks_keeps_none_and_binarises(tmp_path):
    pixels = np.zeros((8, 8), dtype=np.uint8)
    pixels[:4] = 255
    path = _save(tmp_path / "mask.png", Image.fromarray(pixels))
    masks = decode_masks([None, path, None], (8, 8))
    assert masks[0] is None and masks[2] is None
    assert masks[1].dtype == bool and masks[1][:4].all() and not masks[1][4:].any()


def test_decode_images_names_the_broken_file(tmp_path):
    good = _save(tmp_path / "good.png", Image.fromarray(np.zeros((4, 4, 3), dtype=np.uint8)))
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    with pytest.raises(DatasetError, match="broken.png"):
        decode_images([good, broken], (4, 4))
