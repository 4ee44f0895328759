"""GD-Unit: edge order, normalisation, prior, regulariser and distillation terms by hand."""

from __future__ import annotations

import math

import pytest
import torch

from lightning_kd.distill.gd_unit import EDGES, HETERO_PRIOR_LOGITS, HOMO_PRIOR_LOGITS, GDUnit

ZERO_PRIOR = [0.0] * 6  # prior = 1/6 on every edge


def uniform_edges(unit: GDUnit) -> GDUnit:
    """Zero W_edge: every score is 0, so the edges are 1/6 and no gradient flows through them."""
    with torch.no_grad():
        unit.W_edge.weight.zero_()
        unit.W_edge.bias.zero_()
    return unit


# hand values of softmax([0,0,1,0,1,0] / 0.25): two edges with exp(4), four with exp(0)
HI = math.exp(4) / (4 + 2 * math.exp(4))
LO = 1 / (4 + 2 * math.exp(4))


def test_edges_are_softmax_over_the_six_edges():
    torch.manual_seed(0)
    unit = GDUnit(repr_dim=5, embed_size=4, prior_logits=HOMO_PRIOR_LOGITS)
    edges = unit.edge_weights(torch.randn(3, 7), torch.randn(3, 7, 5))
    assert edges.shape == (6, 7)
    torch.testing.assert_close(edges.sum(0), torch.ones(7))
    assert (edges > 0).all()
    # (M, B, C) logits with n_logits = C
    unit3 = GDUnit(repr_dim=5, embed_size=4, prior_logits=HOMO_PRIOR_LOGITS, n_logits=3)
    out = unit3(torch.randn(3, 7, 3), torch.randn(3, 7, 5))
    assert out.edges.shape == (6, 7) and out.logit.dim() == 0


@pytest.mark.parametrize("k", range(6))
def test_edge_order_matches_EDGES(k):
    # z_m = [W_logit(logit) = 0 ; W_repr(onehot_m) = onehot_m]  (embed_size 3)
    # W_edge([z_t; z_s]) reads target one-hot at 3..5 and source one-hot at 9..11.
    src, tgt = EDGES[k]
    unit = GDUnit(repr_dim=3, embed_size=3, prior_logits=ZERO_PRIOR, alpha=1.0)
    with torch.no_grad():
        unit.W_logit.weight.zero_(), unit.W_logit.bias.zero_()
        unit.W_repr.weight.copy_(torch.eye(3)), unit.W_repr.bias.zero_()
        unit.W_edge.weight.zero_(), unit.W_edge.bias.zero_()
        unit.W_edge.weight[0, 3 + tgt] = 10.0
        unit.W_edge.weight[0, 9 + src] = 10.0
    reprs = torch.eye(3)[:, None, :].expand(3, 2, 3)  # vertex m carries one-hot m, 2 samples
    edges = unit.edge_weights(torch.zeros(3, 2), reprs)
    # edge k scores 20, edges sharing its target or source 10, the rest 0
    assert (edges.argmax(0) == k).all()
    assert edges[k, 0] > 0.99


def test_prior_is_a_buffer_with_the_official_values():
    unit = GDUnit(repr_dim=2, embed_size=2, prior_logits=HOMO_PRIOR_LOGITS)
    assert "prior" in dict(unit.named_buffers())
    torch.testing.assert_close(unit.prior, torch.tensor([LO, LO, HI, LO, HI, LO]))
    e = math.exp(4)  # hetero: three edges with exp(4)
    het = GDUnit(repr_dim=2, embed_size=2, prior_logits=HETERO_PRIOR_LOGITS).prior
    torch.testing.assert_close(het, torch.tensor([1, 1, e, 1, e, e]) / (3 + 3 * e))
    assert unit.double().prior.dtype == torch.float64  # moves with the module


def test_regulariser_by_hand():
    unit = uniform_edges(GDUnit(repr_dim=2, embed_size=2, prior_logits=HOMO_PRIOR_LOGITS, reg_weight=10.0))
    out = unit(torch.randn(3, 4), torch.randn(3, 4, 2))
    torch.testing.assert_close(out.edges, torch.full((6, 4), 1 / 6))
    expected = 10.0 * (4 * (1 / 6 - LO) ** 2 + 2 * (1 / 6 - HI) ** 2)
    assert out.reg.item() == pytest.approx(expected, rel=1e-5)


