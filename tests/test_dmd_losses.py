"""DMD losses: similarity hinge vs the official loop, orthogonality by hand, the full objective."""

from __future__ import annotations

import math

import pytest
import torch

from lightning_kd.methods.dmd.losses import DMDObjective, orthogonality_loss, similarity_hinge_loss
from lightning_kd.methods.dmd.model import DMDNet


def official_hinge_reference(feats: torch.Tensor, target: torch.Tensor, margin_scale: float = 0.15) -> torch.Tensor:
    """Straight loop following the official HingeLoss: rows interleaved per sample ([c_l, c_v, c_a] of sample 0,
    then sample 1, ...), every row an anchor, self excluded, positives = same label, negatives = the rest."""
    M, B, _ = feats.shape
    rows = [feats[m, b] for b in range(B) for m in range(M)]
    ids = [target[b] for b in range(B) for m in range(M)]

    def cos(x, y):
        nx = torch.clamp(torch.sqrt((x * x).sum() + 1e-8), min=1e-8)
        ny = torch.clamp(torch.sqrt((y * y).sum() + 1e-8), min=1e-8)
        return (x * y).sum() / (nx * ny)

    total, count = 0.0, 0
    for i in range(len(rows)):
        pos = [j for j in range(len(rows)) if j != i and ids[j] == ids[i]]
        neg = [j for j in range(len(rows)) if ids[j] != ids[i]]
        if not pos or not neg:
            continue
        terms = [torch.relu(margin_scale * abs(ids[i] - ids[n]) - cos(rows[i], rows[p]) + cos(rows[i], rows[n]))
                 for p in pos for n in neg]
        total = total + torch.stack(terms).mean()
        count += 1
    return total / max(count, 1) if count else torch.tensor(0.0, dtype=feats.dtype)


def test_similarity_hinge_matches_the_loop_reference():
    g = torch.Generator().manual_seed(0)
    feats = torch.randn(3, 7, 5, generator=g, dtype=torch.float64, requires_grad=True)
    target = torch.tensor([0.4, -1.2, 0.4, 2.0, -1.2, 0.0, 0.4], dtype=torch.float64)  # tied labels
    ours = similarity_hinge_loss(feats, target)
    ref = official_hinge_reference(feats, target)
    torch.testing.assert_close(ours, ref)
    (g1,) = torch.autograd.grad(ours, feats)
    (g2,) = torch.autograd.grad(ref, feats)
    torch.testing.assert_close(g1, g2)
    # float32, another margin
    f32 = feats.detach().float()
    torch.testing.assert_close(similarity_hinge_loss(f32, target.float(), 0.3),
                               official_hinge_reference(f32, target.float(), 0.3), rtol=1e-5, atol=1e-6)


def test_similarity_hinge_two_samples_by_hand():
    # M = 2 modalities, B = 2 samples, labels 0 / 1, margin 0.15 * |0 - 1| = 0.15, s = cos 45deg
    # r0 = (1,0) y0 | r1 = (1,0) y1 | r2 = (0,1) y0 | r3 = (1,1) y1   (rows m*B + b)
    feats = torch.tensor([[[1.0, 0.0], [1.0, 0.0]], [[0.0, 1.0], [1.0, 1.0]]], dtype=torch.float64)
    s = 1 / math.sqrt(2)
    # r0: pos r2 (cos 0); neg r1 (1), r3 (s): [0.15 + 1, 0.15 + s]          -> (1.3 + s) / 2
    # r2: pos r0 (0);     neg r1 (0), r3 (s): [0.15, 0.15 + s]              -> (0.3 + s) / 2
    # r1: pos r3 (s);     neg r0 (1), r2 (0): [1.15 - s, relu(0.15 - s) = 0] -> (1.15 - s) / 2
    # r3: pos r1 (s);     neg r0 (s), r2 (s): [0.15, 0.15]                   -> 0.15
    expected = ((1.3 + s) / 2 + (0.3 + s) / 2 + (1.15 - s) / 2 + 0.15) / 4
    got = similarity_hinge_loss(feats, torch.tensor([0.0, 1.0], dtype=torch.float64))
    assert got.item() == pytest.approx(expected, rel=1e-6)


