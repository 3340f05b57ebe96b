"""Anomaly generation as batched torch operations on the training device (issue: the GPU data path).

Built piece by piece against the CPU path (:mod:`prn.data.generation`), each piece tested to draw
from the same distributions. So far: DRAEM's Perlin fields and blob masks (:mod:`.perlin`).
Not yet wired into training: the datamodules still generate on the CPU.
"""
