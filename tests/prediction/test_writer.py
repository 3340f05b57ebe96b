"""The writer: map files at native size, the input tree mirrored, the threshold applied, batches written as they come."""

from pathlib import Path

import numpy as np
from PIL import Image

from prn.deploy.images import native_size_map
from prn.prediction.writer import PredictionWriter, save_map


def _image(path: Path, size=(40, 60), value=128) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((*size, 3), value, dtype=np.uint8)).save(path)
    return path


def test_saved_map_has_native_size_and_keeps_values_to_16_bits(tmp_path):
    anomaly_map = np.tile(np.linspace(0, 1, 32, dtype=np.float32), (32, 1))
    save_map(native_size_map(anomaly_map, (64, 96)), tmp_path / "map.png")
    saved = np.asarray(Image.open(tmp_path / "map.png"))
    assert saved.shape == (64, 96) and saved.dtype == np.uint16
    assert saved.min() == 0 and saved.max() == 65535


def test_writer_mirrors_the_input_tree_and_applies_the_threshold(tmp_path):
    a = _image(tmp_path / "in" / "a" / "000.png")
    b = _image(tmp_path / "in" / "b" / "000.png")
    writer = PredictionWriter(tmp_path / "out", threshold=0.5, save_maps=True)
    writer.on_predict_start(None, None)
    writer.write(a, Path("a/000.png"), np.zeros((16, 16), np.float32), 0.2)
    writer.write(b, Path("b/000.png"), np.ones((16, 16), np.float32), 0.9)
    writer.on_predict_end(None, None)
    rows = (tmp_path / "out" / "scores.csv").read_text().splitlines()
    assert rows[0] == "path,score,normalized_score,decision,anomalous,map,overlay,mask"
    assert rows[1].split(",")[1:5] == ["0.200000", "", "OK", "0"] and rows[2].split(",")[1:5] == [
        "0.900000",
        "",
        "NG",
        "1",
    ]
    for name in ("a/000.png", "b/000.png"):
        assert Image.open(tmp_path / "out" / "maps" / name).size == (60, 40)
        assert Image.open(tmp_path / "out" / "overlays" / name).size == (60, 40)
    red = np.asarray(Image.open(tmp_path / "out" / "overlays" / "b" / "000.png"))[0, 0]
    assert red[0] > red[2], "a map of ones is drawn red over the image"
