"""Metrics of classifiers: binary sentiment (MMSA names) and multi-label emotion presence (MulT IEMOCAP).

* ``"binary_sentiment"`` -> :data:`BINARY_SENTIMENT_KEYS`: the binary part of the MMSA regression metrics with
  the same names and definitions as :func:`lightning_kd.metrics.sentiment.mmsa_regression_metrics`, for a
  model that predicts a class (1 = non-negative) instead of a score, so the two compare column by column:
  ``Has0_*`` = truth >= 0 vs predicted class 1 on all samples; ``Non0_*`` = samples with truth == 0
  dropped, truth > 0 vs predicted class 1 (on that subset class 1 counts as positive: a two-class output
  cannot say "exactly 0").
* ``"binary"`` -> :data:`BINARY_KEYS`: accuracy ``acc`` and weighted F1 ``F1`` of 0/1 class labels against 0/1
  truth labels (binary arousal / valence: CDGKD).
* ``"emotion"`` -> ``<Name>_acc`` and ``<Name>_F1`` per emotion (presence 0/1 per column, MulT's
  ``eval_iemocap``), then ``Avg_acc`` and ``Avg_F1`` (means over emotions).

F1 is scikit-learn's ``f1_score(truth, pred, average="weighted")`` (per-class F1 over the classes present in
truth or prediction, weighted by truth support), from torchmetrics' class counts divided in float64
(:mod:`lightning_kd.metrics.label_scores`). Edge cases follow that module: NaN when no sample is left (Non0 with
every truth 0, or empty input); a class absent from truth has weight 0.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
from torch import Tensor
from torchmetrics import Metric
from torchmetrics.utilities import dim_zero_cat

from lightning_kd.data.formats.mult import EMOTIONS  # IEMOCAP emotions: a fact of the data format
from lightning_kd.metrics.label_scores import NAN, accuracy_and_weighted_f1

__all__ = [
    "BINARY_KEYS",
    "BINARY_SENTIMENT_KEYS",
    "EMOTIONS",
    "ClassificationMetrics",
    "binary_sentiment_metrics",
    "emotion_keys",
    "emotion_metrics",
]

BINARY_SENTIMENT_KEYS: tuple[str, ...] = ("Has0_acc_2", "Has0_F1_score", "Non0_acc_2", "Non0_F1_score")
BINARY_KEYS: tuple[str, ...] = ("acc", "F1")


def _classes(x: Tensor, name: str) -> Tensor:
    """Detached int64 tensor; every value must be 0 or 1."""
    x = torch.as_tensor(x).detach()
    if x.is_floating_point() and not torch.equal(x, x.round()):
        raise ValueError(f"{name} must hold classes 0/1, got non-integer values")
    x = x.long()
    if x.numel() and not ((x == 0) | (x == 1)).all():
        raise ValueError(f"{name} must hold classes 0/1, got values {torch.unique(x).tolist()}")
    return x


def binary_sentiment_metrics(pred_class: Tensor, truth: Tensor) -> dict[str, float]:
    """MMSA binary sentiment metrics of a two-class prediction, keys :data:`BINARY_SENTIMENT_KEYS`.

    Args:
        pred_class: predicted class per sample, 1 = non-negative, 0 = negative (any shape, flattened).
        truth: truth sentiment scores, same number of values.

    Returns:
        Unrounded floats; ``Non0_*`` are NaN when every truth is exactly 0; everything is NaN for empty input.
    """
    pred = _classes(pred_class, "pred_class").reshape(-1)
    truth = torch.as_tensor(truth).detach().reshape(-1).to(device=pred.device, dtype=torch.float32)
    if pred.numel() != truth.numel():
        raise ValueError(f"pred_class has {pred.numel()} values but truth has {truth.numel()}")
    has0_acc, has0_f1 = accuracy_and_weighted_f1(pred, (truth >= 0).long(), 2)
    nonzero = truth != 0
    non0_acc, non0_f1 = accuracy_and_weighted_f1(pred[nonzero], (truth[nonzero] > 0).long(), 2)
    return {"Has0_acc_2": has0_acc, "Has0_F1_score": has0_f1, "Non0_acc_2": non0_acc, "Non0_F1_score": non0_f1}


def emotion_keys(names: Sequence[str] = EMOTIONS) -> tuple[str, ...]:
    """``(<Name>_acc, <Name>_F1 for each name..., Avg_acc, Avg_F1)``."""
    return (*(f"{n}_{s}" for n in names for s in ("acc", "F1")), "Avg_acc", "Avg_F1")


def emotion_metrics(pred: Tensor, truth: Tensor, names: Sequence[str] = EMOTIONS) -> dict[str, float]:
    """Per-emotion accuracy and weighted F1 of presence predictions (MulT ``eval_iemocap``), plus their means.

    Args:
        pred: (N, E) predicted presence in {0, 1}.
        truth: (N, E) true presence in {0, 1}.
        names: the E emotion names, in column order.

    Returns:
        :func:`emotion_keys` ``(names)`` -> float; NaN for empty input.
    """
    pred, truth = _classes(pred, "pred"), _classes(truth, "truth").to(torch.as_tensor(pred).device)
    if pred.ndim != 2 or pred.shape != truth.shape or pred.shape[1] != len(names):
        raise ValueError(f"pred and truth must both be (N, {len(names)}) for emotions {list(names)}, got "
                         f"{tuple(pred.shape)} and {tuple(truth.shape)}")
    out: dict[str, float] = {}
    for e, name in enumerate(names):
        out[f"{name}_acc"], out[f"{name}_F1"] = accuracy_and_weighted_f1(pred[:, e], truth[:, e], 2)
    accs, f1s = [out[f"{n}_acc"] for n in names], [out[f"{n}_F1"] for n in names]
    out["Avg_acc"] = sum(accs) / len(accs) if accs else NAN
    out["Avg_F1"] = sum(f1s) / len(f1s) if f1s else NAN
    return out


class ClassificationMetrics(Metric):
    """Epoch-level classification metrics: keeps every prediction/truth and evaluates them in :meth:`compute`.

    ``scheme="binary_sentiment"``: ``update(pred_class (B,), truth scores (B,))`` -> :data:`BINARY_SENTIMENT_KEYS`.
    ``scheme="binary"``: ``update(pred_class (B,), truth classes (B,))`` -> :data:`BINARY_KEYS`.
    ``scheme="emotion"``: ``update(pred (B, E), truth (B, E))`` -> :func:`emotion_keys` ``(names)``.

    States are lists reduced with ``"cat"`` (DDP gathers all samples before :meth:`compute`) and are
    non-persistent, so they never enter a checkpoint. :meth:`compute` evaluates on CPU and returns float64
    scalar tensors (float32 on MPS) on the metric's device; before any :meth:`update` every value is NaN.
    """

    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    preds: list[Tensor]
    targets: list[Tensor]

    def __init__(self, scheme: Literal["binary_sentiment", "binary", "emotion"] = "binary_sentiment",
                 names: Sequence[str] = EMOTIONS) -> None:
        super().__init__()
        if scheme not in ("binary_sentiment", "binary", "emotion"):
            raise ValueError(f"scheme must be 'binary_sentiment', 'binary' or 'emotion', got {scheme!r}")
        self.scheme = scheme
        self.names = tuple(names)
        self.add_state("preds", default=[], dist_reduce_fx="cat", persistent=False)
        self.add_state("targets", default=[], dist_reduce_fx="cat", persistent=False)

    @property
    def keys(self) -> tuple[str, ...]:
        """The keys :meth:`compute` returns, in order."""
        if self.scheme == "binary":
            return BINARY_KEYS
        return BINARY_SENTIMENT_KEYS if self.scheme == "binary_sentiment" else emotion_keys(self.names)

    def update(self, pred_class: Tensor, truth: Tensor) -> None:
        """Store a batch: (B,) classes and (B,) scores, or (B, E) presence predictions and truths."""
        pred = _classes(pred_class, "pred_class")
        if self.scheme == "binary_sentiment":
            pred = pred.reshape(-1)
            truth = torch.as_tensor(truth).detach().reshape(-1).to(device=pred.device, dtype=torch.float32)
            if pred.numel() != truth.numel():
                raise ValueError(f"pred_class has {pred.numel()} values but truth has {truth.numel()}")
        elif self.scheme == "binary":
            pred = pred.reshape(-1)
            truth = _classes(truth, "truth").reshape(-1).to(pred.device)
            if pred.numel() != truth.numel():
                raise ValueError(f"pred_class has {pred.numel()} values but truth has {truth.numel()}")
        else:
            truth = _classes(truth, "truth").to(pred.device)
            if pred.ndim != 2 or pred.shape != truth.shape or pred.shape[1] != len(self.names):
                raise ValueError(f"pred and truth must both be (B, {len(self.names)}), got {tuple(pred.shape)} and "
                                 f"{tuple(truth.shape)}")
        self.preds.append(pred)
        self.targets.append(truth)

    def compute(self) -> dict[str, Tensor]:
        if isinstance(self.preds, list) and len(self.preds) == 0:
            values = dict.fromkeys(self.keys, NAN)
        else:
            pred, truth = dim_zero_cat(self.preds).cpu(), dim_zero_cat(self.targets).cpu()
            if self.scheme == "binary_sentiment":
                values = binary_sentiment_metrics(pred, truth)
            elif self.scheme == "binary":
                values = dict(zip(BINARY_KEYS, accuracy_and_weighted_f1(pred, truth, 2)))
            else:
                values = emotion_metrics(pred, truth, self.names)
        dtype = torch.float32 if self.device.type == "mps" else torch.float64  # MPS has no float64
        return {k: torch.tensor(values[k], dtype=dtype, device=self.device) for k in self.keys}
