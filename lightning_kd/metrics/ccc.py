"""Concordance correlation coefficient (CCC) of valence / arousal predictions, as the ABAW / AVEC challenges score it.

Per dimension, with POPULATION (biased, ``1 / N``) statistics over every frame / sample of the split::

    CCC = 2 cov(x, y) / (var(x) + var(y) + (mean(x) - mean(y))^2)

(Lin 1989; the ABAW VA track's metric, its mean over valence and arousal ranking the entries). Keys
:data:`CCC_KEYS`: ``ccc_valence``, ``ccc_arousal``, ``ccc_mean``.

The statistics are accumulated by torchmetrics' :class:`~torchmetrics.regression.ConcordanceCorrCoef` (streaming
Welford updates; merged across DDP processes by its parallel-variance aggregation). Its own ``compute`` divides the
variances and the covariance by ``N - 1`` but not the squared mean difference, i.e. ``2 s_xy / (s_x^2 + s_y^2 +
(mu_x - mu_y)^2)`` with unbiased ``s``: it equals the challenge's value only when the means agree, and is larger by
a factor up to ``N / (N - 1)`` otherwise. :class:`ValenceArousalCCC` therefore evaluates the population form above
from the same accumulated sums (tests/test_metrics_ccc.py checks both against the closed forms).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor
from torchmetrics.regression import ConcordanceCorrCoef
from torchmetrics.regression.pearson import _final_aggregation

__all__ = ["CCC_KEYS", "DIMENSIONS", "ValenceArousalCCC", "ccc", "valence_arousal_ccc"]

DIMENSIONS = ("valence", "arousal")
CCC_KEYS = ("ccc_valence", "ccc_arousal", "ccc_mean")


def ccc(preds: Tensor, target: Tensor) -> Tensor:
    """Closed-form population CCC per column of ``(N, D)`` (or ``(N,)``) predictions and targets: ``(D,)`` float64
    (NaN for ``N = 0`` or when both columns are constant and equal)."""
    x = torch.as_tensor(preds).detach().double().reshape(len(preds), -1)
    y = torch.as_tensor(target).detach().double().reshape(len(target), -1).to(x.device)
    if x.shape != y.shape:
        raise ValueError(f"preds {tuple(x.shape)} and target {tuple(y.shape)} must have the same shape")
    mx, my = x.mean(0), y.mean(0)
    cov = ((x - mx) * (y - my)).mean(0)
    return 2 * cov / (x.var(0, correction=0) + y.var(0, correction=0) + (mx - my) ** 2)


def valence_arousal_ccc(preds: Tensor, target: Tensor, names: Sequence[str] = DIMENSIONS) -> dict[str, float]:
    """``{ccc_<name>: ..., ccc_mean: ...}`` of ``(N, len(names))`` predictions and targets (closed form, floats)."""
    values = ccc(preds, target).tolist()
    if len(values) != len(names):
        raise ValueError(f"got {len(values)} columns for dimensions {list(names)}")
    out = {f"ccc_{n}": float(v) for n, v in zip(names, values)}
    out["ccc_mean"] = float(sum(values) / len(values))
    return out


class ValenceArousalCCC(ConcordanceCorrCoef):
    """Epoch-level challenge CCC per dimension and their mean: ``update(preds (B, D), target (B, D))``,
    ``compute() -> {ccc_<name>: ..., ccc_mean: ...}`` (0-d float tensors, float32 on MPS, else float64 where the
    states are).

    The states are torchmetrics' (``dist_reduce_fx=None``, merged in :meth:`compute`) and non-persistent, so they
    never enter a checkpoint; they are float64 (sums of squares over a whole split). Before any :meth:`update` every
    value is NaN.
    """

    def __init__(self, names: Sequence[str] = DIMENSIONS) -> None:
        super().__init__(num_outputs=len(names))
        self.names = tuple(names)
        self.set_dtype(torch.float64)  # sums of squares over a whole split

    @property
    def keys(self) -> tuple[str, ...]:
        return (*(f"ccc_{n}" for n in self.names), "ccc_mean")

    def update(self, preds: Tensor, target: Tensor) -> None:
        """Accumulate a batch of ``(B, D)`` predictions and targets (detached; float)."""
        d = len(self.names)
        preds, target = torch.as_tensor(preds).detach(), torch.as_tensor(target).detach()
        if preds.ndim != 2 or preds.shape != target.shape or preds.shape[1] != d:
            raise ValueError(f"preds and target must both be (B, {d}) for {list(self.names)}, got "
                             f"{tuple(preds.shape)} and {tuple(target.shape)}")
        super().update(preds.to(self.mean_x.dtype), target.to(self.mean_x.dtype))

    def compute(self) -> dict[str, Tensor]:
        if self.mean_x.ndim > 1:  # states of several processes: torchmetrics' parallel aggregation
            mx, my, _, _, vx, vy, cxy, n = _final_aggregation(self.mean_x, self.mean_y, self.max_abs_dev_x,
                                                              self.max_abs_dev_y, self.var_x, self.var_y,
                                                              self.corr_xy, self.n_total)
        else:
            mx, my, vx, vy, cxy, n = self.mean_x, self.mean_y, self.var_x, self.var_y, self.corr_xy, self.n_total
        n = n.double()
        nan = torch.full_like(n, float("nan"))
        value = torch.where(n > 0, 2 * cxy.double() / (vx.double() + vy.double() + n * (mx - my).double() ** 2), nan)
        dtype = torch.float32 if self.device.type == "mps" else torch.float64
        out = {f"ccc_{name}": value[i].to(dtype) for i, name in enumerate(self.names)}
        out["ccc_mean"] = value.mean().to(dtype)
        return out
