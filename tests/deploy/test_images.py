"""The inferencer prepares files and arrays exactly as training prepares its images."""

import numpy as np
import pytest
from PIL import Image

from prn.data.image_io import load_image
from prn.data.training import image_tensor
from prn.deploy.images import expand_inputs, native_size_map, prepare

SIZE = (128, 256)


def _save(path, pixels, mode=None):
    image = Image.fromarray(pixels) if mode is None else Image.fromarray(pixels).convert(mode)
    image.save(path)
    return path


def _noise(shape, seed=0, dtype=np.uint8, high=256):
    return np.random.default_rng(seed).integers(0, high, shape).astype(dtype)


@pytest.mark.parametrize("mode", ["RGB", "L", "RGBA", "P", "I;16"])
def test_files_of_every_mode_are_prepared_bit_for_bit_as_the_training_loader_prepares_them(tmp_path, mode):
    pixels = _noise((90, 150), high=65536, dtype=np.uint16) if mode == "I;16" else _noise((90, 150, 3))
    path = _save(tmp_path / "part.png", pixels, None if mode == "I;16" else mode)
    prepared = prepare(path, SIZE, 0)
    expected = image_tensor(load_image(path, SIZE)).numpy()
    assert prepared.pixels.dtype == np.float32 and prepared.pixels.shape == (3, *SIZE)
    np.testing.assert_array_equal(prepared.pixels, expected)
    assert prepared.native_size == (90, 150) and prepared.source == str(path)


@pytest.mark.parametrize("kind", ["rgb", "gray", "gray_hw1", "rgba", "float", "uint16_gray", "pil"])
def test_arrays_and_pil_images_give_the_same_input_as_the_same_pixels_in_a_file(tmp_path, kind):
    rgb, gray = _noise((70, 110, 3)), _noise((70, 110))
    rgba = np.dstack([rgb, _noise((70, 110), seed=1)])
    deep = _noise((70, 110), high=65536, dtype=np.uint16)
    array, file_pixels = {
        "rgb": (rgb, rgb),
        "gray": (gray, gray),
        "gray_hw1": (gray[..., None], gray),
        "rgba": (rgba, rgba),
        "float": (rgb.astype(np.float32) / 255.0, rgb),
        "uint16_gray": (deep, deep),
        "pil": (Image.fromarray(rgb), rgb),
    }[kind]
    from_file = prepare(_save(tmp_path / "same.png", file_pixels), SIZE, 0)
    from_array = prepare(array, SIZE, 3)
    np.testing.assert_array_equal(from_array.pixels, from_file.pixels)
    assert from_array.native_size == (70, 110) and from_array.source == "image[3]"


@pytest.mark.parametrize(
    ("array", "message"),
    [
        (np.full((8, 8, 3), 1.5, np.float32), r"values in \[0, 1\]"),
        (np.zeros((8, 8, 3), np.int32), "must be uint8, uint16"),
        (np.zeros((8, 8, 2), np.uint8), "1, 3 \\(RGB\\) or 4"),
    ],
)
def test_unusable_arrays_say_what_is_accepted(array, message):
    with pytest.raises(ValueError, match=message):
        prepare(array, SIZE, 0)


def test_inputs_expand_from_folders_batches_and_lists_in_order(tmp_path):
    for folder in ("parts/a", "parts/b", "empty"):
        (tmp_path / folder).mkdir(parents=True)
    a = _save(tmp_path / "parts" / "a" / "1.png", _noise((8, 8, 3)))
    b = _save(tmp_path / "parts" / "b" / "0.jpg", _noise((8, 8, 3)))
    (tmp_path / "parts" / "notes.txt").write_text("not an image")
    batch = _noise((2, 8, 8, 3))
    items = list(expand_inputs([tmp_path / "parts", batch, str(a)]))
    assert len(items) == 5 and items[:2] == [a, b] and items[4] == a
    np.testing.assert_array_equal(items[3], batch[1])
    with pytest.raises(ValueError, match="holds no image files"):
        list(expand_inputs(tmp_path / "empty"))
    with pytest.raises(ValueError, match=r"shape \(1, 1, 8, 8, 3\)"):
        list(expand_inputs(np.zeros((1, 1, 8, 8, 3), np.uint8)))


def test_maps_return_to_the_native_size_and_same_size_maps_stay_as_they_are():
    anomaly_map = np.tile(np.linspace(0, 1, 64, dtype=np.float32), (32, 1))
    native = native_size_map(anomaly_map, (90, 150))
    assert native.shape == (90, 150) and native.dtype == np.float32
    assert native[:, 0].max() < 0.02 and native[:, -1].min() > 0.98
    np.testing.assert_array_equal(native_size_map(anomaly_map, (32, 64)), anomaly_map)
