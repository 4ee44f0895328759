"""Per-epoch modality rebalancing coefficients (PMR: Fan et al., CVPR 2023, Sec. 3; used by CDGKD, IJCAI 2025).

During an epoch the module accumulates, per modality ``m``, ``S_m = sum_i p^m(y_i | x_i)``: the true-class
probabilities of a modality-specific classifier (CDGKD: the prototype softmax of that modality's embedding). At the
end of the epoch this callback sets the coefficient of each modality's extra loss term for the next epoch:

    rho = S_1 / S_2;  rho < 1 (modality 1 lags):  coef_1 = clip(1/rho - 1, 0, 1), coef_2 = 0
                      rho >= 1:                     coef_1 = 0,                 coef_2 = clip(rho - 1, 0, 1)

which is PMR's rule (CDGKD: ``beta`` = face, ``gamma`` = EEG). With more than two modalities we use
``coef_m = clip(max_{n != m} S_n / S_m - 1, 0, 1)``: every modality is pushed by how far it trails the
strongest one; for two modalities this is exactly the rule above. The coefficients start at 0 (the first epoch
trains without the extra terms, as in PMR).

A module that works with this callback implements :class:`Rebalanceable`. The callback's state (the current
coefficients) is saved in checkpoints, so a resumed run continues with the coefficients it had; they are logged
every epoch as ``rebalance/<modality>``, with each modality's mean true-class probability as
``rebalance/p_<modality>``. A module that reports no modality (a one-modality model, e.g. a CDGKD student) is
left alone, so one run policy can carry the callback for every stage of a chain. Sums are all-reduced across
DDP ranks before the rule is applied.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import Callback

from lightning_kd.checkpoint import ConfigError

__all__ = ["ModalityRebalancing", "Rebalanceable", "rebalance_coefficients"]


@runtime_checkable
class Rebalanceable(Protocol):
    """What :class:`ModalityRebalancing` needs from a LightningModule."""

    def true_class_prob_sums(self) -> dict[str, tuple[float, int]]:
        """Modality -> ``(sum of p^m(true class), number of samples)`` since the last reset."""

    def reset_true_class_probs(self) -> None:
        """Start a new accumulation (called at every training-epoch start)."""

    def set_rebalance_coefficients(self, coefficients: Mapping[str, float]) -> None:
        """Use these per-modality coefficients from now on."""


def rebalance_coefficients(sums: Mapping[str, float]) -> dict[str, float]:
    """Modality -> coefficient from the summed true-class probabilities (the module docstring's rule).

    Raises:
        ValueError: fewer than two modalities, or a sum that is not positive and finite.
    """
    if len(sums) < 2:
        raise ValueError(f"rebalancing needs at least two modalities, got {list(sums)}")
    bad = {m: s for m, s in sums.items() if not (s > 0 and s < float("inf"))}
    if bad:
        raise ValueError(f"summed true-class probabilities must be positive and finite, got {bad}")
    out = {}
    for m, s in sums.items():
        strongest = max(v for n, v in sums.items() if n != m)
        out[m] = min(max(strongest / s - 1.0, 0.0), 1.0)
    return out


class ModalityRebalancing(Callback):
    """Set per-modality loss coefficients once per epoch from the module's accumulated true-class probabilities.

    Args:
        modalities: the modalities to balance, as the module names them (CDGKD: ``[face, eeg]``).
        initial: starting coefficient of every modality (0, as PMR).
    """

    def __init__(self, modalities: Sequence[str] = ("face", "eeg"), initial: float = 0.0) -> None:
        super().__init__()
        if len(modalities) < 2 or len(set(modalities)) != len(modalities):
            raise ConfigError(f"ModalityRebalancing needs at least two distinct modalities, got {list(modalities)}")
        self.modalities = tuple(modalities)
        self.coefficients: dict[str, float] = dict.fromkeys(self.modalities, float(initial))
        self._updated_epoch: int | None = None
        self._mean_prob: dict[str, float] = {}

    @property
    def state_key(self) -> str:
        return self._generate_state_key(modalities=list(self.modalities))

    def _module(self, pl_module: pl.LightningModule) -> Rebalanceable:
        if not isinstance(pl_module, Rebalanceable):
            raise ConfigError(f"ModalityRebalancing: {type(pl_module).__name__} does not accumulate per-modality "
                              "true-class probabilities; remove the callback or use a method that supports it "
                              "(e.g. lightning_kd.methods.cdgkd.CDGKD with a two-modality role)")
        return pl_module

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        module = self._module(pl_module)
        module.reset_true_class_probs()
        if module.true_class_prob_sums():  # inert on a one-modality model
            module.set_rebalance_coefficients(dict(self.coefficients))

    def on_validation_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # validation at the end of a training epoch runs before on_train_epoch_end, and a checkpoint may be
        # written when it ends: update first, so that checkpoint resumes with the next epoch's coefficients
        progress = trainer.fit_loop.epoch_loop.batch_progress
        if trainer.training or trainer.sanity_checking or trainer.state.fn != "fit" or not progress.is_last_batch:
            return
        self._update(trainer, pl_module)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._update(trainer, pl_module)
        if not self._module(pl_module).true_class_prob_sums():
            return
        for m in self.modalities:
            pl_module.log(f"rebalance/{m}", self.coefficients[m], on_epoch=True)
            if m in self._mean_prob:
                pl_module.log(f"rebalance/p_{m}", self._mean_prob[m], on_epoch=True)

    def _update(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Apply the rule to this epoch's sums (once per epoch)."""
        if self._updated_epoch == trainer.current_epoch:
            return
        self._updated_epoch = trainer.current_epoch
        module = self._module(pl_module)
        acc = module.true_class_prob_sums()
        if not acc:  # a one-modality model (e.g. a CDGKD student) has nothing to rebalance: the callback is inert
            return
        missing = [m for m in self.modalities if m not in acc]
        if missing:
            raise ConfigError(f"ModalityRebalancing: {type(pl_module).__name__} reports modalities {sorted(acc)}, "
                              f"not {missing}; set the callback's init_args.modalities to those it has")
        stats = torch.tensor([[acc[m][0], acc[m][1]] for m in self.modalities], dtype=torch.float64,
                             device=pl_module.device)
        stats = trainer.strategy.reduce(stats, reduce_op="sum")
        self._mean_prob = {m: float(stats[i, 0] / stats[i, 1]) for i, m in enumerate(self.modalities)
                           if float(stats[i, 1]) > 0}
        if len(self._mean_prob) == len(self.modalities):
            self.coefficients = rebalance_coefficients(
                {m: float(stats[i, 0]) for i, m in enumerate(self.modalities)})
        module.set_rebalance_coefficients(dict(self.coefficients))

    def state_dict(self) -> dict[str, Any]:
        return {"coefficients": dict(self.coefficients)}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        restored = dict(state_dict.get("coefficients", {}))
        if set(restored) != set(self.modalities):
            raise ConfigError(f"ModalityRebalancing: the checkpoint holds coefficients for {sorted(restored)}, the "
                              f"config balances {list(self.modalities)}; use the same modalities to resume")
        self.coefficients = {m: float(restored[m]) for m in self.modalities}
