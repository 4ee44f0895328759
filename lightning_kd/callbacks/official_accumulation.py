"""Gradient accumulation and clipping exactly as the official DMD code does it (mdswyz/DMD,
``trains/singleTask/DMD.py``, ``do_train``):

* each mini-batch loss is back-propagated as is (``combined_loss.backward()``, l. 177): gradients are SUMMED
  over the accumulation group, not averaged;
* ``clip_grad_value_(params, grad_clip)`` runs after EVERY backward (l. 180-184), so the running sum is
  clipped again after each batch;
* ``optimizer.step()`` every ``update_epochs`` (10) batches (l. 190-192); the step after the loop
  (l. 193-195) never runs (``left_epochs`` was just reset to 10 or is non-zero), and the next epoch's
  ``zero_grad`` (l. 72-73) discards the gradient of the last partial group: it is DROPPED.

Lightning's ``accumulate_grad_batches`` + ``gradient_clip_val`` instead divides every loss by the group
size, clips once before the step and steps on the partial group.
"""

from __future__ import annotations

from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.utilities import rank_zero_warn

from lightning_kd.checkpoint import ConfigError

__all__ = ["SummedAccumulationClipping"]


class SummedAccumulationClipping(Callback):
    """Official-DMD accumulation on top of Lightning's automatic optimisation.

    The group size is the trainer's ``accumulate_grad_batches`` (so Lightning still schedules the steps
    and skips the DDP gradient sync on non-step batches). Lightning divides each loss by the group size
    ``N``, so ``p.grad`` holds ``sum / N``; clipping ``sum`` at ``c`` is clipping ``p.grad`` at ``c / N``,
    done after every backward, and ``p.grad`` is multiplied by ``N`` before the step: the optimiser sees
    the official summed, repeatedly clipped gradient (equal up to float rounding). With
    ``drop_last_partial`` a group shorter than ``N`` (the end of an epoch) has its gradient discarded:
    every gradient is set to ``None``, so Adam changes neither the weights nor its state (Lightning's
    ``global_step`` still counts that call, so ``max_steps`` / ``log_every_n_steps`` count it too). Under DDP each rank clips its own running sum; on the step
    batch the all-reduce averages the ranks' sums before the last clip.

    Do not also set ``trainer.gradient_clip_val`` (it would clip a second time); fp16 with a gradient
    scaler is refused (the gradients seen after backward are scaled). bf16 / fp32 are supported.

    Args:
        clip_value: ``clip_grad_value_`` threshold on the summed gradient (official: ``grad_clip`` 0.6).
        drop_last_partial: discard the last partial group of an epoch (official), instead of stepping on it.
        track_stats: count the clipped gradient entries (:attr:`clipped_fraction`; benchmarks/dmd_clipping.py).
            Off by default: the count is three small ops per parameter tensor after every backward, ~10 ms of a
            ~270 ms DMD training batch on 2 CPU cores (the clip itself is one foreach op, ~2 ms).
    """

    def __init__(self, clip_value: float = 0.6, drop_last_partial: bool = True, track_stats: bool = False) -> None:
        super().__init__()
        if not clip_value > 0:
            raise ConfigError(f"SummedAccumulationClipping: clip_value must be > 0, got {clip_value}")
        self.clip_value = float(clip_value)
        self.drop_last_partial = drop_last_partial
        self.track_stats = track_stats
        self._pending = 0  # backwards since the last step
        self.reset_stats()

    # -- statistics (read by benchmarks; kept on the device, no sync per batch) -----------------------
    def reset_stats(self) -> None:
        """Zero the clipping counters (entries clipped / seen, over every clip and over the last clip of
        each step), and the step / dropped-group counts."""
        self._stats: dict[str, Any] = {"clipped_all": 0, "seen_all": 0, "clipped_step": 0, "seen_step": 0}
        self._last: tuple[Any, int] = (0, 0)  # (clipped, seen) of the latest clip
        self.steps = 0
        self.dropped = 0

    @property
    def clipped_fraction(self) -> dict[str, float]:
        """``{"every_backward": f, "at_step": f}``: fraction of gradient entries clipped over every clip,
        and in the last clip before each real step (the one Lightning's single clip corresponds to).
        Needs ``track_stats=True``."""
        if not self.track_stats:
            raise RuntimeError("SummedAccumulationClipping(track_stats=False) counts nothing: construct it with "
                               "track_stats=True (or set `cb.track_stats = True` before fit) to read clipped_fraction")
        s = {k: float(v) for k, v in self._stats.items()}
        return {"every_backward": s["clipped_all"] / max(s["seen_all"], 1),
                "at_step": s["clipped_step"] / max(s["seen_step"], 1)}

    # -- hooks -------------------------------------------------------------------------------------
    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if stage != "fit":
            return
        if trainer.gradient_clip_val:
            raise ConfigError(
                f"trainer.gradient_clip_val={trainer.gradient_clip_val} clips a second time: remove it (and "
                "gradient_clip_algorithm) when SummedAccumulationClipping is among the callbacks")
        if getattr(trainer.precision_plugin, "scaler", None) is not None:
            raise ConfigError(
                f"SummedAccumulationClipping cannot clip fp16-scaled gradients (trainer.precision="
                f"{trainer.precision}); use bf16-mixed or 32-true")

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        n, batches = trainer.accumulate_grad_batches, trainer.num_training_batches
        if self.drop_last_partial and batches < n:
            rank_zero_warn(f"SummedAccumulationClipping: an epoch has {batches} training batches, fewer than "
                           f"accumulate_grad_batches={n}, so every group is dropped and nothing trains; lower "
                           "trainer.accumulate_grad_batches or set drop_last_partial: false")

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._pending = 0  # Lightning zeroes the gradients at the first batch of every epoch

    def _params(self, trainer: pl.Trainer) -> list[torch.Tensor]:
        return [p for opt in trainer.optimizers for g in opt.param_groups for p in g["params"] if p.grad is not None]

    def on_after_backward(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._pending += 1
        n = trainer.accumulate_grad_batches
        limit = self.clip_value / n
        params = self._params(trainer)
        grads = [p.grad for p in params]
        if not grads:
            return
        if self.track_stats:
            clipped = sum(torch.count_nonzero(g.abs() > limit) for g in grads)
            seen = sum(g.numel() for g in grads)
            self._stats["clipped_all"] = self._stats["clipped_all"] + clipped
            self._stats["seen_all"] += seen
            self._last = (clipped, seen)
        torch.nn.utils.clip_grad_value_(params, limit, foreach=True)

    def on_before_optimizer_step(self, trainer: pl.Trainer, pl_module: pl.LightningModule, optimizer: Any) -> None:
        n = trainer.accumulate_grad_batches
        pending, self._pending = self._pending, 0
        if self.drop_last_partial and pending < n:
            for g in optimizer.param_groups:
                for p in g["params"]:
                    p.grad = None
            self.dropped += 1
            return
        self.steps += 1
        self._stats["clipped_step"] = self._stats["clipped_step"] + self._last[0]
        self._stats["seen_step"] += self._last[1]
        if n > 1:
            grads = [p.grad for g in optimizer.param_groups for p in g["params"] if p.grad is not None]
            torch._foreach_mul_(grads, float(n))
