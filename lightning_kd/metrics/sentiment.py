"""Sentiment-regression metrics that follow the MMSA ``MetricsTop`` rules exactly.

Two schemes, matching MMSA's ``__eval_mosei_regression`` (CMU-MOSI / CMU-MOSEI) and
``__eval_sims_regression`` (CH-SIMS), so numbers compare with published tables:

* ``"mmsa"`` -> :data:`MMSA_KEYS`: ``Has0_acc_2`` / ``Has0_F1_score`` (truth >= 0 vs pred >= 0 on all
  samples), ``Non0_acc_2`` / ``Non0_F1_score`` (samples with truth == 0 dropped, truth > 0 vs pred > 0),
  ``Mult_acc_5`` / ``Mult_acc_7`` (clip to [-2, 2] / [-3, 3], round half to even, compare), ``MAE`` on the
  unclipped values and Pearson ``Corr``.
* ``"sims"`` -> :data:`SIMS_KEYS`: clip to [-1, 1], then ``Mult_acc_2`` (bins [-1, 0], (0, 1]), ``F1_score``
  on those two bins, ``Mult_acc_3`` (cuts -0.1, 0.1), ``Mult_acc_5`` (cuts -0.7, -0.1, 0.1, 0.7); every bin
  is ``(lo, hi]`` except the first, which includes -1. ``MAE`` and ``Corr`` on the clipped values.

All F1 scores are scikit-learn's ``average="weighted"`` F1: per-class F1 ``2tp / (2tp + fp + fn)`` over the
classes present in truth or prediction, averaged with the truth support as weight.

The primitives are torchmetrics' functional API: class counts from ``multiclass_stat_scores`` (divided in
float64 by :mod:`lightning_kd.metrics.label_scores`, because torchmetrics divides in float32),
``mean_absolute_error`` and ``pearson_corrcoef`` on float64 tensors. The MMSA rules (filtering, clipping,
rounding, binning, names) are this module's.

Numerics: inputs are flattened and cast to float32 (MMSA sees float32 model outputs), so clipping, rounding
and bin thresholds behave as in MMSA's numpy code (``0.1`` is compared as ``float32(0.1)`` and lands in the
middle SIMS bin); ``MAE`` and ``Corr`` are then computed in float64. Results are not rounded (MMSA
rounds to 4 decimals only for display).

Edge cases (no exceptions are raised for them):

* every truth is exactly 0 -> ``Non0_acc_2`` and ``Non0_F1_score`` are NaN (no sample is left);
* only one class present -> weighted F1 is the F1 of the classes with truth support (1.0 when all correct);
* pred or truth constant -> ``Corr`` is NaN (zero variance, as ``np.corrcoef``);
* no samples at all -> every metric is NaN.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor
from torchmetrics import Metric
from torchmetrics.functional import mean_absolute_error, pearson_corrcoef
from torchmetrics.utilities import dim_zero_cat

from lightning_kd.metrics.label_scores import NAN, accuracy_and_weighted_f1

__all__ = [
    "MMSA_KEYS",
    "SIMS_KEYS",
    "SentimentMetrics",
    "mmsa_regression_metrics",
    "sims_regression_metrics",
]

MMSA_KEYS: tuple[str, ...] = (
    "Has0_acc_2",
    "Has0_F1_score",
    "Non0_acc_2",
    "Non0_F1_score",
    "Mult_acc_5",
    "Mult_acc_7",
    "MAE",
    "Corr",
)
SIMS_KEYS: tuple[str, ...] = ("Mult_acc_2", "F1_score", "Mult_acc_3", "Mult_acc_5", "MAE", "Corr")

# Upper edges of the SIMS bins ((lo, hi], first bin closed at -1); values are clipped to [-1, 1] first.
_SIMS_CUTS_2 = (0.0,)
_SIMS_CUTS_3 = (-0.1, 0.1)
_SIMS_CUTS_5 = (-0.7, -0.1, 0.1, 0.7)

def _prepare(pred: Tensor, target: Tensor) -> tuple[Tensor, Tensor]:
    """Flatten, detach and cast both to float32; check they hold the same number of values."""
    pred = torch.as_tensor(pred).detach().reshape(-1).to(torch.float32)
    target = torch.as_tensor(target).detach().reshape(-1).to(device=pred.device, dtype=torch.float32)
    if pred.numel() != target.numel():
        raise ValueError(f"pred has {pred.numel()} values but target has {target.numel()}")
    return pred, target


def _mae(pred: Tensor, target: Tensor) -> float:
    """torchmetrics' mean absolute error in float64; NaN when empty."""
    if target.numel() == 0:
        return NAN
    return mean_absolute_error(pred.to(torch.float64), target.to(torch.float64)).item()


