"""Score new images: ``python src/predict.py ckpt_path=<run>/checkpoints/last.ckpt input=parts/`` (same as ``prn-predict``)."""

from prn.cli import predict_main

if __name__ == "__main__":
    predict_main()
