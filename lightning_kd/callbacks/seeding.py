"""Per-epoch reseeding, so a run resumed from a checkpoint continues exactly like an uninterrupted one."""

from __future__ import annotations

import os
import random

import lightning.pytorch as pl
import numpy as np
import torch
from lightning.pytorch.callbacks import Callback


class EpochSeed(Callback):
    """At every training-epoch start, seed torch / numpy / random from ``(global seed, epoch, rank)``.

    Lightning checkpoints do not hold RNG states, so dropout in a resumed run would draw other
    numbers than the uninterrupted run. Seeding from the epoch number makes each epoch's randomness a
    function of the config alone. The global seed is Lightning's ``seed_everything`` value.
    """

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        base = int(os.environ.get("PL_GLOBAL_SEED", 0))
        seed = (base * 1_000_003 + trainer.current_epoch * 7919 + trainer.global_rank) % (2**31 - 1)
        random.seed(seed)
        np.random.seed(seed)
        torch.manual_seed(seed)
