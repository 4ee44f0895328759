"""Per-batch teacher selection of MT-PKDOT (Aslam et al., arXiv 2408.09035, Sec. "multi-teacher"): of the
teachers (the joint embedding and the adapted unimodal ones, each with its own head), the one whose head has the
lowest loss on the batch (cross-entropy for classes) is the teacher of that batch.

Ties go to the lowest index (the released code's ``list.index(min(...))``). Counts are recorded into a
:class:`~lightning_kd.distill.DistillStats` as ``selected/teacher_<i>`` for EVERY teacher on every batch (0 or 1),
so a teacher that is never chosen still shows a 0 in the per-epoch log; no host sync.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from lightning_kd.distill.stats import DistillStats

__all__ = ["SELECTED_PREFIX", "select_teacher"]

#: name prefix of the selection counts: ``selected/teacher_0``, ``selected/teacher_1``, ...
SELECTED_PREFIX = "selected/teacher_"


def select_teacher(logits: Sequence[Tensor], labels: Tensor, stats: DistillStats | None = None,
                   loss_fn: Callable[[Tensor, Tensor], Tensor] = F.cross_entropy,
                   prefix: str = SELECTED_PREFIX, names: Sequence[str] | None = None) -> tuple[Tensor, Tensor]:
    """The teacher whose head has the lowest batch loss.

    Args:
        logits: one ``(B, C)`` output per teacher (any shape ``loss_fn`` takes with ``labels``).
        labels: ``(B,)`` class indices (or the targets ``loss_fn`` takes, e.g. ``(B, 2)`` for valence/arousal
            with ``F.mse_loss``).
        stats: if given, ``stats.count(f"{prefix}{i}", 1 if i was chosen else 0)`` for every teacher ``i``.
        loss_fn: the per-teacher loss, reduced to a scalar (cross-entropy by default).
        names: the teachers' names in the counts (``f"{prefix}{names[i]}"``); None: their indices.

    Returns:
        ``(index, losses)``: the chosen teacher as a 0-d long tensor (``int(index)`` for a Python int;
        ``torch.stack(embeddings)[index]`` picks its embedding without a host sync) and the ``(T,)`` losses,
        detached.
    """
    if len(logits) == 0:
        raise ValueError("select_teacher needs at least one teacher's logits")
    with torch.no_grad():
        losses = torch.stack([loss_fn(z.detach(), labels).reshape(()) for z in logits])
        index = torch.argmin(losses)  # first minimum on ties
    if names is not None and len(names) != len(logits):
        raise ValueError(f"select_teacher: {len(names)} names for {len(logits)} teachers")
    if stats is not None:
        for i in range(len(logits)):
            stats.count(f"{prefix}{names[i] if names is not None else i}", (index == i).long())
    return index, losses
