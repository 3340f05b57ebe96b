"""Anomaly generation as batched torch operations on the training device (``generation.on_device=true``).

The loader carries only each slot's plan; :class:`~prn.data.device.batches.DeviceBatchMaker` makes the
batch where the model trains, from the pool held as uint8 tensors (:mod:`.pool`): DRAEM's Perlin fields
(:mod:`.perlin`), target areas and shapes (:mod:`.regions`), the colour and texture operations
(:mod:`.color`), erased structure (:mod:`.erase`), and EA / HEA / HOA built from them (:mod:`.sources`).
Each piece is tested to draw from the CPU path's distributions (:mod:`prn.data.generation`).
"""
