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
    """CPD loss on ``student (B, d)``, ``teacher (B, d)`` and integer ``labels (B,)`` in ``[0, num_classes)``.

    Per side (teacher from teacher representations, student from student representations):
    ``proto_c = mean_{i: y_i = c} h_i`` for every class ``c`` present in the batch, and
    ``M[i, c] = cos(h_i, proto_c)``, a ``(B, C_present)`` matrix. Then

    ``loss = ||M_t - M_s||_F^2 / B``

    Dividing by ``B`` (a mean over samples, so the loss does not grow with the batch size) is our
    normalisation; the paper states only the Frobenius distance. A class absent from the batch has no
    prototype and is left out of both matrices (it contributes nothing, never NaN); an empty batch gives
    0. The teacher is detached. Computation is vectorised (``one_hot`` sums, no loop over samples or
    classes) and done in float32 with autocast disabled.

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

    def similarity(self, reps: Tensor, labels: Tensor) -> Tensor:
        """``(B, num_classes)`` cosine similarities of each sample to each class prototype of ``reps``.

        Columns of classes absent from ``labels`` are exactly 0 (their prototype is the zero vector).
        """
        onehot = F.one_hot(labels.long(), self.num_classes).to(reps.dtype)  # (B, C)
        counts = onehot.sum(0)  # (C,)
        protos = (onehot.t() @ reps) / counts.clamp_min(1.0)[:, None]  # (C, d); absent class -> 0 vector
        return F.normalize(reps, dim=-1, eps=_NORM_EPS) @ F.normalize(protos, dim=-1, eps=_NORM_EPS).t()

    def forward(self, student: Tensor, teacher: Tensor, labels: Tensor) -> Tensor:
        """Scalar float32 CPD loss (teacher detached)."""
        if student.dim() != 2 or student.shape != teacher.shape:
            raise ValueError(f"expected student and teacher of the same shape (B, d), got "
                             f"{tuple(student.shape)} and {tuple(teacher.shape)}")
        if labels.shape != student.shape[:1]:
            raise ValueError(f"expected labels of shape ({student.shape[0]},), got {tuple(labels.shape)}")
        with torch.autocast(device_type=student.device.type, enabled=False):
            s = student.float()
            t = teacher.detach().float()
            b = s.shape[0]
            if b == 0:
                return s.sum() * 0.0
            # absent classes give an all-zero column on both sides, so they add exactly 0 to the sum
            diff = self.similarity(t, labels) - self.similarity(s, labels)
            return diff.pow(2).sum() / b
