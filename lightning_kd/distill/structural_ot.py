"""Structural KD with optimal transport of PKDOT / MT-PKDOT (Aslam et al., arXiv 2401.15489 and 2408.09035,
Sec. "structural similarity KD").

Teacher and student each embed the batch; their batch cosine-similarity matrices ``S_T``, ``S_S`` (``B x B``)
describe the structure of the batch. Each matrix is shifted to be non-negative, row ``i`` keeps the ``k``
columns (anchors) of LOWEST teacher similarity (the same columns for the student's row ``i``), and the
teacher's ``B`` rows and the student's ``B`` rows, two clouds of ``B`` points in ``R^k``, are compared by the
debiased Sinkhorn divergence (cost ``0.5 ||x - y||^2``, blur 0.1, i.e. epsilon = blur^2 = 0.01; uniform
weights). An optional centroid term is ``|| mean row of S_T - mean row of S_S ||_2``.

Choices of the released code (haseebaslam95/MT-PKDOT, ``mtpkdot.py``), kept here:

* shift: ``S - S.min()`` (the matrix's own minimum, per matrix), not ``(S + 1) / 2``; ``shift="affine"``
  gives the latter.
* anchors: chosen on the UNshifted teacher matrix, the diagonal included as a candidate (it is the largest
  value of a row, so it is picked only when ``k`` is the whole batch); ``k`` is clipped to the batch size.
* centroid: on the full, unshifted matrices (mean over rows, L2 norm).
* divergence: geomloss ``SamplesLoss("sinkhorn", p=2, blur=0.1)`` (debiased, ``OT_eps`` with its entropic
  KL term, epsilon annealing with ``scaling`` 0.5, envelope gradient). Here the Sinkhorn iterations are POT's
  (``ot.bregman.sinkhorn_log``) under the same annealing; ``OT_eps`` and the gradient as geomloss'. Without
  annealing, plain Sinkhorn at epsilon 0.01 needs tens of thousands of iterations on well-spread clouds.

The teacher is detached: the gradient reaches only the student.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lightning_kd.options import options

__all__ = ["StructuralOT", "StructuralOTOptions", "StructuralOTTerms", "centroid_distance",
           "cosine_similarity_matrix", "lowest_similarity_columns", "shift_nonnegative", "sinkhorn_divergence"]

Shift = Literal["min", "affine"]


def cosine_similarity_matrix(x: Tensor) -> Tensor:
    """``(B, D)`` -> ``(B, B)`` cosine similarities between the rows of ``x`` (a zero row has similarity 0)."""
    z = F.normalize(x, dim=1)
    return z @ z.T


def shift_nonnegative(s: Tensor, shift: Shift = "min") -> Tensor:
    """``s - s.min()`` (``"min"``, the released code) or ``(s + 1) / 2`` (``"affine"``): values ``>= 0``."""
    if shift == "min":
        return s - s.min()
    if shift == "affine":
        return (s + 1) / 2
    raise ValueError(f"shift must be 'min' or 'affine', got {shift!r}")


def lowest_similarity_columns(s: Tensor, k: int) -> Tensor:
    """``(B, min(k, B))`` column indices of the ``k`` lowest values of each row of ``s`` (ascending)."""
    return torch.topk(s, min(int(k), s.shape[1]), dim=1, largest=False, sorted=True).indices


def _entropic_ot(x: Tensor, y: Tensor, eps: float, max_iter: int, tol: float, scaling: float,
                 inner_iter: int) -> Tensor:
    """``OT_eps`` of uniform clouds ``x``, ``y`` for the cost ``C = 0.5 ||x - y||^2``:
    ``<P, C> + eps KL(P | a b^T)`` at POT's log-domain Sinkhorn plan ``P``, with epsilon annealing (geomloss'
    scheme): ``inner_iter`` iterations at each of ``max C, max C * scaling^2, ...`` down to ``eps``, each
    warm-started from the previous dual potentials, then up to ``max_iter`` iterations at ``eps`` (or until the
    marginal error is below ``tol``; like geomloss, no warning when the cap is hit).

    Gradient (envelope theorem): ``d OT_eps / d C = P`` at the optimum, so ``P`` is a constant of the graph.
    """
    import ot  # here, not at module level: POT (+ its scikit-learn) holds ~44 MiB that only MT-PKDOT runs use

    cost = 0.5 * ot.dist(x, y, metric="sqeuclidean")
    c = cost.detach()
    n, m = c.shape
    a = torch.full((n,), 1.0 / n, dtype=c.dtype, device=c.device)
    b = torch.full((m,), 1.0 / m, dtype=c.dtype, device=c.device)
    e, schedule = max(float(c.max()), eps), []
    while e > eps:
        schedule.append(e)
        e *= scaling ** 2
    potentials = None
    for e in [*schedule, eps]:
        warm = None if potentials is None else (potentials[0] / e, potentials[1] / e)
        plan, log = ot.bregman.sinkhorn_log(a, b, c, e, numItermax=max_iter if e == eps else inner_iter,
                                            stopThr=tol, log=True, warn=False, warmstart=warm)
        potentials = (e * log["log_u"], e * log["log_v"])
    plan = plan.detach()
    return (plan * cost).sum() + eps * torch.xlogy(plan, plan / (a[:, None] * b[None, :])).sum()


def sinkhorn_divergence(x: Tensor, y: Tensor, blur: float = 0.1, max_iter: int = 1000, tol: float = 1e-5,
                        scaling: float = 0.5, inner_iter: int = 10) -> Tensor:
    """Debiased Sinkhorn divergence ``S(x, y) = OT_eps(x, y) - 0.5 OT_eps(x, x) - 0.5 OT_eps(y, y)`` between
    the uniform point clouds ``x`` ``(N, D)`` and ``y`` ``(M, D)``; cost ``0.5 ||x - y||^2``, ``eps = blur^2``.

    0 for identical clouds; ``0.5 ||d||^2`` when ``y`` is ``x`` translated by ``d``; tends to the exact
    ``W_2^2 / 2`` as blur -> 0. ``max_iter``, ``tol``, ``scaling``, ``inner_iter``: see the Sinkhorn schedule of
    :func:`_entropic_ot`.
    """
    if x.ndim != 2 or y.ndim != 2 or x.shape[1] != y.shape[1]:
        raise ValueError(f"sinkhorn_divergence expects (N, D) and (M, D) point clouds, got {tuple(x.shape)} "
                         f"and {tuple(y.shape)}")
    eps = float(blur) ** 2
    if not 0 < scaling < 1:
        raise ValueError(f"sinkhorn_divergence: scaling must be in (0, 1), got {scaling}")
    args = (eps, int(max_iter), float(tol), float(scaling), int(inner_iter))
    xy, xx, yy = _entropic_ot(x, y, *args), _entropic_ot(x, x, *args), _entropic_ot(y, y, *args)
    return xy - 0.5 * (xx + yy)


def centroid_distance(s_teacher: Tensor, s_student: Tensor) -> Tensor:
    """``|| mean_i S_T[i] - mean_i S_S[i] ||_2`` (the optional centroid term)."""
    return torch.linalg.vector_norm(s_teacher.mean(dim=0) - s_student.mean(dim=0))


@dataclass(frozen=True)
class StructuralOTOptions:
    """Options of :class:`StructuralOT` (defaults: the paper's and the released code's).

    Attributes:
        k: anchors (lowest-teacher-similarity columns) per row (30; clipped to the batch size).
        blur: Sinkhorn blur (0.1); epsilon = blur^2.
        shift: how the similarity matrices are made non-negative: ``"min"`` (``S - S.min()``, released code)
            or ``"affine"`` (``(S + 1) / 2``).
        max_iter / tol: Sinkhorn iterations at most at the final epsilon / stopping threshold on the marginals.
        scaling / inner_iter: epsilon annealing: blur factor per stage (0.5, geomloss' default; epsilon shrinks by
            ``scaling^2``) and iterations per intermediate stage (10).
    """

    k: int = 30
    blur: float = 0.1
    shift: Shift = "min"
    max_iter: int = 1000
    tol: float = 1e-5
    scaling: float = 0.5
    inner_iter: int = 10


class StructuralOTTerms(NamedTuple):
    """Output of :class:`StructuralOT`: the OT term, the centroid term (both unweighted scalars) and the
    anchor columns ``(B, k)`` that were used."""

    ot: Tensor
    centroid: Tensor
    columns: Tensor


class StructuralOT(nn.Module):
    """Structural KD between a teacher's and a student's batch embeddings (see the module docstring).

    ``forward(teacher (B, D_t), student (B, D_s))`` -> :class:`StructuralOTTerms`; the widths may differ
    (only the ``B x B`` similarity matrices are compared). The teacher is detached. Computed in float32, outside
    any autocast region (bf16 / fp16 inputs are cast up).
    """

    def __init__(self, opts: StructuralOTOptions | dict[str, Any] | None = None, **overrides: Any) -> None:
        super().__init__()
        self.options = options(StructuralOTOptions, opts, **overrides)
        if self.options.k < 1 or self.options.blur <= 0:
            raise ValueError(f"structural OT needs k >= 1 and blur > 0, got k={self.options.k}, "
                             f"blur={self.options.blur}")
        shift_nonnegative(torch.zeros(1, 1), self.options.shift)  # an unknown shift fails here, not in training

    def forward(self, teacher: Tensor, student: Tensor) -> StructuralOTTerms:
        if teacher.ndim != 2 or student.ndim != 2 or teacher.shape[0] != student.shape[0]:
            raise ValueError(f"structural OT expects teacher (B, D_t) and student (B, D_s) embeddings of the same "
                             f"batch, got {tuple(teacher.shape)} and {tuple(student.shape)}")
        o = self.options
        with torch.autocast(student.device.type, enabled=False):  # Sinkhorn at eps = 0.01 needs float32
            s_t = cosine_similarity_matrix(teacher.detach().float())
            s_s = cosine_similarity_matrix(student.float())
            cols = lowest_similarity_columns(s_t, o.k)
            rows_t = shift_nonnegative(s_t, o.shift).gather(1, cols)
            rows_s = shift_nonnegative(s_s, o.shift).gather(1, cols)
            div = sinkhorn_divergence(rows_t, rows_s, o.blur, o.max_iter, o.tol, o.scaling, o.inner_iter)
            return StructuralOTTerms(div, centroid_distance(s_t, s_s), cols)
