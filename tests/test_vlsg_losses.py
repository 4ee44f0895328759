"""VLSG losses against hand-computed values and a naive per-anchor reference."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from lightning_kd.checkpoint import ConfigError
from lightning_kd.methods.vlsg.losses import (
    VLSGLossOptions,
    cluster_contrastive,
    contrastive_losses,
    graph_guided_contrastive,
    neighbour_mask,
)
from lightning_kd.options import options

E = math.e


def test_neighbour_mask_by_hand() -> None:
    # batch rows 3, 5, 7; sample 3 lists 5 as neighbour, sample 5 lists nobody in the batch, 7 lists 9 and 7
    nbrs = torch.tensor([[5, 11], [1, 2], [9, 7]])
    mask = neighbour_mask(nbrs, torch.tensor([3, 5, 7]))
    expected = torch.tensor([[False, True, False], [True, False, False], [False, False, False]])
    assert torch.equal(mask, expected)  # symmetrised, and 7 listing itself is not a neighbour pair


def test_contrastive_two_orthogonal_samples_by_hand() -> None:
    e = torch.eye(2)
    # anchor e1 (view a): candidates e2 (0), e1 in view b (1, positive), e2 in view b (0)
    assert graph_guided_contrastive(e, e, 1.0).item() == pytest.approx(math.log(2 + E) - 1, abs=1e-6)
    assert graph_guided_contrastive(e, e, 0.5).item() == pytest.approx(math.log(2 + E ** 2) - 2, abs=1e-6)
    nb = torch.tensor([[False, True], [True, False]])
    # excluded neighbours leave only the positive: loss 0; as positives: every candidate is positive: loss 0
    assert graph_guided_contrastive(e, e, 1.0, nb, "exclude").item() == pytest.approx(0.0, abs=1e-7)
    assert graph_guided_contrastive(e, e, 1.0, nb, "positive").item() == pytest.approx(0.0, abs=1e-7)


def _reference(h_a: torch.Tensor, h_b: torch.Tensor, t: float, nb: torch.Tensor | None, mode: str) -> float:
    h = torch.cat([h_a, h_b]).double()
    b = len(h_a)
    total = 0.0
    for i in range(2 * b):
        own = i % b
        pos_j = (own + b) if i < b else own
        num, den = [], []
        for j in range(2 * b):
            if j == i:
                continue
            s = float(h[i] @ h[j]) / t
            is_nb = nb is not None and bool(nb[own, j % b]) and j % b != own
            if j == pos_j or (is_nb and mode == "positive"):
                num.append(s)
            if is_nb and mode == "exclude":
                continue
            den.append(s)
        total += -math.log(sum(math.exp(x) for x in num)) + math.log(sum(math.exp(x) for x in den))
    return total / (2 * b)


@pytest.mark.parametrize("mode", ["exclude", "positive"])
@pytest.mark.parametrize("with_graph", [False, True])
def test_contrastive_matches_naive_reference(mode: str, with_graph: bool) -> None:
    g = torch.Generator().manual_seed(0)
    h_a = F.normalize(torch.randn(6, 4, generator=g), dim=1)
    h_b = F.normalize(torch.randn(6, 4, generator=g), dim=1)
    nb = None
    if with_graph:
        nb = torch.rand(6, 6, generator=g) < 0.3
        nb = (nb | nb.T) & ~torch.eye(6, dtype=torch.bool)
    got = graph_guided_contrastive(h_a, h_b, 0.5, nb, mode).item()
    assert got == pytest.approx(_reference(h_a, h_b, 0.5, nb, mode), rel=1e-5)


def test_excluding_neighbours_lowers_the_loss_and_changes_gradients() -> None:
    g = torch.Generator().manual_seed(1)
    h_a = F.normalize(torch.randn(8, 5, generator=g), dim=1).requires_grad_()
    h_b = F.normalize(torch.randn(8, 5, generator=g), dim=1)
    nb = torch.zeros(8, 8, dtype=torch.bool)
    nb[0, 1] = nb[1, 0] = True
    plain = graph_guided_contrastive(h_a, h_b, 0.5)
    guided = graph_guided_contrastive(h_a, h_b, 0.5, nb)
    assert guided.item() < plain.item()  # fewer negatives in the denominator
    (ga,) = torch.autograd.grad(guided, h_a)
    (gp,) = torch.autograd.grad(plain, h_a)
    assert not torch.allclose(ga[0], gp[0]) and torch.allclose(ga[5], gp[5], atol=0.05)


def test_contrastive_bf16_inputs_are_computed_in_float32() -> None:
    e = torch.eye(2)
    got = graph_guided_contrastive(e.bfloat16(), e.bfloat16(), 1.0)
    assert got.dtype == torch.float32 and got.item() == pytest.approx(math.log(2 + E) - 1, abs=1e-6)


def test_cluster_contrastive_balanced_one_hot_by_hand() -> None:
    q = torch.eye(2)  # two samples, each certainly in its own cluster: entropy term 0
    assert cluster_contrastive(q, q, 1.0).item() == pytest.approx(math.log(2 + E) - 1, abs=1e-6)


def test_cluster_contrastive_collapsed_assignment_by_hand() -> None:
    q = torch.tensor([[1.0, 0.0], [1.0, 0.0]])  # everything in cluster 0
    # columns: c0 = (1, 1)/sqrt2, c1 = 0. Anchors c0: log(2 + e) - 1; anchors c1: all similarities 0: log 3.
    contrast = (2 * (math.log(2 + E) - 1) + 2 * math.log(3)) / 4
    entropy = 2 * math.log(2)  # log K - H(p) with p = (1, 0), for each view
    assert cluster_contrastive(q, q, 1.0).item() == pytest.approx(contrast + entropy, abs=1e-6)


def test_unknown_neighbour_mode() -> None:
    with pytest.raises(ValueError, match="neighbour_mode"):
        graph_guided_contrastive(torch.eye(2), torch.eye(2), 1.0, None, "ignore")


def test_loss_options_refuse_bad_values_and_unknown_names() -> None:
    with pytest.raises(ConfigError, match=r"model.init_args.loss.neighbour_mode must be 'exclude' or 'positive'"):
        VLSGLossOptions(neighbour_mode="ignore")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=r"model.init_args.loss.pair_reduction must be 'mean' or 'sum'"):
        options(VLSGLossOptions, {"pair_reduction": "max"})
    with pytest.raises(ConfigError, match=r"VLSGLossOptions has no option 'hidden'"):
        options(VLSGLossOptions, {"hidden": [8]})


@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_contrastive_losses_reduce_over_every_pair_of_views(reduction: str) -> None:
    """Three views: the 3 pairs (0,1) (0,2) (1,2), each loss at its own temperature, summed or averaged."""
    g = torch.Generator().manual_seed(0)
    h = {v: F.normalize(torch.randn(6, 4, generator=g), dim=1) for v in ("a", "b", "c")}
    q = {v: torch.softmax(torch.randn(6, 3, generator=g), dim=1) for v in ("a", "b", "c")}
    nb = neighbour_mask(torch.tensor([[1], [0], [3], [2], [5], [4]]), torch.arange(6))
    o = VLSGLossOptions(feature_temperature=0.3, cluster_temperature=0.7, neighbour_mode="exclude",
                        pair_reduction=reduction)
    feat, clus = contrastive_losses(h, q, nb, o)
    pairs = [("a", "b"), ("a", "c"), ("b", "c")]
    want_f = sum(graph_guided_contrastive(h[x], h[y], 0.3, nb, "exclude") for x, y in pairs)
    want_c = sum(cluster_contrastive(q[x], q[y], 0.7) for x, y in pairs)
    div = 3 if reduction == "mean" else 1
    torch.testing.assert_close(feat, want_f / div)
    torch.testing.assert_close(clus, want_c / div)
    # a mapping (as a checkpoint holds it) gives the same numbers
    torch.testing.assert_close(contrastive_losses(h, q, nb, {"feature_temperature": 0.3, "cluster_temperature": 0.7,
                                                             "neighbour_mode": "exclude",
                                                             "pair_reduction": reduction})[0], feat)
