"""Evaluate a checkpoint: ``python src/eval.py ckpt_path=logs/train/runs/<run>/checkpoints/last.ckpt`` (same as ``prn-eval``)."""

from prn.cli import eval_main

if __name__ == "__main__":
    eval_main()
