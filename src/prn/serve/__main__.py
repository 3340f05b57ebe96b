"""``prn-serve MODEL``: the inspection service on one machine (see :mod:`prn.serve.app` for the endpoints).

prn-serve prn.onnx --port 8000 --log decisions.sqlite --keep-ng ng_images/
curl -H 'Content-Type: image/png' --data-binary @part.png 'http://127.0.0.1:8000/v1/score?part_id=4711'
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence
from pathlib import Path

from prn.serve.batching import BatchingOptions
from prn.serve.uploads import UploadLimits

DEFAULT_LOG = Path("prn-decisions.sqlite")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="prn-serve", description=__doc__.splitlines()[0])
    parser.add_argument("model", type=Path, help="an export (.onnx, .xml, .pt2) or a training checkpoint (.ckpt)")
    parser.add_argument("--host", default="127.0.0.1", help="0.0.0.0 to accept other machines (default: this one)")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--log", type=Path, default=DEFAULT_LOG, help="the decision log (SQLite, created if absent)")
    parser.add_argument("--keep-ng", type=Path, help="keep a copy of every NG image in this folder")
    parser.add_argument("--max-batch", type=int, default=8, help="largest batch; 1 turns dynamic batching off")
    parser.add_argument("--max-wait-ms", type=float, default=5.0, help="how long a batch waits to fill")
    parser.add_argument("--max-queue", type=int, default=64, help="requests waiting beyond this get 503")
    parser.add_argument("--max-body-mb", type=float, default=50.0, help="larger bodies get 413")
    parser.add_argument("--max-pixels", type=int, default=40_000_000, help="larger images get 413")
    parser.add_argument("--body-timeout", type=float, default=10.0, help="seconds to send a body, else 408")
    parser.add_argument("--max-connections", type=int, default=256, help="open connections beyond this get 503")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    import uvicorn

    from prn.deploy import Inferencer
    from prn.serve.app import create_app
    from prn.serve.decisions import DecisionLog
    from prn.serve.service import InspectionService

    batching = BatchingOptions(args.max_batch, args.max_wait_ms / 1000.0, args.max_queue)
    limits = UploadLimits(int(args.max_body_mb * 2**20), args.max_pixels, args.body_timeout)
    service = InspectionService(Inferencer(args.model, batch_size=args.max_batch), DecisionLog(args.log), args.keep_ng)
    logging.getLogger("prn.serve").info(
        "%s (%s, sha256 %s…), decisions in %s, batching %s",
        args.model,
        service.inferencer.format,
        service.model_sha256[:12],
        args.log,
        "off" if args.max_batch == 1 else f"up to {args.max_batch} within {args.max_wait_ms:g} ms",
    )
    uvicorn.run(
        create_app(service, limits, batching),
        host=args.host,
        port=args.port,
        limit_concurrency=args.max_connections,
        timeout_graceful_shutdown=10,
        log_level="warning",
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
