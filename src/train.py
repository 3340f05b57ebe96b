"""Train PRN and test it: ``python src/train.py dataset=mvtec category=screw`` (same as ``prn-train``)."""

from prn.cli import train_main

if __name__ == "__main__":
    train_main()
