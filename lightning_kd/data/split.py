"""A whole data split held in memory as tensors, sliced a batch at a time."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor
from torch.utils.data import Dataset, Sampler

from lightning_kd.data.batch import Batch


@dataclass
class SplitTensors:
    """One split (train / valid / test) as tensors whose first dimension is the sample."""

    inputs: dict[str, Tensor]
    masks: dict[str, Tensor]
    target: Tensor
    ids: list[str]

    def __len__(self) -> int:
        return int(self.target.shape[0])


class InMemoryDataset(Dataset):
    """Dataset over a :class:`SplitTensors` that returns a whole :class:`Batch` per list of indices.

    ``DataLoader`` calls ``__getitems__`` with the sampled indices of one batch, so a batch is one
    fancy-indexing operation per tensor instead of ``batch_size`` Python calls plus a collate.
    Use it with :func:`identity_collate`.
    """

    def __init__(self, split: SplitTensors) -> None:
        self.split = split

    def __len__(self) -> int:
        return len(self.split)

    def __getitems__(self, indices: list[int]) -> Batch:
        idx = torch.as_tensor(indices, dtype=torch.long)
        s = self.split
        return Batch(
            inputs={k: v[idx] for k, v in s.inputs.items()},
            masks={k: v[idx] for k, v in s.masks.items()},
            target=s.target[idx],
            index=idx,
        )

    def __getitem__(self, i: int) -> Batch:
        return self.__getitems__([i])


def identity_collate(batch: Batch) -> Batch:
    """The dataset already returns a collated :class:`Batch`."""
    return batch


class EpochSeededSampler(Sampler[int]):
    """Random permutation that depends only on ``(seed, epoch)``.

    Lightning calls ``set_epoch`` at every epoch start, so a run resumed from a checkpoint sees
    exactly the sample order an uninterrupted run sees (``RandomSampler`` draws from the global RNG,
    which a resumed process does not share).
    """

    def __init__(self, n: int, seed: int = 0) -> None:
        self.n, self.seed, self.epoch = n, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.n

    def __iter__(self):
        g = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        return iter(torch.randperm(self.n, generator=g).tolist())
