"""Category-guided prototype distillation (CPD) of CorrKD.

Li et al., "Correlation-Decoupled Knowledge Distillation for Multimodal Sentiment Analysis with
Incomplete Modalities", CVPR 2024, Sec. 3 (category-guided prototype distillation): class prototypes are
batch means of the joint representation; teacher and student each relate every sample to every prototype
by cosine similarity, and the student's sample-to-prototype matrix is made to match the teacher's, which
transfers the cross-category correlations.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["PrototypeDistillation"]

_NORM_EPS = 1e-8


class PrototypeDistillation(nn.Module):
    """CPD loss on ``student (B, d)``, ``teacher (B, d)`` and ``labels``: integer classes ``(B,)`` in
    ``[0, num_classes)``, or a 0/1 membership matrix ``(B, num_classes)`` (multi-label, e.g. IEMOCAP's four
    emotions, where a sample may carry several emotions or none).

    Per side (teacher from teacher representations, student from student representations), with
    ``z_ic = 1`` when sample ``i`` belongs to class ``c`` (one-hot for integer labels):
    ``proto_c = sum_i z_ic h_i / sum_i z_ic`` for every class ``c`` present in the batch, and
    ``M[i, c] = cos(h_i, proto_c)``. Then, with ``w_i = sum_c z_ic`` (the number of classes of sample i),

    ``loss = sum_i w_i ||M_t[i] - M_s[i]||^2 / sum_i w_i``

    With one class per sample (the paper's setting, ``w_i = 1``) this is ``||M_t - M_s||_F^2 / B``: the
    paper states the Frobenius distance; dividing by ``B`` (a mean over samples, so the loss does not grow
    with the batch size) is our normalisation. Several or no classes per sample are outside the paper,
    which assumes one class per sample; our rule treats a sample with ``k`` classes as ``k`` single-label
    samples (one per class, same representation) and applies the paper's CPD to them: it counts in each
    of its classes' prototypes, and its row is compared ``k`` times (weight ``w_i = k``). A sample with no
    class joins no prototype and no compared row (``w_i = 0``); a batch with no labelled sample gives 0.
    Rows span every present prototype, so cross-category correlations are kept. A class absent from the
    batch has no prototype and is left out of both matrices (it contributes nothing, never NaN); an empty
    batch gives 0. The teacher is detached. Computation is vectorised (membership-matrix products, no
    loop over samples or classes) and done in float32 with autocast disabled.

    Args:
        num_classes: number of classes ``C``.
    """

    def __init__(self, num_classes: int) -> None:
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        self.num_classes = int(num_classes)

    def extra_repr(self) -> str:
        return f"num_classes={self.num_classes}"

    def membership(self, labels: Tensor, batch: int) -> Tensor:
        """``(B, num_classes)`` float 0/1 membership ``z`` from integer ``(B,)`` or 0/1 ``(B, num_classes)`` labels."""
        if labels.shape == (batch,):
            return F.one_hot(labels.long(), self.num_classes).float()
        if labels.shape == (batch, self.num_classes):
            if not bool(((labels == 0) | (labels == 1)).all()):
                raise ValueError("a (B, num_classes) label matrix must hold 0/1 class memberships")
            return labels.float()
        raise ValueError(f"expected labels of shape ({batch},) or ({batch}, {self.num_classes}), "
                         f"got {tuple(labels.shape)}")

    def similarity(self, reps: Tensor, labels: Tensor) -> Tensor:
        """``(B, num_classes)`` cosine similarities of each sample to each class prototype of ``reps``.

        Columns of classes absent from ``labels`` are exactly 0 (their prototype is the zero vector).
        """
        protos = self.prototypes(reps, labels)
        return F.normalize(reps, dim=-1, eps=_NORM_EPS) @ F.normalize(protos, dim=-1, eps=_NORM_EPS).t()

    def prototypes(self, reps: Tensor, labels: Tensor) -> Tensor:
        """``(num_classes, d)`` class means of ``reps`` over member samples; an absent class -> the zero vector."""
        z = self.membership(labels, reps.shape[0]).to(reps.dtype)  # (B, C)
        return (z.t() @ reps) / z.sum(0).clamp_min(1.0)[:, None]

    def forward(self, student: Tensor, teacher: Tensor, labels: Tensor) -> Tensor:
        """Scalar float32 CPD loss (teacher detached)."""
        if student.dim() != 2 or student.shape != teacher.shape:
            raise ValueError(f"expected student and teacher of the same shape (B, d), got "
                             f"{tuple(student.shape)} and {tuple(teacher.shape)}")
        with torch.autocast(device_type=student.device.type, enabled=False):
            s = student.float()
            t = teacher.detach().float()
            w = self.membership(labels, s.shape[0]).sum(1)  # (B,): classes per sample = weight of its row
            # absent classes give an all-zero column on both sides, so they add exactly 0 to the sum;
            # no labelled sample (or an empty batch): numerator and weights are 0, the loss is 0
            diff = self.similarity(t, labels) - self.similarity(s, labels)
            return (w * diff.pow(2).sum(1)).sum() / w.sum().clamp_min(1.0)