def _pearson(pred: Tensor, target: Tensor) -> float:
    """torchmetrics' Pearson correlation in float64 (clipped to [-1, 1], as ``np.corrcoef``).

    NaN when either side is constant (zero variance) or holds a NaN/inf, or there are no samples (as
    ``np.corrcoef``); those cases are caught here so torchmetrics' "variance close to zero" warning does not
    fire on every constant prediction.
    """
    if target.numel() == 0:
        return NAN
    x, y = pred.to(torch.float64), target.to(torch.float64)
    if not (torch.isfinite(x).all() and torch.isfinite(y).all()):
        return NAN
    if bool(x.min() == x.max()) or bool(y.min() == y.max()):
        return NAN
    return pearson_corrcoef(x, y).item()


def _binary_pair(pred_pos: Tensor, true_pos: Tensor) -> tuple[float, float]:
    """(accuracy, weighted F1) for boolean positive/negative labels."""
    return accuracy_and_weighted_f1(pred_pos.long(), true_pos.long(), 2)


def _rounded_acc(pred: Tensor, target: Tensor, bound: float) -> float:
    """MMSA ``__multiclass_acc`` after clipping to ``[-bound, bound]``; ``torch.round`` is half-to-even.

    The rounded values -b..b become classes 0..2b; a NaN prediction (or truth) gets a class of its own that
    matches nothing (class 2b+1 for pred, 2b+2 for truth), so it counts as a miss, as ``np.round(nan) == x`` does.
    """
    b = int(bound)

    def classes(x: Tensor, nan_class: int) -> Tensor:
        r = torch.round(x.clamp(-bound, bound)) + b
        return torch.where(torch.isnan(r), torch.full_like(r, nan_class), r).long()

    return accuracy_and_weighted_f1(classes(pred, 2 * b + 1), classes(target, 2 * b + 2), 2 * b + 3)[0]


def mmsa_regression_metrics(pred: Tensor, target: Tensor) -> dict[str, float]:
    """MOSI/MOSEI regression metrics (MMSA ``MetricsTop.__eval_mosei_regression``), keys :data:`MMSA_KEYS`.

    Args:
        pred: predicted sentiment scores, any shape (flattened), any float dtype (bf16 is fine).
        target: truth scores in [-3, 3], same number of values.

    Returns:
        Unrounded floats. ``Non0_*`` are NaN when every truth is exactly 0; ``Corr`` is NaN when pred or
        truth is constant; everything is NaN for empty input.
    """
    pred, target = _prepare(pred, target)
    has0_acc, has0_f1 = _binary_pair(pred >= 0, target >= 0)
    nonzero = target != 0
    non0_acc, non0_f1 = _binary_pair(pred[nonzero] > 0, target[nonzero] > 0)
    return {
        "Has0_acc_2": has0_acc,
        "Has0_F1_score": has0_f1,
        "Non0_acc_2": non0_acc,
        "Non0_F1_score": non0_f1,
        "Mult_acc_5": _rounded_acc(pred, target, 2.0),
        "Mult_acc_7": _rounded_acc(pred, target, 3.0),
        "MAE": _mae(pred, target),  # unclipped, as MMSA
        "Corr": _pearson(pred, target),
    }


def _sims_bins(x: Tensor, cuts: tuple[float, ...]) -> Tensor:
    """Bin index with ``(lo, hi]`` bins; ``cuts`` are compared in ``x``'s dtype (float32, as MMSA's numpy)."""
    boundaries = torch.tensor(cuts, dtype=x.dtype, device=x.device)
    return torch.bucketize(x, boundaries, right=False)


