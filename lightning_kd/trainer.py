"""The project's Trainer: Lightning's, plus the ``robustness`` evaluation as a CLI subcommand and checkpoints
streamed to disk."""

from __future__ import annotations

from typing import Any

import lightning.pytorch as pl
import torch
from lightning.fabric.utilities.types import _PATH
from lightning.pytorch.plugins.io import TorchCheckpointIO

from lightning_kd.io import atomic_write_binary
from lightning_kd.robustness import DEFAULT_RATES, run_robustness


class StreamingCheckpointIO(TorchCheckpointIO):
    """Lightning's checkpoint writer without its in-memory copy: a local checkpoint is ``torch.save``-d straight
    into a temporary file next to the target, fsync-ed and renamed over it (:func:`~lightning_kd.io.atomic_write_binary`:
    a killed or failed save leaves neither a half-written checkpoint nor its temporary file).

    Lightning's ``TorchCheckpointIO`` serialises the whole checkpoint into a ``BytesIO`` and writes
    ``getvalue()``, a second copy: at every save, the process holds the checkpoint's size twice on top of
    training (+51 MiB at DMD's first save on MOSI-shaped data, the peak of the run; benchmarks/dmd_bench.py).
    Remote paths (``s3://`` ...) keep Lightning's writer.
    """

    def save_checkpoint(self, checkpoint: dict[str, Any], path: _PATH, storage_options: Any | None = None) -> None:
        if storage_options is not None or "://" in str(path):  # a URL, even file://: Lightning's fsspec writer
            return super().save_checkpoint(checkpoint, path, storage_options)
        atomic_write_binary(path, lambda f: torch.save(checkpoint, f))


class KDTrainer(pl.Trainer):
    """``lightning.pytorch.Trainer`` with :meth:`robustness` (``lightning-kd robustness``); its checkpoints are
    written by :class:`StreamingCheckpointIO` unless ``plugins`` names another ``CheckpointIO``."""

    robustness_running: bool = False

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if type(self.strategy.checkpoint_io) is TorchCheckpointIO:
            self.strategy.checkpoint_io = StreamingCheckpointIO()

    def robustness(
        self,
        model: pl.LightningModule,
        datamodule: pl.LightningDataModule,
        ckpt_path: str | None = None,
        rates: list[float] = list(DEFAULT_RATES),  # noqa: B006 - read-only default, shown by --help
        settings: list[str] | None = None,
        seed: int = 0,
        weights_only: bool | None = None,
    ) -> list[dict[str, Any]]:
        """Test a checkpoint over the missing-rate grid x modality settings; write robustness.csv/.png.

        Args:
            model: the model (its weights come from ``ckpt_path``).
            datamodule: a lightning_kd datamodule (its ``eval_missing`` is set per condition).
            ckpt_path: checkpoint to evaluate (any trained sentiment method).
            rates: frame-drop rates p (default 0.0, 0.1, ..., 1.0).
            settings: available-modality settings: names joined by ``+`` (``eeg+face``, ``face``) or, for text /
                audio / vision, the letters l, a, v (``lav``, ``lv``); default: every non-empty subset of the
                datamodule's modalities, the complete set last (l, a, v, la, lv, av, lav on text/audio/vision).
            seed: seed of the (counter-based) drop masks; the same seed gives the same conditions.
            weights_only: passed to ``torch.load`` as in ``test`` (lets a run's saved config.yaml be reused).
        """
        return run_robustness(self, model, datamodule, ckpt_path, rates, settings, seed, weights_only)
