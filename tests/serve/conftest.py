"""The service on the tiny exported ONNX model (``tiny_exports``), in-process and as a real ``prn-serve`` process."""

from __future__ import annotations

import io
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image
from tiny_model import random_images

from prn.deploy import Inferencer
from prn.serve.app import create_app
from prn.serve.batching import BatchingOptions
from prn.serve.decisions import DecisionLog
from prn.serve.service import InspectionService
from prn.serve.uploads import UploadLimits

REPO = Path(__file__).resolve().parents[2]
SMALL_LIMITS = UploadLimits(max_bytes=2 * 2**20, max_pixels=4_000_000, body_timeout_s=1.0)


def png_bytes(image: np.ndarray, format: str = "PNG") -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format=format)
    return buffer.getvalue()


@pytest.fixture(scope="session")
def part_images() -> list[bytes]:
    """Six PNGs of the tiny model's size whose scores differ (some OK, some NG under its calibration)."""
    return [png_bytes(image) for image in random_images(6)]


@pytest.fixture
def make_client(tiny_exports, tmp_path) -> Iterator[Callable[..., TestClient]]:
    """``make_client(max_batch=8, keep_ng=None, max_queue=16)``: the app on the tiny ONNX model with a fresh decision log."""
    clients = []

    def make(
        max_batch: int = 8, keep_ng: Path | None = None, limits: UploadLimits = SMALL_LIMITS, max_queue: int = 16
    ) -> TestClient:
        service = InspectionService(
            Inferencer(tiny_exports.models["onnx"]), DecisionLog(tmp_path / f"log{len(clients)}.sqlite"), keep_ng
        )
        client = TestClient(create_app(service, limits, BatchingOptions(max_batch, 0.01, max_queue)))
        clients.append(client.__enter__())
        return client

    yield make
    for client in clients:
        client.__exit__(None, None, None)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextmanager
def serve_process(model: Path, log: Path, *arguments: str) -> Iterator[tuple[subprocess.Popen, str]]:
    """``python -m prn.serve MODEL`` on a free port, ready when ``/ready`` answers; killed at exit."""
    port = free_port()
    command = [sys.executable, "-m", "prn.serve", str(model), "--port", str(port), "--log", str(log), *arguments]
    process = subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=os.environ)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"prn-serve exited: {process.stdout.read().decode()[-2000:]}")
            try:
                if httpx.get(f"{url}/ready", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError("prn-serve did not become ready within 60 s")
            time.sleep(0.2)
        yield process, url
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=30)
        process.stdout.close()
