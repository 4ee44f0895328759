"""Shared LightningModule plumbing for sentiment-regression methods (DMD, the fusion baseline, ...).

A method subclasses :class:`SentimentRegressionModule`, builds its plain ``nn.Module`` in ``__init__``,
and implements :meth:`predict_scores` and :meth:`training_losses`. Evaluation, MMSA metrics, the
optimiser / scheduler of the DMD protocol, prediction rows and the checkpoint's method tag live here once.
"""

from __future__ import annotations

from abc import abstractmethod
from typing import Any, Literal

import lightning.pytorch as pl
import torch
import torch.nn.functional as F
from torch import Tensor
from torchmetrics import Metric

from lightning_kd.checkpoint import CHECKPOINT_KEY, CheckpointMismatchError
from lightning_kd.data.batch import Batch
from lightning_kd.metrics.sentiment import SentimentMetrics

class MethodModule(pl.LightningModule):
    """Base of every method's LightningModule: Adam + ReduceLROnPlateau on ``val/loss``, checkpoint tag.

    Args:
        lr: Adam learning rate.
        weight_decay: Adam weight decay.
        lr_factor / lr_patience: ``ReduceLROnPlateau`` on ``val/loss``.
    """

    def __init__(self, lr: float = 1e-4, weight_decay: float = 0.0, lr_factor: float = 0.5, lr_patience: int = 5) -> None:
        super().__init__()
        self.lr, self.weight_decay = lr, weight_decay
        self.lr_factor, self.lr_patience = lr_factor, lr_patience

    # -- evaluation: subclasses set ``val_metrics`` / ``test_metrics`` and implement ``_eval_step`` --------
    @abstractmethod
    def _eval_step(self, batch: Batch, stage: str, metrics: Metric) -> None:
        """Log ``<stage>/loss`` for the batch and update ``metrics`` (each method defines its loss and metrics)."""

    def _eval_epoch_end(self, stage: str, metrics: Metric) -> None:
        self.log_dict({f"{stage}/{k}": v.float() for k, v in metrics.compute().items()})
        metrics.reset()

    def validation_step(self, batch: Batch, batch_idx: int) -> None:
        self._eval_step(batch, "val", self.val_metrics)

    def on_validation_epoch_end(self) -> None:
        self._eval_epoch_end("val", self.val_metrics)

    def test_step(self, batch: Batch, batch_idx: int) -> None:
        self._eval_step(batch, "test", self.test_metrics)

    def on_test_epoch_end(self) -> None:
        self._eval_epoch_end("test", self.test_metrics)

    # -- optimisation (DMD protocol: Adam + ReduceLROnPlateau on validation L1) ------------------
    def configure_optimizers(self) -> Any:
        params = [p for p in self.parameters() if p.requires_grad]
        opt = torch.optim.Adam(params, lr=self.lr, weight_decay=self.weight_decay, foreach=True)
        sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, mode="min", factor=self.lr_factor,
                                                           patience=self.lr_patience)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "monitor": "val/loss", "interval": "epoch"}}

    # -- checkpoints say which method wrote them --------------------------------------------------
    @classmethod
    def method_name(cls) -> str:
        return f"{cls.__module__}.{cls.__qualname__}"

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        import lightning_kd

        checkpoint[CHECKPOINT_KEY] = {"method": self.method_name(), "version": lightning_kd.__version__}

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        path = getattr(self._trainer, "ckpt_path", None) if self._trainer is not None else None
        self.check_checkpoint_tag(checkpoint.get(CHECKPOINT_KEY), f"checkpoint {path}" if path else "the checkpoint")

    @classmethod
    def check_checkpoint_tag(cls, tag: dict[str, Any] | None, where: str) -> None:
        """Raise :class:`CheckpointMismatchError` unless ``tag`` (a checkpoint's ``lightning_kd`` entry) names
        this method; ``where`` names the checkpoint in the message."""
        if tag is None:
            raise CheckpointMismatchError(
                f"{where} was not written by lightning_kd (no '{CHECKPOINT_KEY}' entry); "
                f"pass a checkpoint trained with `lightning-kd fit` for {cls.method_name()}.")
        if tag.get("method") != cls.method_name():
            raise CheckpointMismatchError(
                f"{where} holds a {tag.get('method')} model, but the config builds {cls.method_name()}; "
                "use the config of the method that wrote the checkpoint (its run directory has config.yaml), "
                "or pass a checkpoint of this method.")


class SentimentRegressionModule(MethodModule):
    """Base for modules that regress one sentiment score per sample.

    Args:
        lr: Adam learning rate.
        weight_decay: Adam weight decay.
        lr_factor / lr_patience: ``ReduceLROnPlateau`` on ``val/loss`` (validation L1).
        metric_scheme: "mmsa" (MOSI/MOSEI rules) or "sims" (CH-SIMS rules).
    """

    def __init__(
        self,
        lr: float = 1e-4,
        weight_decay: float = 0.0,
        lr_factor: float = 0.5,
        lr_patience: int = 5,
        metric_scheme: Literal["mmsa", "sims"] = "mmsa",
    ) -> None:
        super().__init__(lr, weight_decay, lr_factor, lr_patience)
        self.val_metrics = SentimentMetrics(metric_scheme)
        self.test_metrics = SentimentMetrics(metric_scheme)

    # -- to implement ---------------------------------------------------------------------------
    @abstractmethod
    def predict_scores(self, batch: Batch) -> Tensor:
        """Sentiment scores ``(B,)`` for a batch (eval path)."""

    @abstractmethod
    def training_losses(self, batch: Batch) -> dict[str, Tensor]:
        """Every loss term of one training step; ``"loss"`` is the total that is optimised."""

    # -- training -------------------------------------------------------------------------------
    def training_step(self, batch: Batch, batch_idx: int) -> Tensor:
        terms = self.training_losses(batch)
        self.log_dict({f"train/{k}": v.detach().float() for k, v in terms.items() if v.ndim == 0},
                      on_step=False, on_epoch=True, batch_size=len(batch))
        return terms["loss"]

    def _eval_step(self, batch: Batch, stage: str, metrics: SentimentMetrics) -> None:
        pred = self.predict_scores(batch).float()
        target = batch.target.float()
        self.log(f"{stage}/loss", F.l1_loss(pred, target), on_step=False, on_epoch=True,
                 batch_size=len(batch), sync_dist=True)
        metrics.update(pred, target)

    def predict_step(self, batch: Batch, batch_idx: int) -> dict[str, Tensor]:
        return {"index": batch.index, "prediction": self.predict_scores(batch).float(), "target": batch.target}

    def forward(self, batch: Batch) -> Tensor:
        return self.predict_scores(batch)
