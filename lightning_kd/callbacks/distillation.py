"""Callbacks at points of the distillation life cycle, set in YAML and shared by methods.

``trainer.callbacks`` in a config::

    - class_path: lightning_kd.callbacks.DistillationStats      # per-epoch KD statistics -> log + CSV
    - class_path: lightning_kd.callbacks.RobustnessAfterFit     # missing-modality grid on the best checkpoint
      init_args: {rates: [0.0, 0.5, 1.0]}
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from typing import Any

import lightning.pytorch as pl
import torch

from lightning_kd.callbacks.run_dir import run_dir
from lightning_kd.distill.stats import DistillStats, Kind
from lightning_kd.io import atomic_write_text

__all__ = ["DistillationStats", "RobustnessAfterFit"]

STATS_CSV = "distillation_stats.csv"


def _stats_of(pl_module: pl.LightningModule) -> DistillStats | None:
    stats = getattr(pl_module, "distill_stats", None)
    return stats if isinstance(stats, DistillStats) else None


class DistillationStats(pl.Callback):
    """Log the method's :class:`~lightning_kd.distill.stats.DistillStats` once per training epoch and keep them in
    ``distillation_stats.csv`` (``epoch, name, value``) in the run directory, rewritten atomically each epoch.

    Means are over every value recorded in the epoch, counts are totals; under DDP both cover all processes (the
    accumulator is reduced with the strategy's ``reduce(..., "sum")`` after gathering every rank's names).
    Logged as ``<prefix><name>`` (default ``distill/kd/teacher_0``). A smoke run (``fast_dev_run``) writes no file.

    Args:
        prefix: prepended to each name in the logger.
        csv_file: write the CSV (False: log only).
    """

    def __init__(self, prefix: str = "distill/", csv_file: bool = True) -> None:
        self.prefix, self.csv_file = prefix, csv_file
        self.rows: list[dict[str, Any]] = []

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        stats = _stats_of(pl_module)
        if stats is not None:
            stats.reset()

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        stats = _stats_of(pl_module)
        if stats is None:
            return
        values = stats.compute(**self._reducers(trainer, pl_module))
        stats.reset()
        if values:
            pl_module.log_dict({f"{self.prefix}{k}": float(v) for k, v in values.items()}, on_step=False,
                               on_epoch=True, sync_dist=False)  # already reduced over processes
        epoch = trainer.current_epoch
        self.rows = [r for r in self.rows if r["epoch"] != epoch]
        self.rows += [{"epoch": epoch, "name": k, "value": v} for k, v in sorted(values.items())]
        if self.csv_file and not trainer.fast_dev_run:
            out = run_dir(trainer) / STATS_CSV  # every rank: run_dir broadcasts rank 0's choice
            if trainer.is_global_zero:
                self._write(out)

    @staticmethod
    def _reducers(trainer: pl.Trainer, pl_module: pl.LightningModule) -> dict[str, Any]:
        if trainer.world_size <= 1 or not torch.distributed.is_available() or not torch.distributed.is_initialized():
            return {}

        def gather_names(kinds: dict[str, Kind]) -> dict[str, Kind]:
            every: list[dict[str, Kind] | None] = [None] * trainer.world_size
            torch.distributed.all_gather_object(every, kinds)
            return {k: v for d in every for k, v in (d or {}).items()}

        return {"reduce_sum": lambda t: trainer.strategy.reduce(t, reduce_op="sum"), "gather_names": gather_names,
                "device": pl_module.device}

    def _write(self, path: Any) -> None:
        def write(f: Any) -> None:
            w = csv.DictWriter(f, fieldnames=["epoch", "name", "value"])
            w.writeheader()
            for r in self.rows:
                w.writerow({**r, "value": f"{r['value']:.8g}"})

        atomic_write_text(path, write)

    def state_dict(self) -> dict[str, Any]:
        return {"rows": list(self.rows)}  # a resumed run's CSV keeps the earlier epochs

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.rows = list(state_dict.get("rows", []))


class RobustnessAfterFit(pl.Callback):
    """When fit ends, run :func:`lightning_kd.robustness.run_robustness` on the best checkpoint (the first
    ``ModelCheckpoint``'s ``best_model_path``; the weights in memory when there is none), writing
    ``robustness.csv`` / ``.png`` into the fit's run directory.

    Args:
        rates: frame-drop rates (default: ``lightning_kd.robustness.DEFAULT_RATES``).
        settings: available-modality settings; None: the robustness module's default (all of them).
        seed: seed of the missingness (the same conditions for every checkpoint).
    """

    def __init__(self, rates: Sequence[float] | None = None, settings: Sequence[str] | None = None,
                 seed: int = 0) -> None:
        self.rates = None if rates is None else [float(r) for r in rates]
        self.settings = None if settings is None else list(settings)
        self.seed = seed

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        from lightning_kd.robustness import run_robustness

        if trainer.interrupted:
            return
        cb = trainer.checkpoint_callback
        ckpt = cb.best_model_path if cb is not None and not trainer.fast_dev_run and cb.best_model_path else None
        kwargs: dict[str, Any] = {"seed": self.seed}
        if self.rates is not None:
            kwargs["rates"] = self.rates
        if self.settings is not None:
            kwargs["settings"] = self.settings
        run_robustness(trainer, pl_module, trainer.datamodule, ckpt_path=ckpt, **kwargs)
