"""VLSG's training losses: graph-guided cross-view contrastive loss and cluster-level contrastive loss.

The feature-level loss is the cross-view InfoNCE of MFLVC (Xu et al., CVPR 2022, Eq. 5-6) with one change
that carries VLSG's idea (IJCAI 2024: semantic graphs guide the representation learning): samples that are
neighbours in the semantic graph are removed from each other's negatives, so semantically similar samples are
not pushed apart. The exact form is this project's interpretation (VLSG's code is not public).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import Tensor

from lightning_kd.checkpoint import ConfigError
from lightning_kd.options import options

__all__ = ["VLSGLossOptions", "cluster_contrastive", "contrastive_losses", "graph_guided_contrastive",
           "neighbour_mask"]


@dataclass(frozen=True)
class VLSGLossOptions:
    """Options of VLSG's contrastive phase (:func:`contrastive_losses`; defaults: MFLVC's values).

    Attributes:
        contrastive_weight / feature_temperature: weight and temperature of the feature-level loss
            (:func:`graph_guided_contrastive`).
        cluster_weight / cluster_temperature: weight and temperature of the cluster-level loss
            (:func:`cluster_contrastive`).
        neighbour_mode: ``"positive"``: semantic neighbours are extra positives of the cross-view contrast;
            ``"exclude"``: they are only removed from the negatives.
        pair_reduction: ``"mean"`` or ``"sum"`` of the contrastive losses over the ``V (V - 1) / 2`` view pairs.
    """

    contrastive_weight: float = 1.0
    feature_temperature: float = 0.5
    cluster_weight: float = 1.0
    cluster_temperature: float = 1.0
    neighbour_mode: Literal["exclude", "positive"] = "positive"
    pair_reduction: Literal["mean", "sum"] = "mean"

    def __post_init__(self) -> None:
        if self.neighbour_mode not in ("exclude", "positive"):
            raise ConfigError(f"model.init_args.loss.neighbour_mode must be 'exclude' or 'positive', got "
                              f"{self.neighbour_mode!r}")
        if self.pair_reduction not in ("mean", "sum"):
            raise ConfigError(f"model.init_args.loss.pair_reduction must be 'mean' or 'sum', got "
                              f"{self.pair_reduction!r}")


def neighbour_mask(neighbours: Tensor, index: Tensor) -> Tensor:
    """``(B, B)`` bool: ``[i, j]`` is True when batch samples ``i`` and ``j`` are semantic-graph neighbours.

    ``neighbours (B, m)`` holds each sample's neighbour row numbers, ``index (B,)`` the batch's row numbers.
    The relation is symmetrised (``j`` in ``N(i)`` or ``i`` in ``N(j)``); the diagonal is False.
    """
    hit = (neighbours.unsqueeze(2) == index.view(1, 1, -1)).any(dim=1)  # (B, B): index[j] in N(index[i])
    hit = hit | hit.T
    hit.fill_diagonal_(False)
    return hit


def graph_guided_contrastive(h_a: Tensor, h_b: Tensor, temperature: float = 0.5,
                             neighbours: Tensor | None = None, neighbour_mode: str = "exclude") -> Tensor:
    """Cross-view InfoNCE between two views' L2-normalised features ``h_a``, ``h_b`` ``(B, d)``.

    Every one of the ``2B`` samples is an anchor; its positive is the same sample in the other view, its
    candidates are all ``2B`` features but itself (MFLVC's NT-Xent). ``neighbours (B, B)`` bool marks pairs of
    semantic-graph neighbours, which are handled in both views by ``neighbour_mode``:

    - ``"exclude"``: they are removed from the candidates (not negatives, not positives);
    - ``"positive"``: they join the positives (multi-positive InfoNCE, as MIL-NCE / SupCon's outer-log form).

    With ``s = cos / temperature``, ``P`` the positives and ``C`` the candidates of an anchor:

    ``loss = mean_anchors [ -log sum_{p in P} exp s(anchor, p) + log sum_{c in C} exp s(anchor, c) ]``

    Computed in float32 whatever the autocast dtype.
    """
    if neighbour_mode not in ("exclude", "positive"):
        raise ValueError(f"neighbour_mode must be 'exclude' or 'positive', got {neighbour_mode!r}")
    with torch.autocast(device_type=h_a.device.type, enabled=False):
        h = torch.cat([h_a.float(), h_b.float()])  # (2B, d)
        b = h_a.shape[0]
        sim = h @ h.T / temperature
        eye = torch.eye(2 * b, dtype=torch.bool, device=h.device)
        pos = torch.roll(eye, b, dims=1)  # [i, i + B] and [i + B, i]: the same sample in the other view
        drop = eye
        if neighbours is not None:
            nb = neighbours.repeat(2, 2) & ~pos  # the same pairs within and across views
            if neighbour_mode == "exclude":
                drop = drop | nb
            else:
                pos = pos | nb
        logits = sim.masked_fill(drop, float("-inf"))
        positive = sim.masked_fill(~pos, float("-inf"))
        return (torch.logsumexp(logits, dim=1) - torch.logsumexp(positive, dim=1)).mean()


def cluster_contrastive(q_a: Tensor, q_b: Tensor, temperature: float = 1.0) -> Tensor:
    """MFLVC's label-level loss (Eq. 8-10): cross-view InfoNCE between the ``K`` cluster columns of the
    assignment matrices ``q_a``, ``q_b`` ``(B, K)``, plus ``sum_views (log K - H(mean_i q_i))``, which is 0 for
    balanced clusters and keeps all samples from collapsing into one cluster."""
    with torch.autocast(device_type=q_a.device.type, enabled=False):
        q_a, q_b = q_a.float(), q_b.float()
        k = q_a.shape[1]
        c = torch.nn.functional.normalize(torch.cat([q_a.T, q_b.T]), dim=1)  # (2K, B)
        loss = graph_guided_contrastive(c[:k], c[k:], temperature)
        for q in (q_a, q_b):
            p = q.sum(0) / q.sum()
            loss = loss + math.log(k) + (p * torch.log(p.clamp_min(1e-12))).sum()
        return loss


def contrastive_losses(h: dict[str, Tensor], q: dict[str, Tensor], neighbours: Tensor | None = None,
                       loss: VLSGLossOptions | dict[str, Any] | None = None) -> tuple[Tensor, Tensor]:
    """The unweighted feature-level and cluster-level losses of VLSG's contrastive phase, reduced over every
    pair of views (``pair_reduction``).

    Args:
        h / q: view -> L2-normalised features ``(B, d)`` / cluster probabilities ``(B, K)`` (at least 2 views).
        neighbours: ``(B, B)`` bool semantic-graph neighbours (:func:`neighbour_mask`), or None.
        loss: the :class:`VLSGLossOptions` (instance, mapping or None).
    """
    o = loss if isinstance(loss, VLSGLossOptions) else options(VLSGLossOptions, loss)
    views = list(h)
    pairs = [(a, b) for i, a in enumerate(views) for b in views[i + 1:]]
    if not pairs:
        raise ValueError("contrastive_losses needs at least two views")
    feat = clus = h[views[0]].new_zeros((), dtype=torch.float32)
    for a, b in pairs:
        feat = feat + graph_guided_contrastive(h[a], h[b], o.feature_temperature, neighbours, o.neighbour_mode)
        clus = clus + cluster_contrastive(q[a], q[b], o.cluster_temperature)
    if o.pair_reduction == "mean":
        feat, clus = feat / len(pairs), clus / len(pairs)
    return feat, clus
