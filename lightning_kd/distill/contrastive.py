"""Sample-level contrastive distillation (SCD) of CorrKD.

Li et al., "Correlation-Decoupled Knowledge Distillation for Multimodal Sentiment Analysis with
Incomplete Modalities", CVPR 2024, Sec. 3.2 (sample-level contrastive distillation): the student's joint
representation of a sample is pulled toward the (frozen) teacher's representation of the same sample and
pushed, with a margin, away from the teacher's representations of the other samples of the batch, so the
student inherits the teacher's cross-sample structure.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

__all__ = ["SampleContrastiveDistillation"]

#: floor under a squared distance before the square root: keeps d||s - t|| / d(s - t) finite at 0.
_SQ_EPS = 1e-12


class SampleContrastiveDistillation(nn.Module):
    """SCD loss on joint representations ``student (B, d)`` and ``teacher (B, d)``.

    ``loss = mean_i ||s_i - t_i||^2 + mean_{i != j} max(0, margin - ||s_i - t_j||)^2``

    The second mean runs over the ``B (B - 1)`` ordered pairs; with ``B == 1`` there is none and the term
    is 0. The paper gives the idea, not the formula: this squared-hinge form and the default margin
    (``1.0``) are our choices. The teacher is detached (no gradient ever reaches it). Distances are
    computed in float32 with autocast disabled, whatever the input dtype, and
    ``||.|| = sqrt(max(||.||^2, 1e-12))`` so that coinciding points give a zero, not NaN, gradient.

    Args:
        margin: the hinge margin ``eta`` on the distance to other samples' teacher representations (>= 0).
    """

    def __init__(self, margin: float = 1.0) -> None:
        super().__init__()
        if margin < 0:
            raise ValueError(f"margin must be >= 0, got {margin}")
        self.margin = float(margin)

    def extra_repr(self) -> str:
        return f"margin={self.margin}"

    def forward(self, student: Tensor, teacher: Tensor) -> Tensor:
        """Scalar float32 SCD loss for ``student (B, d)`` and ``teacher (B, d)`` (teacher detached)."""
        if student.dim() != 2 or student.shape != teacher.shape:
            raise ValueError(f"expected student and teacher of the same shape (B, d), got "
                             f"{tuple(student.shape)} and {tuple(teacher.shape)}")
        with torch.autocast(device_type=student.device.type, enabled=False):
            s = student.float()
            t = teacher.detach().float()
            b = s.shape[0]
            if b == 0:
                return s.sum() * 0.0
            sq = (s[:, None, :] - t[None, :, :]).pow(2).sum(-1)  # (B, B): ||s_i - t_j||^2
            pull = sq.diagonal().mean()
            if b == 1:
                return pull
            dist = sq.clamp_min(_SQ_EPS).sqrt()
            same = torch.eye(b, dtype=torch.bool, device=s.device)
            hinge = (self.margin - dist).clamp_min(0.0).pow(2).masked_fill(same, 0.0)
            push = hinge.sum() / (b * (b - 1))
            return pull + push
