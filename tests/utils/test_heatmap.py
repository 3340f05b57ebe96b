"""The one heat-map renderer: absolute colours, calm where the map is low."""

import numpy as np

from prn.utils.heatmap import heat_colours, overlay


def test_heat_colours_run_blue_green_red_on_an_absolute_scale():
    colours = heat_colours(np.array([0.0, 0.5, 1.0, 2.0]))
    np.testing.assert_allclose(colours, [[0, 0, 255], [0, 255, 0], [255, 0, 0], [255, 0, 0]])


def test_overlay_tints_only_where_the_map_is_high_and_never_stretches_a_calm_map():
    image = np.full((8, 8, 3), 128, dtype=np.uint8)
    anomaly_map = np.zeros((8, 8), dtype=np.float32)
    anomaly_map[2, 3] = 1.0
    picture = overlay(image, anomaly_map)
    assert picture.dtype == np.uint8 and picture.shape == (8, 8, 3)
    assert picture[2, 3, 0] > 200 and picture[2, 3, 2] < 100, "a score of 1 is drawn red"
    assert (picture[0, 0] == 128).all(), "a score of 0 leaves the image as it is"
    calm = overlay(image, np.full((8, 8), 0.02, dtype=np.float32))
    assert np.abs(calm.astype(int) - 128).max() < 25, "a uniformly low map is not stretched to full colour"
