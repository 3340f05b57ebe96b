"""Evaluation data: pre-decoded images served in file order, optionally one shard per DDP rank."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from prn.data.records import Record
from prn.data.training import image_tensor


class EvalImageSet(Dataset):
    """Pre-decoded images for evaluation; ``masks[i] is None`` means an all-zero mask.

    ``with_masks=False`` (test anomalies without ground truth) leaves the ``mask`` key out,
    which is how the test step knows to skip the pixel metrics.
    """

    def __init__(
        self,
        records: Sequence[Record],
        images: Sequence[np.ndarray],
        masks: Sequence[np.ndarray | None],
        with_masks: bool = True,
    ) -> None:
        self.records, self.images, self.masks = list(records), list(images), list(masks)
        self.with_masks = with_masks

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> dict:
        record, image, mask = self.records[index], self.images[index], self.masks[index]
        item = {
            "image": image_tensor(image),
            "label": torch.tensor(record.label, dtype=torch.int64),
            "path": str(record.image_path),
            "defect_type": record.defect_type,
        }
        if self.with_masks:
            mask_values = np.zeros(image.shape[:2], dtype=np.float32) if mask is None else mask.astype(np.float32)
            item["mask"] = torch.from_numpy(mask_values)[None]
        return item


class ShardSampler(Sampler[int]):
    """Rank ``rank`` of ``num_replicas`` gets indices ``rank, rank + num_replicas, ...``.

    Unlike :class:`torch.utils.data.DistributedSampler` nothing is padded or repeated: the
    shards are disjoint, together hold every index exactly once, and their sizes differ by
    at most one, so metrics gathered over the ranks see each test image exactly once.
    """

    def __init__(self, dataset_len: int, num_replicas: int = 1, rank: int = 0) -> None:
        if isinstance(dataset_len, bool) or not isinstance(dataset_len, (int, np.integer)) or dataset_len < 0:
            raise ValueError(f"dataset_len={dataset_len!r} must be an int >= 0.")
        if isinstance(num_replicas, bool) or not isinstance(num_replicas, (int, np.integer)) or num_replicas < 1:
            raise ValueError(f"num_replicas={num_replicas!r} must be an int >= 1.")
        if isinstance(rank, bool) or not isinstance(rank, (int, np.integer)) or not 0 <= rank < num_replicas:
            raise ValueError(f"rank={rank!r} must be an int in [0, {num_replicas}).")
        self.dataset_len, self.num_replicas, self.rank = int(dataset_len), int(num_replicas), int(rank)

    def __iter__(self) -> Iterator[int]:
        return iter(range(self.rank, self.dataset_len, self.num_replicas))

    def __len__(self) -> int:
        return len(range(self.rank, self.dataset_len, self.num_replicas))
