"""MT-PKDOT objectives (Aslam et al., arXiv 2408.09035, Sec. "student" and "self-distillation").

* task loss: cross-entropy on classes (BioVid); on valence / arousal (Aff-Wild2) ``1 - mean CCC`` of the batch
  (``task: ccc``, the usual Aff-Wild2 objective) or MSE (``task: mse``);
* alignment (teacher stage): :func:`lightning_kd.distill.alignment.alignment_loss`;
* hallucination: ``MSE(h(v), p)`` with ``p`` the frozen privileged embedding;
* student: ``L = ce_weight task + kd_weight KD(selected teacher, student) + centroid_weight centroid`` with
  ``KD`` the structural OT term (:class:`~lightning_kd.distill.structural_ot.StructuralOT`, ``kd: ot``) or, for the
  "without OT" ablation, a direct feature KD between the embeddings: ``cosine`` (``mean 1 - cos``) or ``mse``.
  The paper's weights: 0.8 task + 0.2 OT (+ 0.2 centroid, off in the released student: ``centroid_weight: 0``);
  PKDOT, the predecessor with one joint teacher: task + 0.6 OT.

The teacher of each batch is the candidate (``teachers``: ``joint``, ``adapted_visual``, ``adapted_privileged``)
whose head has the lowest task loss on the batch (:func:`~lightning_kd.distill.teacher_selection.select_teacher`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import torch.nn.functional as F
from torch import Tensor

from lightning_kd.checkpoint import ConfigError
from lightning_kd.distill.alignment import cosine_distance
from lightning_kd.distill.structural_ot import StructuralOTOptions
from lightning_kd.options import options

__all__ = ["CANDIDATES", "MTPKDOTLossOptions", "batch_ccc_loss", "feature_kd", "loss_options", "student_loss", "task_loss"]

#: the teachers a student may learn from: the joint embedding and the two adapted unimodal ones
CANDIDATES = ("joint", "adapted_visual", "adapted_privileged")
Task = Literal["ce", "ccc", "mse"]
TASKS = ("ce", "ccc", "mse")


def batch_ccc_loss(pred: Tensor, target: Tensor) -> Tensor:
    """``1 - mean over columns of CCC(pred[:, j], target[:, j])`` on the batch (population moments)."""
    x, y = pred.float(), target.float()
    mx, my = x.mean(0), y.mean(0)
    cov = ((x - mx) * (y - my)).mean(0)
    ccc = 2 * cov / (x.var(0, correction=0) + y.var(0, correction=0) + (mx - my) ** 2 + 1e-8)
    return 1 - ccc.mean()


def task_loss(logits: Tensor, target: Tensor, task: Task) -> Tensor:
    """Cross-entropy (``ce``: ``(B, C)`` logits, ``(B,)`` classes), ``1 - CCC`` (``ccc``) or MSE (``mse``) on
    ``(B, K)`` regression outputs."""
    if task == "ce":
        return F.cross_entropy(logits.float(), target.long())
    if task == "ccc":
        return batch_ccc_loss(logits, target.reshape(logits.shape))
    if task == "mse":
        return F.mse_loss(logits.float(), target.float().reshape(logits.shape))
    raise ConfigError(f"MT-PKDOT loss.task must be one of {', '.join(TASKS)}, got {task!r}")


def feature_kd(teacher: Tensor, student: Tensor, kind: Literal["cosine", "mse"]) -> Tensor:
    """Direct feature KD (the "without OT" ablation): ``mean_b 1 - cos(t_b, s_b)`` or ``MSE(s, t)``; the teacher is
    detached."""
    t = teacher.detach().float()
    if kind == "cosine":
        return cosine_distance(student.float(), t)
    if kind == "mse":
        return F.mse_loss(student.float(), t)
    raise ConfigError(f"MT-PKDOT feature KD must be 'cosine' or 'mse', got {kind!r}")


def student_loss(task: Tensor, kd: Tensor | None, centroid: Tensor | None, o: MTPKDOTLossOptions) -> Tensor:
    """``ce_weight task + kd_weight kd + centroid_weight centroid`` (``kd: none`` or no term: task weight alone)."""
    loss = o.ce_weight * task
    if kd is not None and o.kd != "none":
        loss = loss + o.kd_weight * kd
    if centroid is not None and o.centroid_weight:
        loss = loss + o.centroid_weight * centroid
    return loss


@dataclass(frozen=True)
class MTPKDOTLossOptions:
    """Loss options of every role (each role reads the ones it uses).

    Attributes:
        task: ``ce`` (classes), ``ccc`` or ``mse`` (valence / arousal).
        kd: the student's distillation term: ``ot`` (structural KD), ``cosine`` / ``mse`` (direct feature KD) or
            ``none`` (task loss alone: the student architecture without distillation).
        teachers: the candidate teachers of the student (:data:`CANDIDATES`; ``[joint]`` = PKDOT's single joint
            teacher, which a ``fusion`` teacher can give too).
        ce_weight / kd_weight / centroid_weight: the student's weights (0.8 / 0.2 / 0; the paper's optional
            centroid term: 0.2).
        ot: :class:`~lightning_kd.distill.structural_ot.StructuralOTOptions` (k = 30 anchors, blur 0.1).
        align_weight / task_weight / head_weight: the alignment stage's weights (0.5 / 0.5 / 0.5).
    """

    task: Task = "ce"
    kd: Literal["ot", "cosine", "mse", "none"] = "ot"
    teachers: tuple[str, ...] = CANDIDATES
    ce_weight: float = 0.8
    kd_weight: float = 0.2
    centroid_weight: float = 0.0
    ot: StructuralOTOptions = field(default_factory=StructuralOTOptions)
    align_weight: float = 0.5
    task_weight: float = 0.5
    head_weight: float = 0.5


def loss_options(value: MTPKDOTLossOptions | dict[str, Any] | None) -> MTPKDOTLossOptions:
    """The options with ``ot`` as a dataclass, checked (unknown teacher names, kd kinds)."""
    o = options(MTPKDOTLossOptions, value)
    o = options(MTPKDOTLossOptions, o, ot=options(StructuralOTOptions, o.ot))
    bad = [t for t in o.teachers if t not in CANDIDATES]
    if bad or not o.teachers:
        raise ConfigError(f"MT-PKDOT loss.teachers {list(o.teachers)}: need a non-empty subset of {list(CANDIDATES)}")
    if o.kd not in ("ot", "cosine", "mse", "none"):
        raise ConfigError(f"MT-PKDOT loss.kd must be 'ot', 'cosine', 'mse' or 'none', got {o.kd!r}")
    if o.task not in TASKS:
        raise ConfigError(f"MT-PKDOT loss.task must be one of {', '.join(TASKS)}, got {o.task!r}")
    return o
