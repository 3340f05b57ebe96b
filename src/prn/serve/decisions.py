"""The decision log: every answered request, kept append-only in SQLite (WAL) before its answer is sent.

One row per decision: when, which part (the client's ``part_id``), the image's SHA-256 and size,
score, normalised score, OK/NG, the threshold used, defect pixels, the model's SHA-256 and,
with ``keep_ng``, where the NG image's copy lies. Rows are written a batch per transaction and
committed before any answer of that batch leaves the service, so an acknowledged decision is
on disk even if the process is killed the next instant (WAL: a committed transaction survives a
process kill; ``synchronous=FULL`` also a power cut). Triggers refuse UPDATE and DELETE.

Why SQLite and not JSONL: one commit (and fsync) per batch instead of one per line, the part's
history is one indexed query (``GET /v1/decisions?part_id=4711``), and a torn last line cannot
happen; ``sqlite3`` ships with Python. Read it anywhere with ``sqlite3 decisions.sqlite``.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

SCHEMA = """
CREATE TABLE IF NOT EXISTS decisions (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    time TEXT NOT NULL,
    part_id TEXT,
    image_sha256 TEXT NOT NULL,
    image_width INTEGER NOT NULL,
    image_height INTEGER NOT NULL,
    score REAL NOT NULL,
    normalized_score REAL,
    decision TEXT CHECK (decision IN ('OK', 'NG') OR decision IS NULL),
    threshold REAL,
    defect_pixels INTEGER,
    model_sha256 TEXT NOT NULL,
    image_copy TEXT
);
CREATE INDEX IF NOT EXISTS decisions_part ON decisions (part_id);
CREATE TRIGGER IF NOT EXISTS decisions_no_update BEFORE UPDATE ON decisions
BEGIN SELECT RAISE(ABORT, 'the decision log is append-only'); END;
CREATE TRIGGER IF NOT EXISTS decisions_no_delete BEFORE DELETE ON decisions
BEGIN SELECT RAISE(ABORT, 'the decision log is append-only'); END;
"""


@dataclass(frozen=True)
class Decision:
    """One answered request as the log keeps it (``id`` is given by the log)."""

    time: str
    part_id: str | None
    image_sha256: str
    image_width: int
    image_height: int
    score: float
    normalized_score: float | None
    decision: str | None
    threshold: float | None
    defect_pixels: int | None
    model_sha256: str
    image_copy: str | None = None


COLUMNS = tuple(field.name for field in fields(Decision))


class DecisionLog:
    """An append-only SQLite log; safe to call from several threads (one connection behind a lock)."""

    def __init__(self, path: str | Path, synchronous: str = "FULL") -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._connection = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._connection.execute("PRAGMA journal_mode=WAL")
        self._connection.execute(f"PRAGMA synchronous={synchronous}")
        self._connection.executescript(SCHEMA)

    def append(self, decisions: Sequence[Decision]) -> list[int]:
        """Write ``decisions`` in one committed transaction and return their ids."""
        placeholders = ", ".join("?" for _ in COLUMNS)
        statement = f"INSERT INTO decisions ({', '.join(COLUMNS)}) VALUES ({placeholders})"
        with self._lock:
            cursor = self._connection.cursor()
            cursor.execute("BEGIN IMMEDIATE")
            try:
                ids = []
                for decision in decisions:
                    cursor.execute(statement, tuple(asdict(decision).values()))
                    ids.append(int(cursor.lastrowid))
                cursor.execute("COMMIT")
            except BaseException:
                cursor.execute("ROLLBACK")
                raise
        return ids

    def find(
        self, part_id: str | None = None, decision_id: int | None = None, limit: int = 100
    ) -> list[dict[str, Any]]:
        """The newest rows first, of one part or one id when given."""
        clauses, values = [], []
        if part_id is not None:
            clauses.append("part_id = ?")
            values.append(part_id)
        if decision_id is not None:
            clauses.append("id = ?")
            values.append(decision_id)
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        query = f"SELECT id, {', '.join(COLUMNS)} FROM decisions {where} ORDER BY id DESC LIMIT ?"
        with self._lock:
            cursor = self._connection.execute(query, (*values, limit))
            names = [column[0] for column in cursor.description]
            return [dict(zip(names, row)) for row in cursor.fetchall()]

    def count(self) -> int:
        with self._lock:
            return int(self._connection.execute("SELECT COUNT(*) FROM decisions").fetchone()[0])

    def close(self) -> None:
        with self._lock:
            self._connection.close()
