"""Shared LightningDataModule base: whole splits in memory, batch loaders, dims for config linking."""

from __future__ import annotations

from abc import abstractmethod
from typing import Any

import lightning.pytorch as pl
import torch
from torch.utils.data import DataLoader

from lightning_kd.checkpoint import ConfigError, DataFormatError
from lightning_kd.data.batch import Batch
from lightning_kd.data.missing import (
    MissingAugmentation,
    MissingCondition,
    ModalityLayout,
    default_step_axis,
    input_modality,
)
from lightning_kd.data.seeding import run_seed
from lightning_kd.data.split import (
    STORAGE_DTYPES,
    EpochSeededSampler,
    InMemoryDataset,
    SplitTensors,
    StorageDtype,
    identity_collate,
    store_inputs_as,
)

SPLITS = ("train", "valid", "test")
#: what an empty split would silently do, for the error that refuses it
_EMPTY_SPLIT = {
    "train": "there is nothing to train on (fit would save no checkpoint and test an untrained model)",
    "valid": "validation (checkpoint selection, early stopping, LR schedule) needs at least one sample",
    "test": "testing would report no metrics",
}


class InMemoryDataModule(pl.LightningDataModule):
    """Base for every datamodule of the project.

    Subclasses implement :meth:`load_splits`, which reads the files once and returns all splits as
    tensors. Nothing is re-read per step or per split, and loaders use no worker processes (the data
    is already in memory, workers would only copy it).

    Modalities are declared by name (:attr:`modalities`, :attr:`input_modalities`, :attr:`step_axes`, together
    :attr:`modality_layout`): the missing-modality protocol (:mod:`lightning_kd.data.missing`) and
    ``lightning-kd robustness`` work on whatever modalities the data has. The defaults follow the data contract
    (``text_bert`` carries ``text``, every other input is its own modality; steps on axis 1, on axis 2 for
    ``text_bert (B, 3, L)``, ``eeg`` and ``bio (B, C, T)``); a datamodule with other inputs overrides them.

    ``feature_dims`` and ``seq_lens`` are read from the data and linked into the model by the CLI
    (``apply_on="instantiate"``), so configs never repeat them. Reading them reads the data, so a file
    with a missing or empty split stops (:meth:`check_splits`, one line) before the model is built.

    Seeds: one seed drives the run. By default the training stream (batch order and the training masks of
    ``train_missing``) follows ``--seed_everything``, like initialisation and dropout, so "mean +- std over
    seeds" includes the variance of the data order. Pinned on purpose: the data file itself (a generated
    file's ``data_seed``: every seed trains on the same data set) and the evaluation condition
    (``eval_missing.seed``, 0 by default: every seed is scored on the same masked test set).

    Args:
        batch_size: samples per batch for every split.
        seed: seed of the training stream: the shuffling (order depends on ``(seed, epoch)`` only) and
            ``train_missing`` unless that pins its own seed. ``None`` (default) = the run's seed, the value
            ``seed_everything`` set (:func:`~lightning_kd.data.seeding.run_seed`, 0 when nothing was seeded),
            read when the loaders are built. An int pins the stream across run seeds.
        predict_split: split used by ``predict``.
        eval_batch_size: batch size for valid/test/predict (defaults to ``batch_size``).
        train_missing: missing-modality augmentation of training batches (frame dropping and modality
            removal, :class:`~lightning_kd.data.missing.MissingAugmentation`); the complete inputs stay
            available as ``batch.complete_inputs`` for a teacher. Its ``seed: null`` (default) takes this
            datamodule's resolved seed.
        eval_missing: the missing-modality condition of validation, test and predict batches
            (:class:`~lightning_kd.data.missing.MissingCondition`); ``None`` = complete data. Its seed is
            pinned (0) unless set to ``null``, which takes this datamodule's resolved seed.
        storage_dtype: the dtype floating inputs are HELD in between batches: ``"float32"`` (default, as read),
            ``"float16"`` or ``"bfloat16"`` (half the memory; every batch still comes out float32, so the model
            and its precision are unchanged, and it sees the inputs rounded to 11 / 8 significant bits). Under
            ``bf16-mixed`` the layers that read an input cast it to bfloat16 anyway, so ``"bfloat16"`` storage
            changes nothing they compute. A value beyond float16's range stops with a message naming the input
            (:func:`~lightning_kd.data.split.store_inputs_as`).
    """

    def __init__(
        self,
        batch_size: int = 16,
        seed: int | None = None,
        predict_split: str = "test",
        eval_batch_size: int | None = None,
        train_missing: MissingAugmentation | None = None,
        eval_missing: MissingCondition | None = None,
        storage_dtype: StorageDtype = "float32",
    ) -> None:
        super().__init__()
        if predict_split not in SPLITS:
            raise ValueError(f"predict_split must be one of {SPLITS}, got {predict_split!r}")
        if storage_dtype not in STORAGE_DTYPES:
            raise ConfigError(f"storage_dtype {storage_dtype!r} is unknown. Fix: set `--data.init_args.storage_dtype` "
                              f"to one of {list(STORAGE_DTYPES)}.")
        self.storage_dtype = storage_dtype
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size or batch_size
        self.seed = seed
        self.predict_split = predict_split
        self.train_missing = train_missing
        self.eval_missing = eval_missing
        self._splits: dict[str, SplitTensors] | None = None
        # (train_missing, the same with its seed resolved at loader time)
        self._train_augmentation: tuple[MissingAugmentation, MissingAugmentation] | None = None
        self._modality_layout: ModalityLayout | None = None

    # -- to implement -------------------------------------------------------------------------
    @abstractmethod
    def load_splits(self) -> dict[str, SplitTensors]:
        """Read the data once; return ``{"train", "valid", "test"} -> SplitTensors``."""

    # -- shared -------------------------------------------------------------------------------
    @property
    def splits(self) -> dict[str, SplitTensors]:
        """All splits, read once; an empty split is refused here, for every reader (:meth:`check_splits`)."""
        if self._splits is None:
            splits = self.load_splits()
            self.check_splits(splits)
            if self.storage_dtype != "float32":
                for name, split in splits.items():
                    store_inputs_as(split, STORAGE_DTYPES[self.storage_dtype], f"{self.source}, split {name!r}")
            self._splits = splits
        return self._splits

    @property
    def source(self) -> str:
        """What the data comes from, for messages: the file (``path``), else the datamodule's class name."""
        path = getattr(self, "path", None)
        return str(path) if path else type(self).__name__

    def check_splits(self, splits: dict[str, SplitTensors]) -> None:
        """Every split present and holding at least one sample, else one :class:`DataFormatError` line."""
        for name in SPLITS:
            if name not in splits:
                raise DataFormatError(f"{self.source}: {type(self).__name__}.load_splits returned no {name!r} split "
                                      f"(got {sorted(splits)}). Fix: return all of {list(SPLITS)}.")
            if len(splits[name]) == 0:
                raise DataFormatError(
                    f"{self.source}, split {name!r}: has 0 samples; {_EMPTY_SPLIT[name]}. Fix: use a file whose "
                    f"{', '.join(map(repr, SPLITS))} splits each hold at least one sample (a generated file: "
                    "positive sizes in `--n`).")

    def split(self, name: str) -> SplitTensors:
        return self.splits[name]

    @property
    def feature_dims(self) -> dict[str, int]:
        """Modality -> feature size of the last axis (token-id inputs report the id tensor's rows)."""
        s = self.splits["train"]
        return {k: int(v.shape[-1]) if v.is_floating_point() else int(v.shape[1]) for k, v in s.inputs.items()}

    @property
    def seq_lens(self) -> dict[str, int]:
        """Input -> padded sequence length (the size of its :attr:`step_axes` axis in the stored tensors)."""
        s, axes = self.splits["train"], self.step_axes
        return {k: int(v.shape[axes.get(k, default_step_axis(k))]) for k, v in s.inputs.items()}

    # -- modalities by name ---------------------------------------------------------------------
    @property
    def input_modalities(self) -> dict[str, str]:
        """Input -> the modality it carries (default: ``text_bert`` -> ``text``, every other input its own name).

        Every input of a batch belongs to one modality; several inputs may carry the same one."""
        return {k: input_modality(k) for k in self.splits["train"].inputs}

    @property
    def modalities(self) -> tuple[str, ...]:
        """The data's modalities, in order (default: of :attr:`input_modalities`, in input order); MMSA,
        MulT-style and synthetic data give ``("text", "audio", "vision")``."""
        return tuple(dict.fromkeys(self.input_modalities.values()))

    @property
    def step_axes(self) -> dict[str, int]:
        """Input -> the axis its steps (frames) run along; its mask is ``(B, L)`` along it. Default 1 (sequences
        ``(B, L, D)``), 2 for ``text_bert (B, 3, L)``, ``eeg (B, C, T)`` and ``bio (B, C, T)``."""
        return {k: default_step_axis(k) for k in self.splits["train"].inputs}

    @property
    def modality_layout(self) -> ModalityLayout:
        """:attr:`modalities`, :attr:`input_modalities` and :attr:`step_axes` as one
        :class:`~lightning_kd.data.missing.ModalityLayout` (read once), what the missing-modality protocol uses."""
        if self._modality_layout is None:
            self._modality_layout = ModalityLayout(self.modalities, self.input_modalities, self.step_axes)
        return self._modality_layout

    @property
    def target_kind(self) -> str | None:
        """What ``batch.target`` holds (a key of :data:`lightning_kd.data.contract.TARGET_KINDS`); None: undeclared."""
        return None

    def ids(self, split: str) -> list[str]:
        return self.splits[split].ids

    @property
    def effective_seed(self) -> int:
        """``seed``, or the run's seed when ``seed`` is ``None`` (read now: call it at setup/loader time)."""
        return int(self.seed) if self.seed is not None else run_seed()

    def setup(self, stage: str | None = None) -> None:
        _ = self.splits
        self.check_missing()

    def check_missing(self) -> None:
        """``train_missing`` / ``eval_missing`` fit the data's modalities, else one :class:`ConfigError` line."""
        if self.eval_missing is not None:
            try:
                self.modality_layout.resolve(self.eval_missing.available)
            except ValueError as e:
                raise ConfigError(f"{self.source}: eval_missing.available: {e}. Fix: set `--data.init_args."
                                  "eval_missing.available` to modalities of this data joined by '+' (e.g. "
                                  f"{self.modality_layout.settings()[-1]!r}) or 'all'") from None
        aug = self.train_missing
        if aug is not None and aug.modality_prob > 0 and len(self.modality_layout.modalities) < 2:
            raise ConfigError(f"{self.source}: train_missing.modality_prob {aug.modality_prob} removes whole "
                              f"modalities, but the data has one ({self.modality_layout.modalities[0]}). Fix: set "
                              "`--data.init_args.train_missing.modality_prob 0`")

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        """Apply the missing-modality augmentation (training) or condition (evaluation) on the device."""
        trainer = self.trainer
        if trainer is None or not isinstance(batch, Batch):
            return batch
        if trainer.training:
            if self.train_missing is not None:
                return self._seeded(self.train_missing).apply(batch, trainer.current_epoch, self.modality_layout)
        elif self.eval_missing is not None:
            return self.eval_missing.seeded(self.effective_seed).apply(batch, self.modality_layout)
        return batch

    def _seeded(self, aug: MissingAugmentation) -> MissingAugmentation:
        """``aug`` (``train_missing``) with the seed resolved when the training loader was built (now, if not)."""
        cached = self._train_augmentation
        if cached is None or cached[0] is not aug:
            cached = self._train_augmentation = (aug, aug.seeded(self.effective_seed))
        return cached[1]

    def _shard(self) -> dict[str, int]:
        """``num_replicas`` / ``rank`` of the attached trainer's parallel strategy (DDP over any number of nodes),
        for the training sampler to shard itself; ``{}`` (one process) without a trainer or a parallel strategy.
        The loader thus brings its own distributed sampler, which Lightning keeps (with ``use_distributed_sampler``
        on or off: Lightning leaves a loader's ``DistributedSampler`` alone)."""
        kwargs = getattr(self.trainer, "distributed_sampler_kwargs", None) if self.trainer is not None else None
        return {k: int(kwargs[k]) for k in ("num_replicas", "rank")} if kwargs else {}

    def _loader(self, split: str, train: bool) -> DataLoader:
        ds = InMemoryDataset(self.splits[split])
        seed = self.effective_seed  # resolved once per loader: the sampler and the training masks share it
        if train and self.train_missing is not None:
            self._train_augmentation = (self.train_missing, self.train_missing.seeded(seed))
        sampler = EpochSeededSampler(len(ds), seed, **self._shard()) if train else None
        return DataLoader(
            ds,
            batch_size=self.batch_size if train else self.eval_batch_size,
            sampler=sampler,
            shuffle=False,
            collate_fn=identity_collate,
            num_workers=0,
            generator=torch.Generator().manual_seed(seed),  # never draws from the global RNG
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", train=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("valid", train=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", train=False)

    def predict_dataloader(self) -> DataLoader:
        return self._loader(self.predict_split, train=False)
