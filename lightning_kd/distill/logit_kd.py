"""Logit distillation with a temperature (Hinton, Vinyals, Dean, 2015, "Distilling the Knowledge in a Neural
Network", Sec. 2): the student matches the teacher's softened class distribution.

``kd_kl(s, t, T) = T^2 * KL(softmax(t / T) || softmax(s / T))``, averaged over samples (and over any leading
task axes). The direction is teacher -> student (the teacher's distribution is the target), and the ``T^2``
factor keeps the gradient scale independent of ``T`` (Hinton, Sec. 2.1). CDGKD's released code uses the reverse
direction without ``T^2`` (Keras ``KLDivergence(student, teacher)``); we do not copy that.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from lightning_kd.checkpoint import ConfigError
from lightning_kd.distill.teacher import TeacherError

__all__ = ["LogitKDMixin", "LogitKDOptions", "kd_kl"]


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


@dataclass(frozen=True)
class LogitKDOptions:
    """Plain logit KD (Hinton et al., 2015, Sec. 2) added to a method's objective.

    Attributes:
        temperature: ``T`` of :func:`kd_kl`.
        weight: ``a``, the weight of the method's own loss: ``loss = a * method_loss + (1 - a) * kd``, where
            ``kd`` is the mean of :func:`kd_kl` over the teachers. ``a = 1`` is the method alone.
    """

    temperature: float = 4.0
    weight: float = 0.5

    def __post_init__(self) -> None:
        if not self.temperature > 0:
            raise ConfigError(f"model.init_args.logit_kd.temperature must be > 0, got {self.temperature}")
        if not 0.0 <= self.weight <= 1.0:
            raise ConfigError(f"model.init_args.logit_kd.weight (a: the task loss's share) must be in [0, 1], got "
                              f"{self.weight}")


class LogitKDMixin:
    """Plain logit KD for any classification student: ``class S(LogitKDMixin, TeacherMixin, SomeMethodModule)``.

    The student and every teacher implement ``class_logits(batch) -> (B, C)`` or ``(B, tasks, C)``; the student
    calls :meth:`init_logit_kd` in ``__init__`` and takes its teachers through ``teacher_ckpts``
    (:class:`~lightning_kd.distill.teacher.TeacherMixin`). In every training step (the base's
    ``distillation_terms`` hook, after the method's ``training_losses``) the loss becomes
    ``a * loss + (1 - a) * mean_k kd_kl(student_logits, teacher_k_logits, T)``, logged as ``train/logit_kd`` (and
    ``train/method_loss``, the method's own total). The method may put its training-forward logits under
    ``"class_logits"`` in its terms (not logged), so the KD term acts on the same forward pass; else the mixin calls
    ``class_logits(batch)``. Teachers see :meth:`kd_teacher_batch` (default: the student's batch). The per-teacher
    terms go to ``distill_stats`` as ``logit_kd/teacher_<k>``.
    """

    def init_logit_kd(self, logit_kd: LogitKDOptions | Mapping[str, Any] | None) -> None:
        """``logit_kd``: the :class:`LogitKDOptions` (a mapping from a config), or None for no plain KD."""
        from lightning_kd.options import options

        self.logit_kd = None if logit_kd is None else options(LogitKDOptions, logit_kd)

    def kd_teacher_batch(self, batch: Any) -> Any:
        """The batch the teachers' ``class_logits`` read (override: e.g. CorrKD's teacher sees complete data)."""
        return batch

    def check_teacher(self, teacher: Any, record: Mapping[str, str], index: int) -> None:
        super().check_teacher(teacher, record, index)  # type: ignore[misc]
        if getattr(self, "logit_kd", None) is not None and not callable(getattr(teacher, "class_logits", None)):
            raise TeacherError(f"teacher checkpoint {record['path']} holds a {record['method']} model, which has no "
                               "class_logits(batch) hook, so plain logit KD (model.init_args.logit_kd) cannot use it. "
                               "Fix: set model.init_args.teacher_ckpts to classification teachers, or remove "
                               "model.init_args.logit_kd.")

    def setup(self, stage: str) -> None:
        if stage == "fit" and getattr(self, "logit_kd", None) is not None and not getattr(self, "teacher_ckpts", None):
            raise ConfigError("model.init_args.logit_kd distils from teachers, but none is given. Fix: set "
                              "model.init_args.teacher_ckpts to teacher checkpoints, or remove model.init_args.logit_kd.")
        super().setup(stage)  # type: ignore[misc]

    def distillation_terms(self, batch: Any, terms: dict[str, Tensor]) -> dict[str, Tensor]:
        terms = dict(super().distillation_terms(batch, terms))  # type: ignore[misc]
        student = terms.pop("class_logits", None)
        opts: LogitKDOptions | None = getattr(self, "logit_kd", None)
        if opts is None:
            return terms
        if student is None:
            student = self.class_logits(batch)  # type: ignore[attr-defined]
        tb = self.kd_teacher_batch(batch)
        teachers = self.teachers_forward(lambda t: t.class_logits(tb))  # type: ignore[attr-defined]
        kds = []
        for k, (t_logits, record) in enumerate(zip(teachers, self.teacher_records)):  # type: ignore[attr-defined]
            if t_logits.shape != student.shape:
                raise TeacherError(f"teacher checkpoint {record['path']} gives class logits of shape "
                                   f"{tuple(t_logits.shape)}, the student {tuple(student.shape)}: plain logit KD needs "
                                   "the same classes (and tasks). Fix: use a teacher trained for the same task.")
            kd = kd_kl(student, t_logits, opts.temperature)
            self.distill_stats.add(f"logit_kd/teacher_{k}", kd)  # type: ignore[attr-defined]
            kds.append(kd)
        kd = torch.stack(kds).mean()
        a = opts.weight
        return {**terms, "method_loss": terms["loss"], "logit_kd": kd, "loss": a * terms["loss"] + (1 - a) * kd}
