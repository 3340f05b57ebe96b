import numpy as np
import pytest
from generation_helpers import disc_mask

from prn.data.generation.target_area import random_target_area


@pytest.mark.parametrize("shape_name", ["circle", "rectangle", "polygon"])
def test_area_is_non_empty_and_inside_allowed(shape_name):
    allowed = disc_mask()
    for seed in range(30):
        area = random_target_area((64, 64), np.random.default_rng(seed), allowed, shapes=(shape_name,))
        assert area.dtype == bool and area.any()
        assert not (area & ~allowed).any()
        assert area.sum() < allowed.sum()


def test_whole_image_when_nothing_is_excluded():
    rng = np.random.default_rng(0)
    areas = [random_target_area((48, 80), rng, None) for _ in range(30)]
    assert all(a.shape == (48, 80) and a.any() for a in areas)
    assert np.logical_or.reduce(areas)[:, :10].any()


def test_same_seed_same_area():
    first = random_target_area((64, 64), np.random.default_rng(5), disc_mask())
    assert np.array_equal(first, random_target_area((64, 64), np.random.default_rng(5), disc_mask()))


def test_scale_controls_size():
    small = np.mean(
        [random_target_area((128, 128), np.random.default_rng(s), None, scale=(0.1, 0.1)).sum() for s in range(20)]
    )
    large = np.mean(
        [random_target_area((128, 128), np.random.default_rng(s), None, scale=(0.6, 0.6)).sum() for s in range(20)]
    )
    assert large > 10 * small


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"allowed": np.zeros((64, 64), bool)}, "empty"),
        ({"allowed": np.ones((32, 32), bool)}, "shape"),
        ({"shapes": ("hexagon",)}, "shapes"),
        ({"scale": (0.5, 0.1)}, "scale"),
    ],
)
def test_bad_input_is_rejected(kwargs, message):
    with pytest.raises(ValueError, match=message):
        random_target_area((64, 64), np.random.default_rng(0), **kwargs)
