"""Saves the resolved config into the run's own directory (not a shared ``save_dir``), once the run starts."""

from __future__ import annotations

import lightning.pytorch as pl
from lightning.pytorch.cli import SaveConfigCallback

from lightning_kd.callbacks.run_dir import run_dir


class RunDirSaveConfig(SaveConfigCallback):
    """Writes ``config.yaml`` beside the run's checkpoints when the run really starts.

    Lightning's own callback writes to ``trainer.log_dir``, which for wandb is the shared save_dir,
    so runs would overwrite each other's config; here every run has its own directory. It is written at
    ``on_{fit,validation,test,predict}_start``, after the model's ``setup`` and the checkpoint restore,
    so a run refused there (a bad option, teacher or checkpoint) creates no directory; the directory of a
    run that fails later before producing anything is removed by the CLI
    (:func:`~lightning_kd.callbacks.run_dir.remove_unused_run_dir`). A smoke run (fast_dev_run) writes none.
    """

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        """Nothing yet: the config is written when the run starts (Lightning's callback writes it here)."""

    def _save(self, trainer: pl.Trainer) -> None:
        if self.already_saved or trainer.fast_dev_run:
            return
        d = run_dir(trainer)
        if trainer.is_global_zero:
            d.mkdir(parents=True, exist_ok=True)
            self.parser.save(self.config, str(d / self.config_filename), skip_none=False, overwrite=True,
                             multifile=self.multifile)
            self.already_saved = True
        self.already_saved = trainer.strategy.broadcast(self.already_saved)

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._save(trainer)

    def on_validation_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._save(trainer)

    def on_test_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._save(trainer)

    def on_predict_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._save(trainer)
