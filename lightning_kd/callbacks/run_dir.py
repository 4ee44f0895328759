"""Where a run writes its files: one directory per run, shared by checkpoints, config and outputs."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import lightning.pytorch as pl
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger

#: files a run directory holds before the run has produced anything (removed with it when the run fails)
BOOKKEEPING = ("config.yaml", "hparams.yaml")


def _local_run_dir(trainer: pl.Trainer) -> str:
    if trainer.loggers:
        lg = trainer.loggers[0]
        if isinstance(lg, (CSVLogger, TensorBoardLogger)):
            return lg.log_dir
        return os.path.join(lg.save_dir or trainer.default_root_dir, str(lg.name), str(lg.version))
    return trainer.default_root_dir


def run_dir(trainer: pl.Trainer) -> Path:
    """The run's own directory (call on every rank: rank 0's choice is broadcast).

    CSV/TensorBoard loggers give ``save_dir/name/version_N`` (a new version per run); other loggers
    (wandb) give ``save_dir/name/version``, the same place Lightning puts their checkpoints.
    Without a logger: ``default_root_dir``.
    """
    return Path(trainer.strategy.broadcast(_local_run_dir(trainer)))


def output_dir_problem(path: str | os.PathLike[str]) -> str | None:
    """Why ``path`` cannot be (or become) a writable directory, or None when it can; creates nothing."""
    p = Path(path).expanduser().absolute()
    if p.exists() and not p.is_dir():
        return f"{p} is a file, not a directory"
    existing = p
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        return f"{existing} is a file, so no directory can be made under it"
    if not os.access(existing, os.W_OK | os.X_OK):
        return f"{existing} is not writable"
    return None


def is_unused(d: Path) -> bool:
    """Whether run directory ``d`` holds nothing a run produced: only :data:`BOOKKEEPING` files, a
    ``metrics.csv`` without rows, and empty folders (e.g. ``checkpoints/``)."""
    for p in d.rglob("*"):
        if p.is_dir() and not p.is_symlink():
            continue
        if p.parent == d and p.name in BOOKKEEPING:
            continue
        if p.parent == d and p.name == "metrics.csv" and len(p.read_bytes().splitlines()) <= 1:
            continue
        return False
    return True


def planned_run_dir(trainer: pl.Trainer) -> Path | None:
    """The directory the next run of ``trainer`` will write into (fixes the logger's version, creates nothing);
    None for a smoke run (fast_dev_run writes no files). Local: no broadcast, usable before the run starts."""
    return None if trainer.fast_dev_run else Path(_local_run_dir(trainer))


def remove_unused_run_dir(d: Path | None, trainer: pl.Trainer) -> bool:
    """After a failed run: remove its directory ``d`` (which did not exist before the run) if it holds nothing
    the run produced (:func:`is_unused`), so no ``version_N/`` with only config.yaml is left. Rank 0 only;
    never raises (the run's own error is the one to report). Returns whether it removed the directory."""
    if d is None or not trainer.is_global_zero or not d.is_dir():
        return False
    try:
        if is_unused(d):
            shutil.rmtree(d)
            return True
    except OSError:
        pass
    return False
