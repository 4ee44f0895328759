"""CDGKD objectives against hand-computed values: prototype probabilities / loss, dense guidance, teacher drops."""

from __future__ import annotations

import math

import pytest
import torch

from lightning_kd.methods.cdgkd.losses import (
    CDGKDLossOptions,
    dense_guidance,
    prototype_loss,
    prototype_probabilities,
    teacher_keep_mask,
)

# four 2-d embeddings, classes 0, 0, 1, 1: prototypes c0 = (1, 0), c1 = (0, 2)
Z = torch.tensor([[0.0, 0.0], [2.0, 0.0], [0.0, 1.0], [0.0, 3.0]])
Y = torch.tensor([0, 0, 1, 1])
# squared distances to (c0, c1), by hand
D = [[1.0, 4.0], [1.0, 8.0], [2.0, 1.0], [10.0, 1.0]]


def _softmax_neg(row: list[float]) -> list[float]:
    e = [math.exp(-d) for d in row]
    return [v / sum(e) for v in e]


def test_prototype_probabilities_by_hand() -> None:
    p = prototype_probabilities(Z, Y)
    expected = torch.tensor([_softmax_neg(r) for r in D])
    torch.testing.assert_close(p, expected, rtol=1e-6, atol=1e-7)


def test_prototype_loss_by_hand() -> None:
    loss, p_true = prototype_loss(Z, Y)
    truth = [_softmax_neg(r)[int(y)] for r, y in zip(D, Y)]
    torch.testing.assert_close(p_true, torch.tensor(truth), rtol=1e-6, atol=1e-7)
    assert float(loss) == pytest.approx(sum(-math.log(v) for v in truth) / 4, rel=1e-6)
    assert not p_true.requires_grad


def test_prototype_cosine_distance_by_hand() -> None:
    # c0 = (1, 0), c1 = (0, 2): cos to c0 of (0,0) is 0 (normalised zero vector), of (2,0) is 1, ...
    p = prototype_probabilities(Z, Y, distance="cosine")
    cos = [[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, 1.0]]
    expected = torch.tensor([_softmax_neg([1 - c for c in r]) for r in cos])
    torch.testing.assert_close(p, expected, rtol=1e-6, atol=1e-7)


def test_absent_class_is_left_out_and_prototypes_are_detached() -> None:
    z = Z.clone().requires_grad_(True)
    p = prototype_probabilities(z, torch.zeros(4, dtype=torch.long))
    torch.testing.assert_close(p, torch.tensor([[1.0, 0.0]] * 4))
    # gradient with detached prototypes: d/dz_i of -log p_true only through z_i's own distances
    loss, _ = prototype_loss(z, Y)
    loss.backward()
    c = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    p_all = prototype_probabilities(Z, Y)
    # L = mean_i [ d(z_i, c_y) + log sum_k exp(-d(z_i, c_k)) ];  dL/dz_i = (2 (z_i - c_y) - sum_k p_k 2 (z_i - c_k)) / 4
    grad = torch.stack([(2 * (Z[i] - c[Y[i]]) - sum(p_all[i, k] * 2 * (Z[i] - c[k]) for k in range(2))) / 4
                        for i in range(4)])
    torch.testing.assert_close(z.grad, grad, rtol=1e-5, atol=1e-6)


# -- dense guidance ---------------------------------------------------------------------------------------
S = torch.tensor([[1.0, -1.0], [0.5, 0.0]])
T1 = torch.tensor([[2.0, 0.0], [0.0, 1.0]])
T2 = torch.tensor([[-1.0, 1.0], [3.0, 0.0]])
LABELS = torch.tensor([0, 1])


def _ce(s: torch.Tensor, y: torch.Tensor) -> float:
    rows = [-math.log(math.exp(s[i, y[i]]) / (math.exp(s[i, 0]) + math.exp(s[i, 1]))) for i in range(len(y))]
    return sum(rows) / len(y)


def _kd(s: torch.Tensor, t: torch.Tensor, temp: float) -> float:
    """temp^2 * mean_i KL(softmax(t_i / temp) || softmax(s_i / temp)), written out."""
    total = 0.0
    for i in range(s.shape[0]):
        ps = [math.exp(float(v) / temp) for v in s[i]]
        pt = [math.exp(float(v) / temp) for v in t[i]]
        ps, pt = [v / sum(ps) for v in ps], [v / sum(pt) for v in pt]
        total += sum(a * math.log(a / b) for a, b in zip(pt, ps))
    return temp**2 * total / s.shape[0]


