"""CorrKD objective (Li et al., CVPR 2024, Sec. 3, Eq. "total"): task + SCD + CPD + RCD.

The paper reports no loss weights and no margin; every weight, the margin, the MI estimator width and
the response temperature are options (defaults 1.0 / 1.0 / 1.0, margin 1.0, 64 hidden units, T = 1),
our choices.

IEMOCAP (four binary emotion decisions per sample) departs from the paper's one-class-per-sample view in
two places, handled explicitly: CPD's categories are the emotions as a multi-label membership (a sample
with several emotions counts in each of their prototypes, one with none in no prototype and no CPD row;
see :class:`~lightning_kd.distill.PrototypeDistillation`), and RCD keeps the ``(B, 4, 2)`` responses
grouped so that its MI estimator pairs each decision with the SAME emotion of another sample (see
:class:`~lightning_kd.distill.ResponseDisentangledDistillation`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch.nn.functional as F
from torch import Tensor, nn

from lightning_kd.distill import (
    PrototypeDistillation,
    ResponseDisentangledDistillation,
    SampleContrastiveDistillation,
)
from lightning_kd.methods.corrkd.model import CorrKDOutput
from lightning_kd.options import options

__all__ = ["CorrKDLossOptions", "CorrKDObjective", "prototype_labels"]


def prototype_labels(labels: Tensor, classes: int = 2) -> Tensor:
    """CPD class membership ``(B, C)`` (0/1) from ``labels (B, tasks)``: one task -> the one-hot of its
    class (``C = classes``); several binary emotion tasks -> the emotions themselves (``C = tasks``), so a
    sample may belong to several emotions or to none (never an argmax that invents one)."""
    return F.one_hot(labels[:, 0].long(), classes) if labels.shape[1] == 1 else labels.long()


@dataclass(frozen=True)
class CorrKDLossOptions:
    """Options of :class:`CorrKDObjective` (the paper reports none of them; ours).

    Attributes:
        scd_weight: weight of the sample-level contrastive term (the paper sums the terms unweighted).
        cpd_weight: weight of the category-guided prototype term.
        rcd_weight: weight of the response-disentangled term.
        margin: SCD margin (distance scale of the 40-d joint representation).
        mi_hidden: width of the RCD statistics networks.
        temperature: softmax temperature of the RCD responses.
    """

    scd_weight: float = 1.0
    cpd_weight: float = 1.0
    rcd_weight: float = 1.0
    margin: float = 1.0
    mi_hidden: int = 64
    temperature: float = 1.0


class CorrKDObjective(nn.Module):
    """Weighted sum of the task cross-entropy and the three correlation-decoupled distillation terms.

    Args:
        tasks / classes: the response shape (binary sentiment 1 x 2; IEMOCAP 4 x 2).
        loss: the :class:`CorrKDLossOptions` (instance, mapping or None); ``overrides`` replace single fields.
    """

    def __init__(self, tasks: int = 1, classes: int = 2, loss: CorrKDLossOptions | dict[str, Any] | None = None,
                 **overrides: Any) -> None:
        super().__init__()
        o = self.options = options(CorrKDLossOptions, loss, **overrides)
        self.weights = {"scd": o.scd_weight, "cpd": o.cpd_weight, "rcd": o.rcd_weight}
        self.scd = SampleContrastiveDistillation(o.margin)
        self.classes = classes
        self.cpd = PrototypeDistillation(classes if tasks == 1 else tasks)
        # responses of all tasks share one estimator pair (each emotion is the same binary decision shape)
        self.rcd = ResponseDisentangledDistillation(classes, o.mi_hidden, o.temperature)

    @staticmethod
    def task_loss(out: CorrKDOutput, labels: Tensor) -> Tensor:
        """Cross-entropy averaged over samples and tasks; ``labels (B, tasks)``."""
        return F.cross_entropy(out.logits.flatten(0, 1).float(), labels.flatten())

    def forward(self, student: CorrKDOutput, labels: Tensor, teacher: CorrKDOutput | None = None) -> dict[str, Tensor]:
        """Every term; ``"loss"`` is the optimised total. Without a teacher only the task term."""
        terms = {"task": self.task_loss(student, labels)}
        total = terms["task"]
        if teacher is not None:
            terms["scd"] = self.scd(student.representation, teacher.representation)
            terms["cpd"] = self.cpd(student.representation, teacher.representation,
                                    prototype_labels(labels, self.classes))
            # (B, tasks, classes), not flattened: MI marginal pairs must join different samples
            terms["rcd"] = self.rcd(student.logits, teacher.logits, labels)
            for k, w in self.weights.items():
                total = total + w * terms[k]
        terms["loss"] = total
        return terms
