"""DMD losses: margin similarity, orthogonality, and the full objective with the two GD-Units.

Paper: Li, Wang, Cui, CVPR 2023 -- decoupling losses in Sec. 3.2, graph distillation in Sec. 3.3.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lightning_kd.distill.gd_unit import HETERO_PRIOR_LOGITS, HOMO_PRIOR_LOGITS, GDUnit
from lightning_kd.methods.dmd.model import DMDOutput
from lightning_kd.options import options

__all__ = ["similarity_hinge_loss", "orthogonality_loss", "DMDLossOptions", "DMDObjective"]

_BIG = 1e4  # larger than any hinge argument (cosines are in [-1, 1], margins are O(1))


def _official_cosine_matrix(x: Tensor) -> Tensor:
    """Pairwise cosine ``(N, N)`` with the official ``HingeLoss.compute_cosine`` epsilon."""
    norm = (x.pow(2).sum(-1) + 1e-8).sqrt().clamp_min(1e-8)
    return (x @ x.T) / (norm[:, None] * norm[None, :])


def similarity_hinge_loss(feats: Tensor, target: Tensor, margin_scale: float = 0.15) -> Tensor:
    """Margin hinge on shared features (official ``HingeLoss``), vectorised.

    Anchors are all ``M * B`` vectors of ``feats (M, B, d)``; the label of a vector is its sample's
    ``target (B,)``. For anchor ``i``, positives ``P_i`` are the other vectors with the same label (at
    least the other modalities of the same sample), negatives ``N_i`` those with a different label::

        loss_i = mean_{p in P_i, n in N_i} relu(margin_scale * |y_i - y_n| - cos(i, p) + cos(i, n))

    Anchors without positives or negatives are skipped; the result is the mean over the remaining
    anchors (0 if none). The double sum is computed per anchor in ``O(N log N)`` memory-light form:
    ``sum_p relu(a_n - b_p) = cnt(b < a_n) * a_n - sum(b < a_n)`` with the positive cosines sorted.
    """
    M, B, d = feats.shape
    dtype = torch.promote_types(feats.dtype, torch.float32)  # hinge in >= fp32 (also under autocast)
    x = feats.reshape(M * B, d).to(dtype)
    y = target.reshape(-1).to(dtype).repeat(M)  # label of row m*B + b is target[b]
    N = x.shape[0]
    cos = _official_cosine_matrix(x).to(dtype)
    same = y[:, None] == y[None, :]
    pos = same & ~torch.eye(N, dtype=torch.bool, device=x.device)
    neg = ~same
    n_pos, n_neg = pos.sum(1), neg.sum(1)
    valid = (n_pos > 0) & (n_neg > 0)
    a = margin_scale * (y[:, None] - y[None, :]).abs() + cos  # hinge threshold per negative
    b, _ = cos.masked_fill(~pos, _BIG).sort(dim=1)  # positive cosines ascending, padding at the end
    prefix = F.pad(b.cumsum(1), (1, 0))  # prefix[k] = sum of the k smallest
    cnt = torch.searchsorted(b, a.contiguous())  # number of positives with b_p < a_n
    per_pair = cnt.to(dtype) * a - prefix.gather(1, cnt)  # sum_p relu(a_n - b_p)
    per_anchor = (per_pair * neg).sum(1) / (n_pos * n_neg).clamp_min(1).to(dtype)
    # mean over valid anchors without a host sync; 0 (still differentiable) when none is valid
    return (per_anchor * valid).sum() / valid.sum().clamp_min(1).to(dtype)


def orthogonality_loss(private: Tensor, shared: Tensor, dim: int = 1) -> Tensor:
    """Mean over (sample, step) of ``relu(cos(s, c))`` along the feature axis ``dim`` (``(B, d, L)``: 1).

    official code: ``CosineEmbeddingLoss(y=-1)`` applied to ``(L, B, d)`` tensors takes the cosine over
    axis 1, i.e. over the BATCH; the paper's intent (decoupled private/shared FEATURES) is the feature
    axis, which we use.
    """
    dtype = torch.promote_types(private.dtype, torch.float32)
    return F.cosine_similarity(private.to(dtype), shared.to(dtype), dim=dim).clamp_min(0.0).mean()


@dataclass(frozen=True)
class DMDLossOptions:
    """Options of :class:`DMDObjective` (defaults: official values, or the paper where the code contradicts it).

    Attributes:
        gd_weight: weight of both graph-distillation terms (official 0.05).
        aux_weight: weight of the decoupling terms (official 0.1).
        sim_ort_weight: weight of similarity + orthogonality inside them (official 0.1).
        homo_repr: add the homo representation term (paper; the official code computes but never adds it).
        hetero_repr_direction: ``attract`` (paper, ``1 - cos``) or ``repel`` (official ``CosineEmbeddingLoss(y=-1)``).
        gd_reg_weight: GD-Unit edge regulariser weight (official 10).
        gd_repr_weight: GD-Unit representation term weight (official 10).
        sim_margin_scale: similarity hinge margin per label unit (official 0.15).
    """

    gd_weight: float = 0.05
    aux_weight: float = 0.1
    sim_ort_weight: float = 0.1
    homo_repr: bool = True
    hetero_repr_direction: Literal["attract", "repel"] = "attract"
    gd_reg_weight: float = 10.0
    gd_repr_weight: float = 10.0
    sim_margin_scale: float = 0.15


class DMDObjective(nn.Module):
    """The DMD training objective, holding the two GD-Units (paper Sec. 3.2-3.3; official ``DMD.do_train``)::

        loss = task
             + gd_weight * (homo_logit + [homo_repr] + homo_reg)
             + gd_weight * (hetero_logit + hetero_repr + hetero_reg)
             + aux_weight * (self_regression + recon + sim_ort_weight * (sim + ort))

    ``task`` is the L1 loss summed over 8 heads (prediction, 3 homo, 3 hetero, logits_c); ``recon`` sums
    ``MSE(recon_m, X~_m)``, ``self_regression`` sums ``MSE(s_m, s_m_r)``; ``sim`` is
    :func:`similarity_hinge_loss` on ``shared_sim``; ``ort`` sums :func:`orthogonality_loss` per modality.

    Where the official code contradicts the paper, the defaults follow the paper:

    - ``homo_repr=True``. official code: the homo representation term is computed but never added.
    - ``hetero_repr_direction="attract"`` (``1 - cos``). official code: ``CosineEmbeddingLoss(y=-1)``
      pushes student and teacher APART (``"repel"``), and is not weighted per sample by the edges.

    Args:
        hidden: d of the :class:`~lightning_kd.methods.dmd.model.DMDNet` (homo repr d, hetero repr 2d).
        loss: the :class:`DMDLossOptions` (instance, mapping or None); ``overrides`` replace single fields.
    """

    def __init__(self, hidden: int, loss: DMDLossOptions | dict[str, Any] | None = None, **overrides: Any) -> None:
        super().__init__()
        o = self.options = options(DMDLossOptions, loss, **overrides)
        self.gd_weight, self.aux_weight, self.sim_ort_weight = o.gd_weight, o.aux_weight, o.sim_ort_weight
        self.homo_repr, self.sim_margin_scale = o.homo_repr, o.sim_margin_scale
        self.homo_gd = GDUnit(hidden, 64, HOMO_PRIOR_LOGITS, reg_weight=o.gd_reg_weight, repr_weight=o.gd_repr_weight,
                              repr_metric="l1")
        self.hetero_gd = GDUnit(2 * hidden, 32, HETERO_PRIOR_LOGITS, reg_weight=o.gd_reg_weight,
                                repr_weight=o.gd_repr_weight, repr_metric="cosine",
                                cosine_direction=o.hetero_repr_direction)

    def forward(self, out: DMDOutput, target: Tensor) -> dict[str, Tensor]:
        """All terms (unweighted, as returned by their functions), ``homo_edges``/``hetero_edges`` ``(6, B)``
        detached for logging, and the weighted total ``loss``."""
        heads = torch.cat([out.prediction[None], out.logits_homo, out.logits_hetero, out.logits_c[None]])  # (8, B)
        heads = heads.to(torch.promote_types(heads.dtype, torch.float32))  # losses in >= fp32 under autocast
        y = target.reshape(-1).to(heads.dtype)
        task = (heads - y).abs().mean(1).sum()
        homo = self.homo_gd(out.logits_homo, out.reprs_homo)
        hetero = self.hetero_gd(out.logits_hetero, out.reprs_hetero)
        recon = sum(F.mse_loss(r, p) for r, p in zip(out.recon, out.proj))
        self_regression = sum(F.mse_loss(s, s_r) for s, s_r in zip(out.private, out.private_recon))
        sim = similarity_hinge_loss(out.shared_sim, y, self.sim_margin_scale)
        ort = sum(orthogonality_loss(s, c) for s, c in zip(out.private, out.shared))

        gd_homo = homo.logit + homo.reg + (homo.repr if self.homo_repr else 0.0)
        gd_hetero = hetero.logit + hetero.repr + hetero.reg
        aux = self_regression + recon + self.sim_ort_weight * (sim + ort)
        loss = task + self.gd_weight * (gd_homo + gd_hetero) + self.aux_weight * aux
        return {
            "loss": loss, "task": task,
            "homo_logit": homo.logit, "homo_repr": homo.repr, "homo_reg": homo.reg,
            "hetero_logit": hetero.logit, "hetero_repr": hetero.repr, "hetero_reg": hetero.reg,
            "recon": recon, "self_regression": self_regression, "sim": sim, "ort": ort,
            "homo_edges": homo.edges.detach(), "hetero_edges": hetero.edges.detach(),
        }
