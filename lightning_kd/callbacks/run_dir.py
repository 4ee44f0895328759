"""Where a run writes its files: one directory per run, shared by checkpoints, config and outputs."""

from __future__ import annotations

import os
from pathlib import Path

import lightning.pytorch as pl
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger


def run_dir(trainer: pl.Trainer) -> Path:
    """The run's own directory (call on every rank: rank 0's choice is broadcast).

    CSV/TensorBoard loggers give ``save_dir/name/version_N`` (a new version per run); other loggers
    (wandb) give ``save_dir/name/version``, the same place Lightning puts their checkpoints.
    Without a logger: ``default_root_dir``.
    """
    if trainer.loggers:
        lg = trainer.loggers[0]
        if isinstance(lg, (CSVLogger, TensorBoardLogger)):
            d = lg.log_dir
        else:
            d = os.path.join(lg.save_dir or trainer.default_root_dir, str(lg.name), str(lg.version))
    else:
        d = trainer.default_root_dir
    return Path(trainer.strategy.broadcast(d))
