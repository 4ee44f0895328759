"""CorrKD objective (Li et al., CVPR 2024, Sec. 3, Eq. "total"): task + SCD + CPD + RCD.

The paper reports no loss weights and no margin; every weight, the margin, the MI estimator width and
the response temperature are options (defaults 1.0 / 1.0 / 1.0, margin 1.0, 64 hidden units, T = 1),
our choices.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch.nn.functional as F
from torch import Tensor, nn

from lightning_kd.distill import PrototypeDistillation, ResponseDisentangledDistillation, SampleContrastiveDistillation
from lightning_kd.methods.base import options
from lightning_kd.methods.corrkd.model import CorrKDOutput

__all__ = ["CorrKDLossOptions", "CorrKDObjective", "prototype_labels"]


def prototype_labels(labels: Tensor) -> Tensor:
    """Class of each sample for CPD: ``labels (B, tasks)``; one task -> its class, several binary
    emotion tasks -> the index of the (first) present emotion (IEMOCAP samples carry one emotion)."""
    return labels[:, 0] if labels.shape[1] == 1 else labels.argmax(1)


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
            terms["cpd"] = self.cpd(student.representation, teacher.representation, prototype_labels(labels))
            terms["rcd"] = self.rcd(student.logits.flatten(0, 1), teacher.logits.flatten(0, 1), labels.flatten())
            for k, w in self.weights.items():
                total = total + w * terms[k]
        terms["loss"] = total
        return terms