def test_similarity_hinge_skips_anchors_without_positives_or_negatives():
    # one modality, labels [0, 1, 1]: anchor 0 has no positive and is skipped
    feats = torch.tensor([[[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]])
    # s = 1/sqrt(2); anchor 1: pos 2 (s), neg 0 (0): relu(0.15 - s + 0) = 0;  anchor 2: pos 1 (s), neg 0 (s): 0.15
    got = similarity_hinge_loss(feats, torch.tensor([0.0, 1.0, 1.0]))
    assert got.item() == pytest.approx((0.0 + 0.15) / 2, abs=1e-6)
    # no anchor qualifies: 0 and still differentiable
    x = torch.randn(1, 3, 4, requires_grad=True)
    for y in (torch.tensor([0.0, 1.0, 2.0]), torch.tensor([1.0, 1.0, 1.0])):
        out = similarity_hinge_loss(x, y)
        assert out.item() == 0.0
        out.backward()


def test_orthogonality_by_hand():
    # (B=1, d=2, L=3): steps orthogonal, parallel, anti-parallel -> relu(cos) = 0, 1, 0
    private = torch.tensor([[[1.0, 1.0, 1.0], [0.0, 1.0, 0.0]]])
    shared = torch.tensor([[[0.0, 2.0, -1.0], [1.0, 2.0, 0.0]]])
    assert orthogonality_loss(private[..., :1], shared[..., :1]).item() == pytest.approx(0.0, abs=1e-7)
    assert orthogonality_loss(private[..., 1:2], shared[..., 1:2]).item() == pytest.approx(1.0, abs=1e-6)
    assert orthogonality_loss(private[..., 2:], shared[..., 2:]).item() == pytest.approx(0.0, abs=1e-7)
    assert orthogonality_loss(private, shared).item() == pytest.approx(1 / 3, abs=1e-6)


HIDDEN = 8


@pytest.fixture(scope="module")
def net_and_batch():
    torch.manual_seed(0)
    net = DMDNet({"text": 12, "audio": 5, "vision": 7}, {"text": 10, "audio": 12, "vision": 9}, hidden=HIDDEN,
                 heads=2, layers=1, kernel_sizes=(3, 1, 2))
    g = torch.Generator().manual_seed(1)
    x = {"text": torch.randn(6, 10, 12, generator=g), "audio": torch.randn(6, 12, 5, generator=g),
         "vision": torch.randn(6, 9, 7, generator=g)}
    y = torch.tensor([0.4, -1.2, 0.4, 2.0, -3.0, 0.0])
    return net, x, y


def _weighted_total(t: dict, obj: DMDObjective) -> torch.Tensor:
    homo = t["homo_logit"] + t["homo_reg"] + (t["homo_repr"] if obj.homo_repr else 0)
    hetero = t["hetero_logit"] + t["hetero_repr"] + t["hetero_reg"]
    aux = t["self_regression"] + t["recon"] + obj.sim_ort_weight * (t["sim"] + t["ort"])
    return t["task"] + obj.gd_weight * (homo + hetero) + obj.aux_weight * aux


def test_objective_total_is_the_weighted_sum_of_its_terms(net_and_batch):
    net, x, y = net_and_batch
    net.eval()
    torch.manual_seed(0)
    obj = DMDObjective(HIDDEN, gd_weight=0.07, aux_weight=0.3, sim_ort_weight=0.2)
    with torch.no_grad():
        out = net(x)
        t = obj(out, y)
    torch.testing.assert_close(t["loss"], _weighted_total(t, obj))
    # task: L1 summed over the 8 heads
    heads = [out.prediction, *out.logits_homo, *out.logits_hetero, out.logits_c]
    torch.testing.assert_close(t["task"], sum((h - y).abs().mean() for h in heads))
    assert t["homo_edges"].shape == (6, 6) and t["hetero_edges"].shape == (6, 6)
    assert not t["homo_edges"].requires_grad
    expected = {"loss", "task", "homo_logit", "homo_repr", "homo_reg", "hetero_logit", "hetero_repr", "hetero_reg",
                "recon", "self_regression", "sim", "ort", "homo_edges", "hetero_edges"}
    assert set(t) == expected


def test_homo_repr_switch_drops_exactly_that_term(net_and_batch):
    net, x, y = net_and_batch
    net.eval()
    torch.manual_seed(0)
    with_repr = DMDObjective(HIDDEN)
    without = DMDObjective(HIDDEN, homo_repr=False)
    without.load_state_dict(with_repr.state_dict())
    repel = DMDObjective(HIDDEN, hetero_repr_direction="repel")
    repel.load_state_dict(with_repr.state_dict())
    with torch.no_grad():
        out = net(x)
        a, b, r = with_repr(out, y), without(out, y), repel(out, y)
    torch.testing.assert_close(a["loss"] - b["loss"], 0.05 * a["homo_repr"])
    for k in a:
        if k != "loss":
            torch.testing.assert_close(a[k], b[k])
            if k != "hetero_repr":
                torch.testing.assert_close(a[k], r[k])
    assert not torch.allclose(a["hetero_repr"], r["hetero_repr"])


def test_objective_terms_are_finite_and_the_total_backpropagates(net_and_batch):
    net, x, y = net_and_batch
    net.train()
    obj = DMDObjective(HIDDEN)
    net.zero_grad(set_to_none=True)
    t = obj(net(x), y)
    for k, v in t.items():
        assert torch.isfinite(v).all(), k
    t["loss"].backward()
    params = list(net.named_parameters()) + [("obj." + n, p) for n, p in obj.named_parameters()]
    missing = [n for n, p in params if p.grad is None or not torch.isfinite(p.grad).all()]
    assert not missing
