"""The real ``prn-serve`` process: a slow client gets 408 while others are served, and SIGKILL under load loses
no acknowledged decision."""

from __future__ import annotations

import signal
import socket
import sqlite3
import threading
import time

import httpx
from conftest import serve_process


def read_reply(connection: socket.socket) -> str:
    """The raw HTTP reply, read until its JSON body has arrived."""
    reply = b""
    while not reply.rstrip().endswith(b"}"):
        chunk = connection.recv(4096)
        if not chunk:
            break
        reply += chunk
    return reply.decode()


def test_a_slow_client_gets_408_and_does_not_hold_up_the_others(tiny_exports, part_images, tmp_path):
    with serve_process(tiny_exports.models["onnx"], tmp_path / "log.sqlite", "--body-timeout", "1") as (_, url):
        port = int(url.rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", port), timeout=10) as slow:
            slow.sendall(
                b"POST /v1/score HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\nContent-Length: 100000\r\n\r\n"
                + part_images[0][:10]
            )
            fast = httpx.post(f"{url}/v1/score", content=part_images[1], headers={"Content-Type": "image/png"})
            assert fast.status_code == 200  # served while the slow body is still pending
            reply = read_reply(slow)
        assert reply.startswith("HTTP/1.1 408") and "--body-timeout" in reply


def test_sigkill_under_load_loses_no_acknowledged_decision(tiny_exports, part_images, tmp_path):
    log = tmp_path / "log.sqlite"
    acknowledged: list[dict] = []
    errors: list[str] = []
    stop = threading.Event()

    def client(url: str, index: int) -> None:
        with httpx.Client(timeout=30) as session:
            while not stop.is_set():
                try:
                    response = session.post(
                        f"{url}/v1/score",
                        content=part_images[index % 6],
                        headers={"Content-Type": "image/png"},
                        params={"part_id": f"client-{index}"},
                    )
                except httpx.TransportError:
                    return  # the server died mid-request: that answer was never acknowledged
                if response.status_code == 200:
                    acknowledged.append(response.json())
                else:
                    errors.append(response.text)

    with serve_process(tiny_exports.models["onnx"], log, "--max-batch", "4") as (process, url):
        threads = [threading.Thread(target=client, args=(url, i)) for i in range(6)]
        for thread in threads:
            thread.start()
        deadline = time.monotonic() + 60
        while len(acknowledged) < 30 and time.monotonic() < deadline:
            time.sleep(0.05)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
        stop.set()
        for thread in threads:
            thread.join(timeout=30)

    assert len(acknowledged) >= 30 and not errors
    database = sqlite3.connect(log)
    assert database.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    rows = {row[0]: row[1:] for row in database.execute("SELECT id, part_id, score, decision FROM decisions")}
    for answer in acknowledged:
        assert rows[answer["id"]] == (answer["part_id"], answer["score"], answer["decision"])
    assert len(rows) >= len(acknowledged)  # a decision may be logged and never acknowledged, not the reverse
    print(
        f"SIGKILL under load: {len(acknowledged)} decisions acknowledged, {len(rows)} in the log, all acknowledged found"
    )

    with serve_process(tiny_exports.models["onnx"], log) as (_, url):  # the same log serves on
        again = httpx.post(f"{url}/v1/score", content=part_images[0], headers={"Content-Type": "image/png"}).json()
        assert again["id"] == max(rows) + 1
