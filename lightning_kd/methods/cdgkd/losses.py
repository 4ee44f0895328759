"""CDGKD objectives (Wu et al., IJCAI 2025, Method section): prototype-based modality rebalancing for the multimodal
models and dense guidance with stochastic teacher dropping for the assistants and the student.

**Prototype term** (PMR: Fan et al., "PMR: Prototypical Modal Rebalance for Multimodal Learning", CVPR 2023,
Sec. 3). For modality ``m`` with embedding ``z^m`` (its encoder output), the class prototype ``c_k^m`` is a
mean of ``z^m`` over the samples of class ``k``. Default (``prototypes: running``): running means over the training
batches (momentum 0.9), used for a batch BEFORE that batch is folded in: PMR computes class means over the whole
training set, refreshed each epoch with momentum, and this is its streaming form. ``prototypes: batch`` uses the
batch's own class means (CDGKD's released code): then each sample pulls its own prototype, which in a batch of
16 makes even a pure-noise modality look confident (in a test, p(true) ~0.9 for a noise EEG branch), so the
rebalancing ratio mostly measures that bias. Prototypes are detached (targets, as in PMR): the gradient moves each
sample toward its class prototype. A class with no prototype takes no part in the softmax.
Then ``p^m(y = k | x) = softmax_k(-||z^m - c_k^m||^2)`` (squared Euclidean; cosine
distance ``1 - cos`` optional) and ``L_proto^m = mean_i -log p^m(y_i | x_i)``.

**Teacher loss**: ``CE + alpha * sum_m coef_m * L_proto^m`` (``beta`` = face, ``gamma`` = EEG), the coefficients
set once per epoch from the modalities' summed true-class probabilities by
:class:`lightning_kd.callbacks.rebalancing.ModalityRebalancing` (rule: :func:`~lightning_kd.callbacks.rebalancing.
rebalance_coefficients`). The released code's coefficients never leave 0: what it accumulates is an average
over the two-way softmax of distances, not the true-class probability; a softmax row sums to 1, so both sums are
``0.5 * N`` and rho = 1 every epoch (beta = gamma = 0, the prototype term never acts). We accumulate
``p^m(y_i | x_i)`` (:func:`prototype_probabilities`).

**Dense guidance**: ``L = a CE(y, p_s) + (1 - a) sum_{j kept} T^2 KL(p_j^T || p_s^T)`` over every
earlier model ``j`` (teacher, TA1, ...), ``T = 2``, with :func:`lightning_kd.distill.logit_kd.kd_kl` (teacher ->
student direction and the ``T^2`` factor; the released code uses the reverse KL without it, and never passes
the KD weight, so its assistants and student train on plain CE). Stochastic learning: each teacher's term is
dropped with probability ``drop_prob`` (0.5) per training step. Kept terms are SUMMED (the paper's sum, not a
mean over kept teachers, so the KD weight per teacher does not depend on how many survived); when every term
is dropped the step optimises ``a CE`` alone. Drops are counter-based (:func:`teacher_keep_mask`): a pure function
of ``(seed, step, teacher index)``, so a run and its resumed copy drop the same terms.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lightning_kd.data.missing import hash_uniform
from lightning_kd.distill.logit_kd import kd_kl

__all__ = ["CDGKDLossOptions", "RunningPrototypes", "class_means", "dense_guidance", "prototype_loss",
           "prototype_probabilities", "teacher_keep_mask"]

#: salt of the teacher-drop stream (keeps it apart from other users of ``hash_uniform`` with the same seed)
_DROP_SALT = 0xCD6CD


@dataclass(frozen=True)
class CDGKDLossOptions:
    """Objective options.

    Attributes:
        alpha: weight of the prototype terms (the paper searches 0.5 .. 3); 0 disables them.
        distance: prototype distance, ``sqeuclidean`` (the paper) or ``cosine`` (``1 - cos``).
        prototypes: ``running`` (class means over batches with ``momentum``, see :class:`RunningPrototypes`) or
            ``batch`` (the batch's own class means, as CDGKD's released code).
        momentum: of the running prototypes (0.9).
        ce_weight: ``a`` of the dense guidance (0.5, the released scripts' ``ALPHA``).
        temperature: ``T`` of the KD terms (2).
        drop_prob: probability of dropping each teacher's term per step (0.5; 0 keeps all).
    """

    alpha: float = 1.0
    distance: str = "sqeuclidean"
    prototypes: str = "running"
    momentum: float = 0.9
    ce_weight: float = 0.5
    temperature: float = 2.0
    drop_prob: float = 0.5

    def __post_init__(self) -> None:
        if self.distance not in ("sqeuclidean", "cosine"):
            raise ValueError(f"distance must be 'sqeuclidean' or 'cosine', got {self.distance!r}")
        if self.prototypes not in ("running", "batch"):
            raise ValueError(f"prototypes must be 'running' or 'batch', got {self.prototypes!r}")
        if not 0.0 <= self.ce_weight <= 1.0 or not 0.0 <= self.drop_prob <= 1.0:
            raise ValueError(f"ce_weight and drop_prob must lie in [0, 1], got {self.ce_weight}, {self.drop_prob}")
        if self.temperature <= 0 or self.alpha < 0:
            raise ValueError(f"need temperature > 0 and alpha >= 0, got {self.temperature}, {self.alpha}")


def class_means(z: Tensor, labels: Tensor, num_classes: int = 2) -> tuple[Tensor, Tensor]:
    """``(means (C, d), present (C,) bool)``: detached float32 class means of ``z`` in the batch."""
    onehot = F.one_hot(labels.long(), num_classes).float()  # (B, C)
    count = onehot.sum(0)
    return ((onehot.t() @ z.detach().float()) / count.clamp_min(1.0)[:, None]), count > 0


def prototype_probabilities(z: Tensor, labels: Tensor, num_classes: int = 2, distance: str = "sqeuclidean",
                            prototypes: tuple[Tensor, Tensor] | None = None) -> Tensor:
    """``(B, num_classes)`` ``p(y = k | x_i) = softmax_k(-d(z_i, c_k))``.

    Args:
        prototypes: ``(c (C, d), valid (C,) bool)``; ``None`` = the batch class means (:func:`class_means`).
            Classes without a valid prototype get probability 0 (left out of the softmax). Computed in float32.
    """
    z = z.float()
    protos, valid = class_means(z, labels, num_classes) if prototypes is None else prototypes
    protos = protos.detach().to(z)
    if distance == "cosine":
        d = 1.0 - F.normalize(z, dim=-1) @ F.normalize(protos, dim=-1).t()
    else:
        d = (z[:, None, :] - protos[None, :, :]).pow(2).sum(-1)  # (B, C), exact (no cdist expansion error)
    return (-d).masked_fill(~valid.to(z.device)[None, :], float("-inf")).softmax(-1)


def prototype_loss(z: Tensor, labels: Tensor, num_classes: int = 2, distance: str = "sqeuclidean",
                   prototypes: tuple[Tensor, Tensor] | None = None) -> tuple[Tensor, Tensor]:
    """``(L_proto, p_true)``: mean ``-log p(y_i | x_i)`` and the ``(B,)`` true-class probabilities (detached)."""
    p = prototype_probabilities(z, labels, num_classes, distance, prototypes)
    p_true = p.gather(1, labels.long()[:, None])[:, 0]
    return -p_true.clamp_min(1e-12).log().mean(), p_true.detach()


class RunningPrototypes(nn.Module):
    """Class prototypes as running means over training batches: ``c_k <- m c_k + (1 - m) mean_batch(z | k)``.

    :meth:`current` gives the prototypes BEFORE the batch is folded in (a sample never pulls its own prototype;
    a class not seen yet falls back to the batch mean), then :meth:`update` folds the batch in. Buffers are saved
    with the module, so a resumed run continues with the same prototypes.
    """

    def __init__(self, num_classes: int, dim: int, momentum: float = 0.9) -> None:
        super().__init__()
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"prototype momentum must lie in [0, 1), got {momentum}")
        self.momentum = momentum
        self.register_buffer("means", torch.zeros(num_classes, dim))
        self.register_buffer("seen", torch.zeros(num_classes, dtype=torch.bool))

    def current(self, z: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
        batch, present = class_means(z, labels, self.means.shape[0])
        use = torch.where(self.seen[:, None], self.means, batch)
        return use, self.seen | present

    @torch.no_grad()
    def update(self, z: Tensor, labels: Tensor) -> None:
        batch, present = class_means(z, labels, self.means.shape[0])
        mixed = torch.where(self.seen[:, None], self.momentum * self.means + (1 - self.momentum) * batch, batch)
        self.means.copy_(torch.where(present[:, None], mixed, self.means))
        self.seen |= present


def teacher_keep_mask(seed: int, step: int, n_teachers: int, drop_prob: float = 0.5,
                      device: torch.device | str | None = None) -> Tensor:
    """``(n_teachers,)`` bool: True where teacher ``j``'s KD term is kept at training step ``step``.

    ``u_j = hash_uniform(seed ^ salt, step, j)`` (:func:`lightning_kd.data.missing.hash_uniform`), kept iff
    ``u_j >= drop_prob``: independent Bernoulli(1 - drop_prob) per (step, teacher), the same for the same
    ``(seed, step, j)`` on any device and after a resume, different for another seed. The module passes the
    optimiser step (``trainer.global_step``): with gradient accumulation the micro-batches of one step share a mask.
    """
    index = torch.arange(n_teachers, device=device)
    u = hash_uniform((int(seed) ^ _DROP_SALT) & 0xFFFFFFFF, int(step), index)[:, 0]
    return u >= drop_prob


def dense_guidance(student_logits: Tensor, labels: Tensor, teacher_logits: Sequence[Tensor], keep: Tensor,
                   ce_weight: float = 0.5, temperature: float = 2.0) -> dict[str, Tensor]:
    """Dense-guidance terms: ``loss = a CE + (1 - a) sum_{j: keep_j} kd_kl(s, t_j, T)``.

    Without teachers the loss is plain CE (weight 1). Returns ``loss``, ``ce``, and per teacher ``j``
    ``kd/teacher_j`` (its KD value, detached, computed whether kept or not) and ``kept/teacher_j`` (1.0 / 0.0).
    """
    ce = F.cross_entropy(student_logits.float(), labels.long())
    terms: dict[str, Tensor] = {"ce": ce.detach()}
    if not teacher_logits:
        terms["loss"] = ce
        return terms
    if keep.shape != (len(teacher_logits),):
        raise ValueError(f"keep must have one entry per teacher ({len(teacher_logits)}), got {tuple(keep.shape)}")
    kd = ce.new_zeros(())
    for j, t in enumerate(teacher_logits):
        term = kd_kl(student_logits, t, temperature)
        terms[f"kd/teacher_{j}"] = term.detach()
        terms[f"kept/teacher_{j}"] = keep[j].float()
        if bool(keep[j]):
            kd = kd + term
    terms["kd"] = kd.detach()
    terms["loss"] = ce_weight * ce + (1.0 - ce_weight) * kd
    return terms
