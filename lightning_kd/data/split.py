"""A whole data split held in memory as tensors, sliced a batch at a time; memory checks before building one."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, get_args

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset, DistributedSampler

from lightning_kd.checkpoint import DataFormatError
from lightning_kd.data.batch import Batch

__all__ = [
    "STORAGE_DTYPES",
    "EpochSeededSampler",
    "InMemoryDataset",
    "SplitTensors",
    "StorageDtype",
    "available_memory",
    "check_allocation",
    "check_mask_allocation",
    "identity_collate",
    "store_inputs_as",
]

#: what a datamodule's ``storage_dtype`` may name: the dtype floating inputs are held in (batches come out float32)
StorageDtype = Literal["float32", "float16", "bfloat16"]
STORAGE_DTYPES = {name: getattr(torch, name) for name in get_args(StorageDtype)}
_HALF = (torch.float16, torch.bfloat16)


@dataclass
class SplitTensors:
    """One split (train / valid / test) as tensors whose first dimension is the sample."""

    inputs: dict[str, Tensor]
    masks: dict[str, Tensor]
    target: Tensor
    ids: list[str]

    def __len__(self) -> int:
        return int(self.target.shape[0])


def store_inputs_as(split: SplitTensors, dtype: torch.dtype, where: str, chunk: int = 256) -> None:
    """Hold ``split``'s float32 inputs in ``dtype`` (in place; converted ``chunk`` samples at a time, so the transient
    is the new half-size copy of one input); token ids and masks stay as they are. :class:`InMemoryDataset` hands
    them out as float32.

    Raises:
        DataFormatError: an input holds finite values beyond ``dtype``'s range (float16: 65504), naming it.
    """
    if dtype == torch.float32:
        return
    for key, x in split.inputs.items():
        if x.dtype != torch.float32:
            continue
        held = torch.empty(x.shape, dtype=dtype)
        for i in range(0, x.shape[0], chunk):
            part, source = held[i : i + chunk], x[i : i + chunk]
            part.copy_(source)
            inf = torch.isinf(part)
            if inf.any():
                overflow = inf & torch.isfinite(source)
                if not overflow.any():  # the file's own infinities (a reader that allows them keeps them)
                    continue
                big = float(source[overflow].abs().max())
                raise DataFormatError(
                    f"{where}, input {key!r}: holds {big:g}, beyond {dtype}'s range ({torch.finfo(dtype).max:g}). "
                    "Fix: set `--data.init_args.storage_dtype bfloat16` (float32's range) or `float32`.")
        split.inputs[key] = held


class InMemoryDataset(Dataset):
    """Dataset over a :class:`SplitTensors` that returns a whole :class:`Batch` per list of indices.

    ``DataLoader`` calls ``__getitems__`` with the sampled indices of one batch, so a batch is one
    fancy-indexing operation per tensor instead of ``batch_size`` Python calls plus a collate.
    Inputs held in float16 / bfloat16 (:func:`store_inputs_as`) come out float32.
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
            inputs={k: v[idx].float() if v.dtype in _HALF else v[idx] for k, v in s.inputs.items()},
            masks={k: v[idx] for k, v in s.masks.items()},
            target=s.target[idx],
            index=idx,
        )

    def __getitem__(self, i: int) -> Batch:
        return self.__getitems__([i])


def identity_collate(batch: Batch) -> Batch:
    """The dataset already returns a collated :class:`Batch`."""
    return batch