def sims_regression_metrics(pred: Tensor, target: Tensor) -> dict[str, float]:
    """CH-SIMS regression metrics (MMSA ``MetricsTop.__eval_sims_regression``), keys :data:`SIMS_KEYS`.

    Both sides are clipped to [-1, 1] first; ``MAE`` and ``Corr`` use the clipped values (as MMSA does).
    ``Corr`` is NaN when a side is constant after clipping; everything is NaN for empty input.
    """
    pred, target = _prepare(pred, target)
    pred, target = pred.clamp(-1.0, 1.0), target.clamp(-1.0, 1.0)
    p2, t2 = _sims_bins(pred, _SIMS_CUTS_2), _sims_bins(target, _SIMS_CUTS_2)
    p3, t3 = _sims_bins(pred, _SIMS_CUTS_3), _sims_bins(target, _SIMS_CUTS_3)
    p5, t5 = _sims_bins(pred, _SIMS_CUTS_5), _sims_bins(target, _SIMS_CUTS_5)
    mult_acc_2, f1 = accuracy_and_weighted_f1(p2, t2, 2)
    return {
        "Mult_acc_2": mult_acc_2,
        "F1_score": f1,
        "Mult_acc_3": accuracy_and_weighted_f1(p3, t3, 3)[0],
        "Mult_acc_5": accuracy_and_weighted_f1(p5, t5, 5)[0],
        "MAE": _mae(pred, target),
        "Corr": _pearson(pred, target),
    }


_SCHEMES = {
    "mmsa": (mmsa_regression_metrics, MMSA_KEYS),
    "sims": (sims_regression_metrics, SIMS_KEYS),
}


class SentimentMetrics(Metric):
    """Epoch-level MMSA metrics: keeps every pred/target and evaluates them in :meth:`compute`.

    The states are lists reduced with ``"cat"`` (DDP gathers all samples before :meth:`compute`) and are
    non-persistent, so they never enter a checkpoint's ``state_dict``. :meth:`compute` evaluates on CPU and
    returns float64 scalar tensors (float32 on MPS) on the metric's device, keyed by :data:`MMSA_KEYS`
    (``scheme="mmsa"``) or :data:`SIMS_KEYS` (``scheme="sims"``); see :func:`mmsa_regression_metrics` for
    the NaN cases.
    Called before any :meth:`update`, every value is NaN.
    """

    is_differentiable = False
    higher_is_better = None
    full_state_update = False

    preds: list[Tensor]
    targets: list[Tensor]

    def __init__(self, scheme: Literal["mmsa", "sims"] = "mmsa") -> None:
        super().__init__()
        if scheme not in _SCHEMES:
            raise ValueError(f"scheme must be one of {sorted(_SCHEMES)}, got {scheme!r}")
        self.scheme = scheme
        self.add_state("preds", default=[], dist_reduce_fx="cat", persistent=False)
        self.add_state("targets", default=[], dist_reduce_fx="cat", persistent=False)

    @property
    def keys(self) -> tuple[str, ...]:
        """The keys :meth:`compute` returns, in order."""
        return _SCHEMES[self.scheme][1]

    def update(self, pred: Tensor, target: Tensor) -> None:
        """Store a batch; both are flattened and cast to float32 (any shape, e.g. ``(B,)`` or ``(B, 1)``)."""
        pred, target = _prepare(pred, target)
        self.preds.append(pred)
        self.targets.append(target.to(pred.device))

    def compute(self) -> dict[str, Tensor]:
        fn, keys = _SCHEMES[self.scheme]
        if isinstance(self.preds, list) and len(self.preds) == 0:
            values = dict.fromkeys(keys, NAN)
        else:
            # Evaluate on CPU: many tiny reductions, each read back with .item().
            values = fn(dim_zero_cat(self.preds).cpu(), dim_zero_cat(self.targets).cpu())
        dtype = torch.float32 if self.device.type == "mps" else torch.float64  # MPS has no float64
        return {k: torch.tensor(values[k], dtype=dtype, device=self.device) for k in keys}