def test_logit_and_repr_terms_by_hand():
    # 3 vertices x 2 samples. logits: L = [0, 1], V = [1, 1], A = [3, -1]
    logits = torch.tensor([[0.0, 1.0], [1.0, 1.0], [3.0, -1.0]])
    # reprs (D = 2): L = [(0,0), (1,1)], V = [(1,0), (1,1)], A = [(0,2), (0,0)]
    reprs = torch.tensor([[[0.0, 0.0], [1.0, 1.0]], [[1.0, 0.0], [1.0, 1.0]], [[0.0, 2.0], [0.0, 0.0]]])
    unit = uniform_edges(GDUnit(repr_dim=2, embed_size=4, prior_logits=HOMO_PRIOR_LOGITS, repr_weight=10.0))
    out = unit(logits, reprs)
    # w_e = 1/6 + prior_e, prior = [LO, LO, HI, LO, HI, LO] over V->L, A->L, L->V, A->V, L->A, V->A
    # logit |t - s| per sample, then mean over the 2 samples:
    #   V->L |0-1|,|1-1| = 1,0 -> 0.5   A->L |0-3|,|1+1| = 3,2 -> 2.5   L->V 1,0 -> 0.5
    #   A->V |1-3|,|1+1| = 2,2 -> 2     L->A 3,2 -> 2.5                  V->A 2,2 -> 2
    # sum_e w_e * mean_e = (0.5+2.5+0.5+2+2.5+2)/6 + LO*(0.5+2.5+2+2) + HI*(0.5+2.5)
    logit = 10 / 6 + 7 * LO + 3 * HI
    assert out.logit.item() == pytest.approx(logit, rel=1e-5)
    # repr sum_d |t - s| per sample: |L-V| = 1,0  |L-A| = 2,2  |V-A| = 3,2
    #   means: V->L 0.5, A->L 2, L->V 0.5, A->V 2.5, L->A 2, V->A 2.5  (sum 10)
    # 10 * (10/6 + LO*(0.5+2+2.5+2.5) + HI*(0.5+2))
    repr_ = 10 * (10 / 6 + 7.5 * LO + 2.5 * HI)
    assert out.repr.item() == pytest.approx(repr_, rel=1e-5)


def test_teacher_side_is_detached():
    # one sample, logits L = 0, V = 1, A = 3, w = 1/6 + 1/6 = 1/3 on every edge, no gradient through edges.
    unit = uniform_edges(GDUnit(repr_dim=1, embed_size=2, prior_logits=ZERO_PRIOR, repr_weight=10.0))
    logits = torch.tensor([[0.0], [1.0], [3.0]], requires_grad=True)
    reprs = torch.tensor([[[0.0]], [[1.0]], [[3.0]]], requires_grad=True)
    out = unit(logits, reprs)
    (g_logit,) = torch.autograd.grad(out.logit, logits, retain_graph=True)
    # student-only gradient: L is the target of V->L, A->L: (sign(0-1) + sign(0-3)) / 3 = -2/3
    # V: (sign(1-0) + sign(1-3)) / 3 = 0;  A: (sign(3-0) + sign(3-1)) / 3 = 2/3
    # (an undetached teacher would add the source-side terms: [-4/3, 0, 4/3])
    torch.testing.assert_close(g_logit, torch.tensor([[-2 / 3], [0.0], [2 / 3]]))
    (g_repr,) = torch.autograd.grad(out.repr, reprs)
    torch.testing.assert_close(g_repr, 10 * torch.tensor([[[-2 / 3]], [[0.0]], [[2 / 3]]]))


def test_cosine_attract_and_repel():
    v = torch.tensor([1.0, 2.0, -1.0])
    # L = v, V = -v, A = v (both samples): cos(L,V) = cos(V,A) = -1, cos(L,A) = 1
    reprs = torch.stack([v, -v, v])[:, None, :].expand(3, 2, 3).contiguous()
    logits = torch.zeros(3, 2)
    kw = dict(repr_dim=3, embed_size=2, prior_logits=ZERO_PRIOR, repr_metric="cosine", repr_weight=10.0)
    attract = uniform_edges(GDUnit(**kw, cosine_direction="attract"))(logits, reprs)
    repel = uniform_edges(GDUnit(**kw, cosine_direction="repel"))(logits, reprs)
    # w = 1/3; cos per edge V->L -1, A->L 1, L->V -1, A->V -1, L->A 1, V->A -1
    # attract: 10 * sum w (1 - cos) = 10 * (4 * 2 + 2 * 0) / 3; repel: 10 * sum w max(0, cos) = 10 * 2 / 3
    assert attract.repr.item() == pytest.approx(80 / 3, rel=1e-5)
    assert repel.repr.item() == pytest.approx(20 / 3, rel=1e-5)

    # directions: a gradient step on the students raises the cosine (attract) / lowers it (repel)
    torch.manual_seed(0)
    r = torch.randn(3, 4, 3)

    def mean_cos_after_step(direction: str) -> tuple[float, float]:
        unit = uniform_edges(GDUnit(**kw, cosine_direction=direction))
        x = r.clone().requires_grad_(True)
        (g,) = torch.autograd.grad(unit(torch.zeros(3, 4), x).repr, x)
        def pair_cos(t: torch.Tensor) -> float:
            return torch.nn.functional.cosine_similarity(t[unit.tgt], t[unit.src], dim=-1).mean().item()

        return pair_cos(r), pair_cos(r - 0.05 * g)

    before, after = mean_cos_after_step("attract")
    assert after > before
    before, after = mean_cos_after_step("repel")
    assert after < before


def test_invalid_arguments():
    with pytest.raises(ValueError):
        GDUnit(2, 2, [0.0] * 5)
    with pytest.raises(ValueError):
        GDUnit(2, 2, ZERO_PRIOR, repr_metric="l2")
