"""Graph Distillation Unit (GD-Unit) of DMD (Li et al., CVPR 2023, Sec. 3.3).

A GD-Unit is a directed graph whose vertices are the modalities ``[L, V, A]``; every vertex holds a
logit and a representation. A learned, per-sample weight on each of the 6 directed edges says how
much the target vertex (student) should imitate the source vertex (teacher). Teachers are detached,
so the distillation gradient reaches only the student side (the edge weights themselves learn from
every vertex's embedding).

Edge order (the official vertex loop ``for target j: for source i != j``)::

    V->L, A->L, L->V, A->V, L->A, V->A
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["EDGES", "EDGE_NAMES", "VERTICES", "HOMO_PRIOR_LOGITS", "HETERO_PRIOR_LOGITS", "GDLoss", "GDUnit"]

VERTICES: tuple[str, ...] = ("L", "V", "A")
#: (source, target) vertex indices over [L, V, A], in the official order.
EDGES: tuple[tuple[int, int], ...] = ((1, 0), (2, 0), (0, 1), (2, 1), (0, 2), (1, 2))
EDGE_NAMES: tuple[str, ...] = tuple(f"{VERTICES[s]}->{VERTICES[t]}" for s, t in EDGES)
#: official prior logits (softmax with temperature 0.25): homo favours L->V and L->A ...
HOMO_PRIOR_LOGITS: tuple[float, ...] = (0.0, 0.0, 1.0, 0.0, 1.0, 0.0)
#: ... hetero additionally V->A.
HETERO_PRIOR_LOGITS: tuple[float, ...] = (0.0, 0.0, 1.0, 0.0, 1.0, 1.0)


class GDLoss(NamedTuple):
    """Output of :class:`GDUnit`: edge weights ``(6, B)`` and three scalar terms (already weighted)."""

    edges: Tensor
    logit: Tensor
    repr: Tensor
    reg: Tensor


class GDUnit(nn.Module):
    """GD-Unit over 3 modality vertices.

    Vertex embedding ``z_m = [W_logit(logit_m); W_repr(repr_m)]`` (``2 * embed_size``); the score of edge
    ``s -> t`` is ``W_edge([z_t; z_s])`` (official ``W_edge(cat(z[j], z[i]))``, j the target); the 6 scores
    of a sample are normalised together, ``softmax(alpha * scores)``.

    Loss terms, with ``w_e = edge_e + prior_e`` per sample and the source (teacher) detached:

    - ``logit = sum_e mean_b(w_e * sum_c |logit_t - logit_s|)``
    - ``repr`` (``"l1"``) ``= repr_weight * sum_e mean_b(w_e * sum_d |repr_t - repr_s|)``
    - ``repr`` (``"cosine"``) ``= repr_weight * sum_e mean_b(w_e * (1 - cos))`` for ``"attract"`` (the
      paper's intent), ``mean_b(w_e * max(0, cos))`` for ``"repel"``. official code: the hetero unit uses
      ``CosineEmbeddingLoss(y=-1)`` (= repel) and reduces it to a scalar over the batch BEFORE
      multiplying by the edge weights, so its edges do not weight it per sample; here they do.
    - ``reg = reg_weight * sum_e (mean_b edge_e - prior_e)^2``

    Args:
        repr_dim: size of a vertex representation. embed_size: ``W_logit``/``W_repr`` output size
            (official: 64 homo, 32 hetero).
        prior_logits: 6 logits in :data:`EDGES` order; ``prior = softmax(prior_logits / prior_temperature)``.
        alpha: edge-score scale before the softmax (official 1/8).
        reg_weight: weight of the prior regulariser (official 10). repr_weight: weight of the repr term
            (official ``w_losses[1] = 10``).
        repr_metric: ``"l1"`` (homo) or ``"cosine"`` (hetero). cosine_direction: see above.
        n_logits: logits per vertex (1 for regression).
    """

    def __init__(self, repr_dim: int, embed_size: int, prior_logits: Sequence[float], prior_temperature: float = 0.25,
                 alpha: float = 1 / 8, reg_weight: float = 10.0, repr_weight: float = 10.0,
                 repr_metric: Literal["l1", "cosine"] = "l1",
                 cosine_direction: Literal["attract", "repel"] = "attract", n_logits: int = 1) -> None:
        super().__init__()
        if len(prior_logits) != len(EDGES):
            raise ValueError(
                f"prior_logits needs {len(EDGES)} values (edge order {EDGE_NAMES}), got {len(prior_logits)}")
        if repr_metric not in ("l1", "cosine"):
            raise ValueError(f"repr_metric must be 'l1' or 'cosine', got {repr_metric!r}")
        if cosine_direction not in ("attract", "repel"):
            raise ValueError(f"cosine_direction must be 'attract' or 'repel', got {cosine_direction!r}")
        self.alpha, self.reg_weight, self.repr_weight = alpha, reg_weight, repr_weight
        self.repr_metric, self.cosine_direction, self.n_logits = repr_metric, cosine_direction, n_logits
        self.W_logit = nn.Linear(n_logits, embed_size)
        self.W_repr = nn.Linear(repr_dim, embed_size)
        self.W_edge = nn.Linear(4 * embed_size, 1)
        prior = torch.softmax(torch.as_tensor(prior_logits, dtype=torch.float32) / prior_temperature, dim=0)
        self.register_buffer("prior", prior, persistent=False)  # derived from config: not checkpointed
        self.register_buffer("src", torch.tensor([s for s, _ in EDGES]), persistent=False)
        self.register_buffer("tgt", torch.tensor([t for _, t in EDGES]), persistent=False)

    def _logits3d(self, logits: Tensor) -> Tensor:
        return logits.unsqueeze(-1) if logits.dim() == 2 else logits

    def edge_weights(self, logits: Tensor, reprs: Tensor) -> Tensor:
        """``logits (3, B[, C])``, ``reprs (3, B, D)`` -> edge weights ``(6, B)`` (each column sums to 1)."""
        z = torch.cat([self.W_logit(self._logits3d(logits)), self.W_repr(reprs)], dim=-1)  # (3, B, 2E)
        scores = self.W_edge(torch.cat([z[self.tgt], z[self.src]], dim=-1)).squeeze(-1)  # (6, B)
        return torch.softmax(self.alpha * scores, dim=0)

    def forward(self, logits: Tensor, reprs: Tensor) -> GDLoss:
        """Edge weights and the weighted distillation terms for ``logits (3, B[, C])``, ``reprs (3, B, D)``."""
        edges = self.edge_weights(logits, reprs)
        dtype = torch.promote_types(edges.dtype, torch.float32)  # distances in >= fp32 (also under autocast)
        w = edges.to(dtype) + self.prior[:, None].to(dtype)  # (6, B)
        lg = self._logits3d(logits).to(dtype)
        d_logit = (lg[self.tgt] - lg[self.src].detach()).abs().sum(-1)  # (6, B)
        reprs = reprs.to(dtype)
        r_t, r_s = reprs[self.tgt], reprs[self.src].detach()
        if self.repr_metric == "l1":
            d_repr = (r_t - r_s).abs().sum(-1)
        else:
            cos = F.cosine_similarity(r_t, r_s, dim=-1)
            d_repr = 1.0 - cos if self.cosine_direction == "attract" else cos.clamp_min(0.0)
        logit = (w * d_logit).mean(1).sum()
        repr_ = self.repr_weight * (w * d_repr).mean(1).sum()
        reg = self.reg_weight * (edges.to(dtype).mean(1) - self.prior.to(dtype)).pow(2).sum()
        return GDLoss(edges, logit, repr_, reg)
