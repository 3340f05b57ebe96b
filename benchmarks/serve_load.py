"""Load test of ``prn-serve`` on loopback: N concurrent clients for T seconds, batching on and off.

    python benchmarks/serve_load.py --model prn.onnx --images /data/mvtec/bottle/test \\
        --clients 1 4 16 --max-batch 1 8 --seconds 30

For each (max_batch, clients) pair it starts ``python -m prn.serve MODEL`` (a fresh decision log
each time), warms it up, then runs the clients as a bounded asyncio loop (each posts the next
image as soon as its last answer came back) and prints one row: throughput, latency p50/p95/p99,
errors, the server's peak resident memory and the mean batch size it ran. The clients run on the
same machine and take some of its CPU: say so beside the numbers.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import numpy as np

from prn.data.records import IMAGE_SUFFIXES

CONTENT_TYPES = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".bmp": "image/bmp"}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, required=True, help="an export (.onnx, .xml, .pt2) or a .ckpt")
    parser.add_argument("--images", type=Path, required=True, help="a folder of images (searched recursively)")
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--max-batch", type=int, nargs="+", default=[1, 8], help="1 = batching off")
    parser.add_argument("--max-wait-ms", type=float, default=5.0)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--warmup", type=int, default=4, help="requests before timing starts")
    parser.add_argument("--json", type=Path, help="also write the rows here")
    return parser.parse_args()


def load_images(folder: Path) -> list[tuple[bytes, str]]:
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise SystemExit(f"{folder} holds no images")
    return [(p.read_bytes(), CONTENT_TYPES.get(p.suffix.lower(), "application/octet-stream")) for p in files]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Server:
    """``python -m prn.serve`` in a subprocess, with its peak resident memory sampled every 0.2 s."""

    def __init__(self, model: Path, max_batch: int, max_wait_ms: float, log: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        command = [sys.executable, "-m", "prn.serve", str(model), "--port", str(self.port), "--log", str(log)]
        command += ["--max-batch", str(max_batch), "--max-wait-ms", str(max_wait_ms), "--max-queue", "1024"]
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.peak_rss_mb = 0.0
        self._sampling = True
        self._sampler = threading.Thread(target=self._sample, daemon=True)

    def wait_ready(self, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"prn-serve exited with {self.process.returncode}")
            try:
                if httpx.get(f"{self.url}/ready", timeout=1).status_code == 200:
                    self._sampler.start()
                    return
            except httpx.TransportError:
                time.sleep(0.2)
        raise TimeoutError("prn-serve did not become ready")

    def _sample(self) -> None:
        status = Path(f"/proc/{self.process.pid}/status")
        while self._sampling and self.process.poll() is None:
            for line in status.read_text().splitlines():
                if line.startswith("VmRSS:"):
                    self.peak_rss_mb = max(self.peak_rss_mb, int(line.split()[1]) / 1024)
            time.sleep(0.2)

    def stop(self) -> None:
        self._sampling = False
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()


async def run_clients(url: str, images: list[tuple[bytes, str]], clients: int, seconds: float) -> dict:
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    stop_at = time.perf_counter() + seconds
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)

    async def client(index: int, session: httpx.AsyncClient) -> None:
        position = index
        while time.perf_counter() < stop_at:
            data, media = images[position % len(images)]
            position += clients
            start = time.perf_counter()
            try:
                response = await session.post(f"{url}/v1/score", content=data, headers={"Content-Type": media})
                code = response.status_code
            except httpx.HTTPError:
                code = 0  # transport failure
            statuses[code] = statuses.get(code, 0) + 1
            if code == 200:
                latencies.append(time.perf_counter() - start)

    async with httpx.AsyncClient(timeout=120, limits=limits) as session:
        began = time.perf_counter()
        await asyncio.gather(*(client(i, session) for i in range(clients)))
        elapsed = time.perf_counter() - began
    served = statuses.get(200, 0)
    total = sum(statuses.values())
    quantiles = np.percentile(np.array(latencies) * 1000, [50, 95, 99]) if latencies else [float("nan")] * 3
    return {
        "requests": total,
        "throughput": served / elapsed,
        "p50_ms": float(quantiles[0]),
        "p95_ms": float(quantiles[1]),
        "p99_ms": float(quantiles[2]),
        "error_rate": (total - served) / max(total, 1),
        "statuses": statuses,
    }


def measure(args: argparse.Namespace, images, max_batch: int, clients: int, folder: Path) -> dict:
    server = Server(args.model, max_batch, args.max_wait_ms, folder / f"log_{max_batch}_{clients}.sqlite")
    try:
        server.wait_ready()
        for data, media in images[: args.warmup]:
            httpx.post(f"{server.url}/v1/score", content=data, headers={"Content-Type": media}, timeout=120)
        before = httpx.get(f"{server.url}/v1/stats").json()["batch_sizes"]
        row = asyncio.run(run_clients(server.url, images, clients, args.seconds))
        after = httpx.get(f"{server.url}/v1/stats").json()
        sizes = {int(k): v - before.get(k, 0) for k, v in after["batch_sizes"].items()}
        batches = sum(sizes.values())
        row["mean_batch"] = sum(size * count for size, count in sizes.items()) / max(batches, 1)
        row["logged"] = after["decisions_logged"]
    finally:
        server.stop()
    row.update(max_batch=max_batch, clients=clients, peak_rss_mb=server.peak_rss_mb)
    return row


def direct_seconds_per_image(model: Path, images: list[tuple[bytes, str]], batch: int) -> float:
    """The same images through :class:`prn.deploy.Inferencer` in this process: decode, model, maps; no HTTP, no log."""
    from PIL import Image

    from prn.deploy import Inferencer
    from prn.deploy.images import prepare

    inferencer = Inferencer(model)
    count = min(len(images), 32)
    inferencer.predict_prepared([prepare(Image.open(io.BytesIO(images[0][0])), inferencer.image_size, 0)])  # warm-up
    start = time.perf_counter()
    for first in range(0, count, batch):
        chunk = images[first : min(first + batch, count)]
        prepared = [
            prepare(Image.open(io.BytesIO(data)), inferencer.image_size, i) for i, (data, _) in enumerate(chunk)
        ]
        inferencer.predict_prepared(prepared)
    return (time.perf_counter() - start) / count


def main() -> None:
    args = parse_args()
    images = load_images(args.images)
    print(
        f"{len(images)} images from {args.images}; model {args.model}; {args.seconds:g} s per row; "
        f"{os.cpu_count()} CPUs shared by server and clients"
    )
    print("| batching | clients | img/s | p50 ms | p95 ms | p99 ms | errors | peak RSS MB | mean batch |")
    print("|---|---|---|---|---|---|---|---|---|")
    for batch in sorted(set(args.max_batch)):
        seconds = direct_seconds_per_image(args.model, images, batch)
        print(
            f"| in-process Inferencer, batch {batch} (no HTTP, no log) | 1 | {1 / seconds:.2f} | {1000 * seconds:.0f} "
            "| | | | | |",
            flush=True,
        )
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for max_batch in args.max_batch:
            for clients in args.clients:
                row = measure(args, images, max_batch, clients, Path(folder))
                rows.append(row)
                batching = "off" if max_batch == 1 else f"max {max_batch}"
                print(
                    f"| {batching} | {clients} | {row['throughput']:.2f} | {row['p50_ms']:.0f} | {row['p95_ms']:.0f} "
                    f"| {row['p99_ms']:.0f} | {row['error_rate']:.1%} | {row['peak_rss_mb']:.0f} "
                    f"| {row['mean_batch']:.2f} |",
                    flush=True,
                )
    if args.json is not None:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
