"""Shared LightningModule plumbing for the methods (DMD, the fusion baseline, CorrKD, ...).

A method subclasses :class:`SentimentRegressionModule` (or :class:`MethodModule`), builds its plain
``nn.Module`` in ``__init__``, and implements :meth:`~MethodModule.training_losses` (the base's
``training_step`` logs its terms and optimises ``"loss"``) and :meth:`predict_scores` (or, on
:class:`MethodModule`, ``_eval_step``).
Evaluation, MMSA metrics, the optimiser / scheduler of the DMD protocol, prediction rows, the
checkpoint's method tag and the options mechanism below live here once.

Hyper-parameters are declared once, in a frozen dataclass of options per network and per objective
(``DMDNetOptions``, ``DMDLossOptions``, ...), next to the ``nn.Module`` that uses it. The module takes
them as one argument each (``net``, ``loss``), so a config reads ``model.init_args.net: {hidden: 50,
...}``, the CLI accepts ``--model.init_args.net.hidden 8`` and ``--print_config`` lists every field with
its default. Why options and not an injected ``nn.Module`` (``class_path`` under ``model.init_args.net``):

- the network's sizes depend on the data (``feature_dims``, ``seq_lens``), which the CLI links from the
  datamodule at instantiation. With an injected network the link would have to reach into a nested
  class the user could swap for one without those parameters; with options the module receives the
  dims as today and builds the network itself, so configs never repeat them;
- a checkpoint must rebuild without the config (``DMD.load_from_checkpoint(path)``, the teacher loader)
  and is read with ``torch.load(weights_only=True)``: its hyper-parameters must be plain data. Options
  are stored as plain dicts (:meth:`MethodModule.save_options`); an injected module would be pickled as
  an object, or need jsonargparse and its ``class_path`` to come back;
- each method's architecture is fixed by its paper: what a user changes is numbers, not classes.

The options helpers live in :mod:`lightning_kd.options` (plain nn.Modules use them too);
:func:`~lightning_kd.options.options` turns what the module receives (an instance, the dict a checkpoint or config holds,
or ``None`` for the defaults) into the dataclass and refuses unknown names with one line.
"""

from __future__ import annotations

from abc import abstractmethod
from typing import Any, Literal

import lightning.pytorch as pl
import torch
import torch.nn.functional as F
from torch import Tensor
from torchmetrics import Metric

from lightning_kd.checkpoint import CHECKPOINT_KEY, CheckpointMismatchError, ConfigError
from lightning_kd.data.batch import Batch
from lightning_kd.metrics.sentiment import SentimentMetrics
from lightning_kd.options import plain


class MethodModule(pl.LightningModule):
    """Base of every method's LightningModule: the training step (logs every term of :meth:`training_losses`),
    evaluation hooks, Adam (+ optional ReduceLROnPlateau on ``val/loss``), the checkpoint tag.

    Args:
        lr: Adam learning rate.
        weight_decay: Adam weight decay.
        lr_factor / lr_patience: ``ReduceLROnPlateau`` on ``val/loss`` (used only with ``lr_scheduler="plateau"``).
        lr_scheduler: ``"plateau"`` (ReduceLROnPlateau, the DMD protocol) or ``"none"`` (plain Adam, constant lr).
    """

    def __init__(self, lr: float = 1e-4, weight_decay: float = 0.0, lr_factor: float = 0.5, lr_patience: int = 5,
                 lr_scheduler: Literal["plateau", "none"] = "plateau") -> None:
        super().__init__()
        if lr_scheduler not in ("plateau", "none"):
            raise ConfigError(f"model.init_args.lr_scheduler must be 'plateau' or 'none', got {lr_scheduler!r}")
        self.lr, self.weight_decay = lr, weight_decay
        self.lr_factor, self.lr_patience, self.lr_scheduler = lr_factor, lr_patience, lr_scheduler

    def save_options(self, **groups: Any) -> None:
        """Store option dataclasses in ``hparams`` as plain dicts (after ``save_hyperparameters()``), so a
        checkpoint's hyper-parameters load with ``weights_only=True`` and rebuild the module without a config."""
        for name, value in groups.items():
            self.hparams[name] = plain(value)

    # -- training: subclasses implement ``training_losses`` ------------------------------------------
    @abstractmethod
    def training_losses(self, batch: Batch) -> dict[str, Tensor]:
        """Every loss term of one training step; ``"loss"`` is the total that is optimised."""

    def training_step(self, batch: Batch, batch_idx: int) -> Tensor:
        """Log every scalar term of :meth:`training_losses` as ``train/<name>`` and return ``loss``.

        The logged values are epoch means over every process (``sync_dist``: one reduction per term at the epoch
        end), so under DDP ``metrics.csv`` holds the whole epoch's means, not rank 0's share of the batches."""
        terms = self.distillation_terms(batch, self.training_losses(batch))
        self.log_dict({f"train/{k}": v.detach().float() for k, v in terms.items() if v.ndim == 0},
                      on_step=False, on_epoch=True, batch_size=len(batch), sync_dist=True)
        return terms["loss"]

    def distillation_terms(self, batch: Batch, terms: dict[str, Tensor]) -> dict[str, Tensor]:
        """Extension point for options that add terms to any method's objective (e.g.
        :class:`~lightning_kd.distill.logit_kd.LogitKDMixin`); receives :meth:`training_losses`' terms, returns the
        terms to log and optimise. Default: unchanged."""
        return terms

    # -- evaluation: subclasses set ``val_metrics`` / ``test_metrics`` and implement ``_eval_step`` --------
    @abstractmethod
    def _eval_step(self, batch: Batch, stage: str, metrics: Metric) -> None:
        """Log ``<stage>/loss`` for the batch and update ``metrics`` (each method defines its loss and metrics)."""

    def _eval_epoch_end(self, stage: str, metrics: Metric) -> None:
        # torchmetrics' compute() already gathered every process's states, so the values are equal on every rank;
        # sync_dist averages equal numbers (a no-op) and spares Lightning's "use sync_dist" warning per metric
        self.log_dict({f"{stage}/{k}": v.float() for k, v in metrics.compute().items()}, sync_dist=True)
        metrics.reset()

    def validation_step(self, batch: Batch, batch_idx: int) -> None:
        self._eval_step(batch, "val", self.val_metrics)

    def on_validation_epoch_end(self) -> None:
        self._eval_epoch_end("val", self.val_metrics)

    def test_step(self, batch: Batch, batch_idx: int) -> None:
        self._eval_step(batch, "test", self.test_metrics)

    def on_test_epoch_end(self) -> None:
        self._eval_epoch_end("test", self.test_metrics)

    # -- optimisation (DMD protocol: Adam + ReduceLROnPlateau on validation L1; or plain Adam) -----
    def configure_optimizers(self) -> Any:
        params = [p for p in self.parameters() if p.requires_grad]
        opt = torch.optim.Adam(params, lr=self.lr, weight_decay=self.weight_decay, foreach=True)
        if self.lr_scheduler == "none":
            return opt
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
