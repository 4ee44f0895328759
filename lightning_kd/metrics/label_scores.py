"""Accuracy and weighted F1 of integer labels: torchmetrics' per-class counts, divided in float64.

The counts (tp, fp, fn, support per class) come from ``torchmetrics.functional.classification.
multiclass_stat_scores``. Only the final division is ours: torchmetrics' ``multiclass_accuracy`` /
``multiclass_f1_score`` divide the same counts in float32 (2/3 comes out 2e-8 off), while MMSA and MulT report
scikit-learn's float64 values (``tests/test_metrics_classification.py::test_torchmetrics_divides_in_float32``
shows the difference).

Weighted F1 is scikit-learn's ``f1_score(truth, pred, average="weighted")``: per-class F1
``2tp / (2tp + fp + fn)`` (0 for a class absent from both sides) averaged with the truth support as weight, so a
class absent from truth has weight 0.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torchmetrics.functional.classification import multiclass_stat_scores

__all__ = ["NAN", "accuracy_and_weighted_f1"]

NAN = float("nan")


def accuracy_and_weighted_f1(pred: Tensor, truth: Tensor, num_classes: int) -> tuple[float, float]:
    """``(accuracy, weighted F1)`` of integer labels in ``[0, num_classes)`` (any shape, flattened); NaN when empty."""
    pred, truth = pred.reshape(-1).long(), truth.reshape(-1).long()
    n = truth.numel()
    if n == 0:
        return NAN, NAN
    stats = multiclass_stat_scores(pred, truth, num_classes=num_classes, average="none").to(torch.float64)
    tp, fp, fn, support = stats[:, 0], stats[:, 1], stats[:, 3], stats[:, 4]
    denom = 2 * tp + fp + fn
    f1 = torch.where(denom > 0, 2 * tp / denom.clamp_min(1), torch.zeros_like(denom))
    return (tp.sum() / n).item(), ((f1 * support).sum() / n).item()
