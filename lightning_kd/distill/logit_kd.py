"""Logit distillation with a temperature (Hinton, Vinyals, Dean, 2015, "Distilling the Knowledge in a Neural
Network", Sec. 2): the student matches the teacher's softened class distribution.

``kd_kl(s, t, T) = T^2 * KL(softmax(t / T) || softmax(s / T))``, averaged over samples (and over any leading
task axes). The direction is teacher -> student (the teacher's distribution is the target), and the ``T^2``
factor keeps the gradient scale independent of ``T`` (Hinton, Sec. 2.1). CDGKD's released code uses the reverse
direction without ``T^2`` (Keras ``KLDivergence(student, teacher)``); we do not copy that.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

__all__ = ["kd_kl"]


def kd_kl(student_logits: Tensor, teacher_logits: Tensor, temperature: float = 1.0) -> Tensor:
    """``T^2 * KL(p_teacher || p_student)`` with ``p = softmax(logits / T)`` over the last axis, mean over samples.

    Args:
        student_logits: ``(..., C)``; gradients flow into it.
        teacher_logits: ``(..., C)``, same shape; treated as a constant (detached).
        temperature: ``T > 0``.
    """
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    if student_logits.shape != teacher_logits.shape:
        raise ValueError(f"student logits {tuple(student_logits.shape)} and teacher logits "
                         f"{tuple(teacher_logits.shape)} differ in shape")
    log_p_s = F.log_softmax(student_logits.float() / temperature, dim=-1)
    log_p_t = F.log_softmax(teacher_logits.detach().float() / temperature, dim=-1)
    kl = (log_p_t.exp() * (log_p_t - log_p_s)).sum(-1)
    return kl.mean() * temperature**2