@pytest.mark.parametrize("keep", [[True, True], [True, False], [False, True]])
def test_dense_guidance_total_by_hand(keep: list[bool]) -> None:
    terms = dense_guidance(S, LABELS, [T1, T2], torch.tensor(keep), ce_weight=0.3, temperature=2.0)
    kd = [_kd(S, T1, 2.0), _kd(S, T2, 2.0)]
    expected = 0.3 * _ce(S, LABELS) + 0.7 * sum(k for k, on in zip(kd, keep) if on)  # a sum over kept teachers
    assert float(terms["loss"]) == pytest.approx(expected, rel=1e-6)
    assert float(terms["kd/teacher_0"]) == pytest.approx(kd[0], rel=1e-6)
    assert float(terms["kd/teacher_1"]) == pytest.approx(kd[1], rel=1e-6)
    assert [float(terms[f"kept/teacher_{j}"]) for j in range(2)] == [float(k) for k in keep]


def test_all_dropped_and_no_teacher() -> None:
    dropped = dense_guidance(S, LABELS, [T1, T2], torch.tensor([False, False]), ce_weight=0.3)
    assert float(dropped["loss"]) == pytest.approx(0.3 * _ce(S, LABELS), rel=1e-6)  # a CE alone, not rescaled
    alone = dense_guidance(S, LABELS, [], torch.zeros(0, dtype=torch.bool), ce_weight=0.3)
    assert float(alone["loss"]) == pytest.approx(_ce(S, LABELS), rel=1e-6)  # no teachers: plain CE
    with pytest.raises(ValueError, match="one entry per teacher"):
        dense_guidance(S, LABELS, [T1, T2], torch.tensor([True]))


def test_kd_term_changes_the_student_gradient() -> None:
    def grad(teachers: list[torch.Tensor], keep: list[bool]) -> torch.Tensor:
        s = S.clone().requires_grad_(True)
        dense_guidance(s, LABELS, teachers, torch.tensor(keep, dtype=torch.bool), ce_weight=0.5)["loss"].backward()
        return s.grad

    ce_only = grad([T1, T2], [False, False])
    with_kd = grad([T1, T2], [True, True])
    assert (with_kd - ce_only).abs().max() > 1e-2
    # the difference is exactly (1 - a) d/ds of the two KD terms
    s = S.clone().requires_grad_(True)
    from lightning_kd.distill.logit_kd import kd_kl

    (0.5 * (kd_kl(s, T1, 2.0) + kd_kl(s, T2, 2.0))).backward()
    torch.testing.assert_close(with_kd - ce_only, s.grad, rtol=1e-5, atol=1e-6)


# -- stochastic teacher dropping ------------------------------------------------------------------------------
def test_about_half_of_the_terms_are_dropped() -> None:
    steps, teachers = 2000, 3
    kept = torch.stack([teacher_keep_mask(1111, step, teachers) for step in range(steps)])
    n = kept.numel()
    # Binomial(n, 0.5): 5 standard deviations = 5 * sqrt(n) / 2
    assert abs(int(kept.sum()) - n / 2) < 5 * math.sqrt(n) / 2
    for j in range(teachers):  # each teacher on its own, too
        assert abs(int(kept[:, j].sum()) - steps / 2) < 5 * math.sqrt(steps) / 2
    # independent across teachers: both kept about a quarter of the time
    both = int((kept[:, 0] & kept[:, 1]).sum())
    assert abs(both - steps / 4) < 5 * math.sqrt(steps * 3 / 16)


def test_drops_reproducible_and_seeded() -> None:
    a = torch.stack([teacher_keep_mask(7, s, 3) for s in range(200)])
    b = torch.stack([teacher_keep_mask(7, s, 3) for s in range(200)])
    c = torch.stack([teacher_keep_mask(8, s, 3) for s in range(200)])
    assert torch.equal(a, b)
    assert (a != c).float().mean() > 0.3  # another seed: another pattern (about half differ)
    assert not torch.equal(a[0:100], a[100:200])  # and it varies over steps
    assert teacher_keep_mask(7, 5, 3, drop_prob=0.0).all()
    assert not teacher_keep_mask(7, 5, 3, drop_prob=1.0).any()


def test_loss_options_are_checked() -> None:
    with pytest.raises(ValueError, match="distance"):
        CDGKDLossOptions(distance="l1")
    with pytest.raises(ValueError, match="ce_weight"):
        CDGKDLossOptions(ce_weight=1.5)
