"""Saves the resolved config into the run's own directory (not a shared ``save_dir``)."""

from __future__ import annotations

import lightning.pytorch as pl
from lightning.pytorch.cli import SaveConfigCallback

from lightning_kd.callbacks.run_dir import run_dir


class RunDirSaveConfig(SaveConfigCallback):
    """Writes ``config.yaml`` beside the run's checkpoints.

    Lightning's own callback writes to ``trainer.log_dir``, which for wandb is the shared save_dir,
    so runs would overwrite each other's config; here every run has its own directory.
    """

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if self.already_saved or trainer.fast_dev_run:  # a smoke run keeps no files (Lightning logs nothing either)
            return
        d = run_dir(trainer)
        if trainer.is_global_zero:
            d.mkdir(parents=True, exist_ok=True)
            self.parser.save(self.config, str(d / self.config_filename), skip_none=False, overwrite=True,
                             multifile=self.multifile)
            self.already_saved = True
        self.already_saved = trainer.strategy.broadcast(self.already_saved)
