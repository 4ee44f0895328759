"""Shared LightningDataModule base: whole splits in memory, batch loaders, dims for config linking."""

from __future__ import annotations

from abc import abstractmethod
from typing import Any

import lightning.pytorch as pl
import torch
from torch.utils.data import DataLoader

from lightning_kd.data.batch import Batch
from lightning_kd.data.missing import MissingAugmentation, MissingCondition
from lightning_kd.data.split import EpochSeededSampler, InMemoryDataset, SplitTensors, identity_collate

SPLITS = ("train", "valid", "test")


class InMemoryDataModule(pl.LightningDataModule):
    """Base for every datamodule of the project.

    Subclasses implement :meth:`load_splits`, which reads the files once and returns all splits as
    tensors. Nothing is re-read per step or per split, and loaders use no worker processes (the data
    is already in memory, workers would only copy it).

    ``feature_dims`` and ``seq_lens`` are read from the data and linked into the model by the CLI
    (``apply_on="instantiate"``), so configs never repeat them.

    Args:
        batch_size: samples per batch for every split.
        seed: seed of the training-set shuffling (order depends on ``(seed, epoch)`` only).
        predict_split: split used by ``predict``.
        eval_batch_size: batch size for valid/test/predict (defaults to ``batch_size``).
        train_missing: missing-modality augmentation of training batches (frame dropping and modality
            removal, :class:`~lightning_kd.data.missing.MissingAugmentation`); the complete inputs stay
            available as ``batch.complete_inputs`` for a teacher.
        eval_missing: the missing-modality condition of validation, test and predict batches
            (:class:`~lightning_kd.data.missing.MissingCondition`); ``None`` = complete data.
    """

    def __init__(
        self,
        batch_size: int = 16,
        seed: int = 0,
        predict_split: str = "test",
        eval_batch_size: int | None = None,
        train_missing: MissingAugmentation | None = None,
        eval_missing: MissingCondition | None = None,
    ) -> None:
        super().__init__()
        if predict_split not in SPLITS:
            raise ValueError(f"predict_split must be one of {SPLITS}, got {predict_split!r}")
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size or batch_size
        self.seed = seed
        self.predict_split = predict_split
        self.train_missing = train_missing
        self.eval_missing = eval_missing
        self._splits: dict[str, SplitTensors] | None = None

    # -- to implement -------------------------------------------------------------------------
    @abstractmethod
    def load_splits(self) -> dict[str, SplitTensors]:
        """Read the data once; return ``{"train", "valid", "test"} -> SplitTensors``."""

    # -- shared -------------------------------------------------------------------------------
    @property
    def splits(self) -> dict[str, SplitTensors]:
        if self._splits is None:
            self._splits = self.load_splits()
        return self._splits

    def split(self, name: str) -> SplitTensors:
        return self.splits[name]

    @property
    def feature_dims(self) -> dict[str, int]:
        """Modality -> feature size of the last axis (token-id inputs report the id tensor's rows)."""
        s = self.splits["train"]
        return {k: int(v.shape[-1]) if v.is_floating_point() else int(v.shape[1]) for k, v in s.inputs.items()}

    @property
    def seq_lens(self) -> dict[str, int]:
        """Modality -> padded sequence length (steps axis of the stored tensors)."""
        s = self.splits["train"]
        return {k: int(v.shape[-1]) if not v.is_floating_point() else int(v.shape[1]) for k, v in s.inputs.items()}

    @property
    def target_kind(self) -> str | None:
        """What ``batch.target`` holds (a key of :data:`lightning_kd.data.contract.TARGET_KINDS`); None: undeclared."""
        return None

    def ids(self, split: str) -> list[str]:
        return self.splits[split].ids

    def setup(self, stage: str | None = None) -> None:
        _ = self.splits

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        """Apply the missing-modality augmentation (training) or condition (evaluation) on the device."""
        trainer = self.trainer
        if trainer is None or not isinstance(batch, Batch):
            return batch
        if trainer.training:
            if self.train_missing is not None:
                return self.train_missing.apply(batch, epoch=trainer.current_epoch)
        elif self.eval_missing is not None:
            return self.eval_missing.apply(batch)
        return batch

    def _loader(self, split: str, train: bool) -> DataLoader:
        ds = InMemoryDataset(self.splits[split])
        sampler = EpochSeededSampler(len(ds), self.seed) if train else None
        return DataLoader(
            ds,
            batch_size=self.batch_size if train else self.eval_batch_size,
            sampler=sampler,
            shuffle=False,
            collate_fn=identity_collate,
            num_workers=0,
            generator=torch.Generator().manual_seed(self.seed),
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", train=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("valid", train=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", train=False)

    def predict_dataloader(self) -> DataLoader:
        return self._loader(self.predict_split, train=False)
