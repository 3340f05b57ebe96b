"""The decision log keeps every row, in order, across reopening, and refuses to change or lose one."""

from __future__ import annotations

import sqlite3
from dataclasses import replace

import pytest

from prn.serve.decisions import Decision, DecisionLog

ROW = Decision(
    time="2026-12-05T10:00:00.000+00:00",
    part_id="4711",
    image_sha256="ab" * 32,
    image_width=640,
    image_height=480,
    score=0.42,
    normalized_score=0.61,
    decision="NG",
    threshold=0.4,
    defect_pixels=120,
    model_sha256="cd" * 32,
)


def test_rows_come_back_as_written_newest_first_and_survive_reopening(tmp_path):
    log = DecisionLog(tmp_path / "log.sqlite")
    ids = log.append([ROW, replace(ROW, part_id="4712", decision="OK", score=0.1)])
    ids += log.append([replace(ROW, image_copy="ng/x.png")])
    log.close()
    reopened = DecisionLog(tmp_path / "log.sqlite")
    rows = reopened.find()
    assert [row["id"] for row in rows] == ids[::-1] == [3, 2, 1]
    assert rows[2] == {"id": 1, **ROW.__dict__}
    assert [row["id"] for row in reopened.find(part_id="4711")] == [3, 1]
    assert reopened.find(decision_id=2)[0]["decision"] == "OK"
    assert reopened.count() == 3


def test_the_log_is_write_ahead_and_append_only(tmp_path):
    log = DecisionLog(tmp_path / "log.sqlite")
    log.append([ROW])
    raw = sqlite3.connect(tmp_path / "log.sqlite")
    assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    for statement in ("UPDATE decisions SET decision = 'OK'", "DELETE FROM decisions"):
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            raw.execute(statement)
    assert log.count() == 1


def test_a_failing_row_writes_none_of_its_batch(tmp_path):
    log = DecisionLog(tmp_path / "log.sqlite")
    with pytest.raises(sqlite3.IntegrityError):
        log.append([ROW, replace(ROW, decision="MAYBE")])
    assert log.count() == 0
    assert log.append([ROW]) == [1]  # the failed batch left no row and no id behind