class EpochSeededSampler(DistributedSampler):
    """Random permutation that depends only on ``(seed, epoch)``; under DDP, rank ``r`` of ``W`` takes its
    positions ``r, r + W, r + 2W, ...``.

    Lightning calls ``set_epoch`` at every epoch start, so a run resumed from a checkpoint sees
    exactly the sample order an uninterrupted run sees (``RandomSampler`` draws from the global RNG,
    which a resumed process does not share).

    Under DDP every rank draws the same permutation and keeps every ``W``-th position (padded, as
    :class:`~torch.utils.data.DistributedSampler` pads, with its first entries when ``n`` is not a multiple of
    ``W``), so when ``W`` divides ``n``, step ``k`` of ``W`` ranks with batch ``B`` trains on exactly the samples of
    step ``k`` of one process with batch ``W * B``. Being a ``DistributedSampler``, Lightning keeps it as it is: its own
    replacement (``DistributedSamplerWrapper`` with ``shuffle=True``) would shuffle the permutation a second
    time with another seed, so the ranks together would see another grouping than a single process.

    Args:
        n: number of samples.
        seed: the permutation's seed (the run's seed).
        num_replicas / rank: the DDP world size and this process's global rank (``trainer.distributed_sampler_kwargs``).
    """

    def __init__(self, n: int, seed: int = 0, num_replicas: int = 1, rank: int = 0) -> None:
        super().__init__(range(n), num_replicas=num_replicas, rank=rank, shuffle=True, seed=seed, drop_last=False)
        self.n = n

    def __iter__(self):
        g = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        order = torch.randperm(self.n, generator=g).tolist()
        if self.total_size > self.n:  # pad with the first entries (repeated if n < W), as DistributedSampler does
            order += (order * -(-self.total_size // max(self.n, 1)))[: self.total_size - self.n]
        return iter(order[self.rank : self.total_size : self.num_replicas])


# -- memory checks before an allocation whose size a file decides ---------------------------------------------
_CGROUP = Path("/sys/fs/cgroup")


def _meminfo_available() -> int | None:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, AttributeError):
        return None


def _cgroup_headroom() -> int | None:
    """Bytes left under a cgroup-v2 (container) memory limit, or None without one."""
    try:
        limit = (_CGROUP / "memory.max").read_text().strip()
        if limit == "max":
            return None
        return max(0, int(limit) - int((_CGROUP / "memory.current").read_text().strip()))
    except (OSError, ValueError):
        return None


def available_memory() -> int | None:
    """Bytes of memory available now (``MemAvailable``, within a container's limit); ``None`` when unknown.

    Read from ``/proc/meminfo`` and ``/sys/fs/cgroup`` (``os.sysconf`` elsewhere): psutil is not a dependency.
    """
    known = [b for b in (_meminfo_available(), _cgroup_headroom()) if b is not None]
    return min(known) if known else None


def _gb(nbytes: int) -> str:
    return f"{nbytes / 2**30:,.1f} GiB"


def check_allocation(nbytes: int, what: str, file: str | Path | None = None, fix: str | None = None) -> None:
    """Refuse, with one line, to allocate ``nbytes`` for ``what`` when that exceeds the memory available now.

    Call it before building anything whose size comes from a file (a padded length, a sample count), so an
    absurd value stops with a message naming the key instead of a multi-GB allocation or the OOM killer.

    Args:
        nbytes: bytes about to be allocated.
        what: what they are for, naming the key (``"split 'train', key 'audio': step masks of 8 x 10**9 steps"``).
        file: the file that asks for it (named first in the message).
        fix: the fix; default: the file's shape is damaged or it is not this format.

    Raises:
        DataFormatError: ``nbytes`` > :func:`available_memory`. Nothing is checked when that is unknown.
    """
    avail = available_memory()
    if avail is None or nbytes <= avail:
        return
    fix = fix or ("a size in the file is damaged or the file is not of this format: check the shape of that key "
                  "and re-create the file (or free memory if the size is real)")
    where = f"{file}, " if file is not None else ""
    raise DataFormatError(f"{where}{what} would need {_gb(nbytes)}, more than the {_gb(avail)} of memory available. "
                          f"Fix: {fix}.")


def _steps(key: str, arr: np.ndarray | Tensor) -> int:
    """Steps axis of a stored sequence: (N, 3, L) token ids ``text_bert``, else (N, L, D)."""
    return int(arr.shape[-1] if key == "text_bert" else arr.shape[1])


def check_mask_allocation(path: str | Path, split: str, inputs: Mapping[str, np.ndarray | Tensor]) -> None:
    """Check, before a reader builds the (N, L) bool step masks of ``inputs``, that they fit in memory.

    A feature array of shape (N, L, 0) holds no bytes whatever its length L, so a small file can claim
    10**9 steps; its masks (and the ``arange(L)`` they are built from) would not. The key with the largest
    masks is named.
    """
    need = {k: int(a.shape[0]) * _steps(k, a) + 8 * _steps(k, a) for k, a in inputs.items() if a.ndim >= 2}
    if not need:
        return
    key = max(need, key=need.get)
    a = inputs[key]
    check_allocation(sum(need.values()), f"split {split!r}, key {key!r}: the step masks of {int(a.shape[0])} samples "
                     f"x {_steps(key, a)} steps (shape {tuple(a.shape)})", path)
