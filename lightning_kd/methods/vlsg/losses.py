"""VLSG's training losses: graph-guided cross-view contrastive loss and cluster-level contrastive loss.

The feature-level loss is the cross-view InfoNCE of MFLVC (Xu et al., CVPR 2022, Eq. 5-6) with one change
that carries VLSG's idea (IJCAI 2024: semantic graphs guide the representation learning): samples that are
neighbours in the semantic graph are removed from each other's negatives, so semantically similar samples are
not pushed apart. The exact form is this project's interpretation (VLSG's code is not public).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = ["cluster_contrastive", "graph_guided_contrastive", "neighbour_mask"]


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
