"""``python -m prn.deploy MODEL INPUT...`` (or ``prn-infer``): score files and folders with an exported model.

Prints one line per image (score, normalised score, decision, defect pixels) and, with
``--csv``, writes the same as a CSV file, appended image by image.
"""

from __future__ import annotations

import argparse
import csv
import logging
import time
from collections.abc import Sequence
from pathlib import Path

from prn.deploy.inferencer import Inferencer, Prediction

CSV_FIELDS = ("path", "score", "normalized_score", "decision", "defect_pixels")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m prn.deploy", description=__doc__.splitlines()[0])
    parser.add_argument(
        "model", type=Path, help="model written by prn-export (.onnx, .xml, .pt2), or a training checkpoint (.ckpt)"
    )
    parser.add_argument("inputs", nargs="+", help="image files and folders (searched recursively)")
    parser.add_argument("--csv", type=Path, help="also write the results to this CSV file")
    parser.add_argument("--batch-size", type=int, default=16)
    return parser.parse_args(argv)


def row(prediction: Prediction) -> dict[str, str]:
    """The CSV / printed fields of one prediction; decision fields stay empty without calibration."""
    calibrated = prediction.is_anomalous is not None
    return {
        "path": prediction.source,
        "score": f"{prediction.score:.6f}",
        "normalized_score": f"{prediction.normalized_score:.4f}" if calibrated else "",
        "decision": ("NG" if prediction.is_anomalous else "OK") if calibrated else "",
        "defect_pixels": str(int(prediction.defect_mask.sum())) if calibrated else "",
    }


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    start = time.perf_counter()
    inferencer = Inferencer(args.model, batch_size=args.batch_size)
    print(
        f"{args.model} ({inferencer.format}), input {inferencer.image_size[0]}x{inferencer.image_size[1]}, "
        f"{'calibrated' if inferencer.calibration else 'no calibration: scores only'}"
    )
    print("\t".join(CSV_FIELDS))
    handle = None if args.csv is None else open(args.csv, "w", newline="")
    writer = None if handle is None else csv.DictWriter(handle, fieldnames=CSV_FIELDS)
    if writer is not None:
        writer.writeheader()
    count = 0
    try:
        for prediction in inferencer.iter_predict(args.inputs):
            fields = row(prediction)
            print("\t".join(fields.values()), flush=True)
            if writer is not None:
                writer.writerow(fields)
                handle.flush()
            count += 1
    finally:
        if handle is not None:
            handle.close()
    seconds = time.perf_counter() - start
    print(f"scored {count} images in {seconds:.1f} s (model loading included)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
