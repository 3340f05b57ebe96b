"""Atomic file writes: a reader (or a crash) never sees half a file.

The text goes to a temp file in the target's own folder (so the rename stays on one
filesystem), is flushed and fsynced, then ``os.replace``-d over the target.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any


def write_text_atomically(path: Path | str, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` through a fsynced temp file and a rename; creates the folder."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp_name, path)
    except BaseException:
        Path(temp_name).unlink(missing_ok=True)
        raise


def write_json_atomically(path: Path | str, payload: Any, *, default: Callable[[Any], Any] | None = None) -> None:
    """``payload`` as indented JSON plus a final newline, written atomically.

    ``default`` is passed to :func:`json.dumps` (e.g. ``str`` for values JSON cannot hold);
    without it such values raise before anything is written.
    """
    write_text_atomically(path, json.dumps(payload, indent=2, default=default) + "\n")
