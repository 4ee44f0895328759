"""The project's Trainer: Lightning's, plus the ``robustness`` evaluation as a CLI subcommand."""

from __future__ import annotations

from typing import Any

import lightning.pytorch as pl

from lightning_kd.robustness import DEFAULT_RATES, run_robustness


class KDTrainer(pl.Trainer):
    """``lightning.pytorch.Trainer`` with :meth:`robustness` (``lightning-kd robustness``)."""

    robustness_running: bool = False

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
