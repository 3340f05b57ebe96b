"""What keeping every decision costs: SQLite (WAL, one transaction per batch) against JSONL with an fsync per line.

    python benchmarks/decision_log.py --decisions 2000 --batch 8

Both write the same rows durably before returning (SQLite ``synchronous=FULL`` syncs at each commit;
JSONL flushes and fsyncs after each line, since an answer may go out only after its line is on disk).
Prints microseconds per decision for each, on this machine's disk.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

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


def sqlite_seconds(folder: Path, decisions: int, batch: int, synchronous: str) -> float:
    log = DecisionLog(folder / f"log_{synchronous}.sqlite", synchronous=synchronous)
    start = time.perf_counter()
    for _ in range(decisions // batch):
        log.append([ROW] * batch)
    seconds = time.perf_counter() - start
    log.close()
    return seconds


def jsonl_seconds(folder: Path, decisions: int) -> float:
    line = json.dumps(asdict(ROW)) + "\n"
    start = time.perf_counter()
    with open(folder / "log.jsonl", "a") as handle:
        for _ in range(decisions):
            handle.write(line)
            handle.flush()
            os.fsync(handle.fileno())
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--decisions", type=int, default=2000)
    parser.add_argument("--batch", type=int, default=8)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=".") as folder:
        rows = {
            f"SQLite WAL, synchronous=FULL, {args.batch} per transaction": sqlite_seconds(
                Path(folder), args.decisions, args.batch, "FULL"
            ),
            "SQLite WAL, synchronous=FULL, 1 per transaction": sqlite_seconds(Path(folder), args.decisions, 1, "FULL"),
            "JSONL, flush + fsync per line": jsonl_seconds(Path(folder), args.decisions),
        }
    for name, seconds in rows.items():
        print(f"{name}: {1e6 * seconds / args.decisions:.0f} µs per decision")


if __name__ == "__main__":
    main()
