"""Atomic writers (``prn.utils.io``): whole files or nothing, no temp files left behind."""

import json
from pathlib import Path

import pytest

from prn.utils.io import write_json_atomically, write_text_atomically


def test_json_is_indented_with_a_final_newline_and_creates_the_folder(tmp_path):
    path = tmp_path / "run" / "split.json"
    payload = {"counts": {"test": 7}, "files": ["a.png", "b.png"], "ratio": 0.5}
    write_json_atomically(path, payload)
    assert path.read_text(encoding="utf-8") == json.dumps(payload, indent=2) + "\n"
    assert json.loads(path.read_text()) == payload
    assert [p.name for p in path.parent.iterdir()] == ["split.json"]


def test_json_default_stringifies_what_json_cannot_hold(tmp_path):
    path = tmp_path / "results.json"
    write_json_atomically(path, {"checkpoint": Path("/x/last.ckpt")}, default=str)
    assert json.loads(path.read_text()) == {"checkpoint": "/x/last.ckpt"}


def test_failed_json_write_keeps_the_old_file_and_leaves_no_temp(tmp_path):
    path = tmp_path / "split.json"
    write_json_atomically(path, {"old": 1})
    with pytest.raises(TypeError):
        write_json_atomically(path, {"new": object()})
    assert json.loads(path.read_text()) == {"old": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["split.json"]


def test_text_replaces_an_existing_file(tmp_path):
    path = tmp_path / "results.md"
    write_text_atomically(path, "old\n")
    write_text_atomically(path, "| dataset | category |\n|---|---|\n")
    assert path.read_text(encoding="utf-8") == "| dataset | category |\n|---|---|\n"
    assert [p.name for p in tmp_path.iterdir()] == ["results.md"]


def test_text_failing_mid_write_leaves_the_target_untouched_and_no_temp(tmp_path, monkeypatch):
    path = tmp_path / "results.md"
    write_text_atomically(path, "old\n")

    def failing_replace(source, target):
        raise OSError("disk full")

    monkeypatch.setattr("prn.utils.io.os.replace", failing_replace)
    with pytest.raises(OSError, match="disk full"):
        write_text_atomically(path, "new\n")
    assert path.read_text() == "old\n" and [p.name for p in tmp_path.iterdir()] == ["results.md"]
