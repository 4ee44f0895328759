"""Self-distillation (alignment) loss of MT-PKDOT's teacher stage (Aslam et al., arXiv 2408.09035, Sec.
"self-distillation"): the adapted unimodal embeddings ``A_v(v)``, ``A_p(p)`` are pulled towards the joint
embedding of the fusion transformer while every head keeps classifying::

    L = 0.5 (cosdist(A_v v, joint) + cosdist(A_p p, joint)) + 0.5 (CE(joint) + 0.5 CE_v + 0.5 CE_p)

with ``cosdist(a, b) = mean_b (1 - cos(a_b, b_b))`` (the released code's ``CosineEmbeddingLoss`` with target 1).
The joint embedding is NOT detached (the released code trains the fusion transformer in this stage too).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import torch.nn.functional as F
from torch import Tensor

__all__ = ["AlignmentTerms", "alignment_loss", "cosine_distance"]


class AlignmentTerms(NamedTuple):
    """Output of :func:`alignment_loss`: the total and its unweighted parts (scalars)."""

    total: Tensor
    align_v: Tensor
    align_p: Tensor
    task_joint: Tensor
    task_v: Tensor
    task_p: Tensor


def cosine_distance(a: Tensor, b: Tensor) -> Tensor:
    """``mean over the batch of 1 - cos(a_i, b_i)`` for ``(B, D)`` rows."""
    return (1 - F.cosine_similarity(a, b, dim=1)).mean()


def alignment_loss(adapted_v: Tensor, adapted_p: Tensor, joint: Tensor, logits_joint: Tensor, logits_v: Tensor,
                   logits_p: Tensor, target: Tensor, align_weight: float = 0.5, task_weight: float = 0.5,
                   head_weight: float = 0.5,
                   task_loss: Callable[[Tensor, Tensor], Tensor] = F.cross_entropy) -> AlignmentTerms:
    """``align_weight (cosdist(A_v v, joint) + cosdist(A_p p, joint))
    + task_weight (task(joint) + head_weight task_v + head_weight task_p)``.

    Args:
        adapted_v / adapted_p / joint: ``(B, D)`` embeddings.
        logits_joint / logits_v / logits_p: the heads' outputs on them.
        target: class indices ``(B,)`` (or what ``task_loss`` takes, e.g. regression targets with ``F.mse_loss``).
    """
    align_v, align_p = cosine_distance(adapted_v, joint), cosine_distance(adapted_p, joint)
    t_joint, t_v, t_p = task_loss(logits_joint, target), task_loss(logits_v, target), task_loss(logits_p, target)
    total = align_weight * (align_v + align_p) + task_weight * (t_joint + head_weight * (t_v + t_p))
    return AlignmentTerms(total, align_v, align_p, t_joint, t_v, t_p)
