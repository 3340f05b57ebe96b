"""Input collection: a file, a folder recursively, a glob; missing paths, empty matches and broken files named."""

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from prn.data.errors import DatasetError
from prn.prediction.inputs import collect_images


def _image(path: Path, size=(40, 60), value=128) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((*size, 3), value, dtype=np.uint8)).save(path)
    return path


def test_collect_images_from_a_file_a_folder_recursively_and_a_glob(tmp_path):
    a = _image(tmp_path / "parts" / "a" / "000.png")
    b = _image(tmp_path / "parts" / "b" / "000.jpg")
    (tmp_path / "parts" / "notes.txt").write_text("not an image")
    assert collect_images(a) == ([a], a.parent)
    assert collect_images(tmp_path / "parts") == ([a, b], tmp_path / "parts")
    files, root = collect_images(str(tmp_path / "parts" / "**" / "*.png"))
    assert files == [a] and root == tmp_path / "parts"


def test_collect_images_names_a_missing_path_an_empty_match_and_a_broken_file(tmp_path):
    with pytest.raises(DatasetError, match=r"input=.*nope does not exist"):
        collect_images(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="names no image files"):
        collect_images(tmp_path / "empty")
    _image(tmp_path / "mixed" / "good.png")
    (tmp_path / "mixed" / "broken.png").write_bytes(b"not a png")
    with pytest.raises(DatasetError, match=r"broken\.png"):
        collect_images(tmp_path / "mixed")
