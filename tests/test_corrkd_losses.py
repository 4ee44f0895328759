"""CorrKD distillation losses (SCD, CPD, JS mutual information, RCD) against hand-computed values.

Reference values are written out by hand or computed by the plain-Python/numpy formulas below (loops over
samples and classes), never by the code under test.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from lightning_kd.distill import (
    JSMutualInformation,
    PrototypeDistillation,
    ResponseDisentangledDistillation,
    SampleContrastiveDistillation,
)


# ----------------------------------------------------------------------------- independent references
def softplus(v: float) -> float:
    return math.log1p(math.exp(v))


def scd_ref(s: np.ndarray, t: np.ndarray, margin: float) -> float:
    b = len(s)
    pull = sum(float(((s[i] - t[i]) ** 2).sum()) for i in range(b)) / b
    pairs = [(i, j) for i in range(b) for j in range(b) if i != j]
    if not pairs:
        return pull
    push = sum(max(0.0, margin - float(np.linalg.norm(s[i] - t[j]))) ** 2 for i, j in pairs) / len(pairs)
    return pull + push


def cpd_ref(s: np.ndarray, t: np.ndarray, labels: list[int]) -> float:
    present = sorted(set(labels))
    total = 0.0
    for c in present:
        members = [i for i, y in enumerate(labels) if y == c]
        ps, pt = s[members].mean(0), t[members].mean(0)
        for i in range(len(labels)):
            cos_s = float(s[i] @ ps / (np.linalg.norm(s[i]) * np.linalg.norm(ps)))
            cos_t = float(t[i] @ pt / (np.linalg.norm(t[i]) * np.linalg.norm(pt)))
            total += (cos_t - cos_s) ** 2
    return total / len(labels)


def js_ref(joint: list[float], marginal: list[float]) -> float:
    """JS MI from the statistic on joint pairs and on marginal pairs."""
    return (sum(-softplus(-v) for v in joint) / len(joint)) - (sum(softplus(v) for v in marginal) / len(marginal))


def decouple_ref(logits: np.ndarray, labels: list[int], tau: float) -> tuple[np.ndarray, np.ndarray]:
    bs, hats = [], []
    for row, y in zip(logits, labels):
        e = np.exp(row / tau - (row / tau).max())
        p = e / e.sum()
        bs.append([p[y], 1 - p[y]])
        rest = np.array([p[k] for k in range(len(row)) if k != y])
        hats.append(rest / rest.sum())
    return np.array(bs), np.array(hats)


def set_linear_statistic(mi: JSMutualInformation, wx: list[float], wy: list[float], bias: float) -> None:
    """Make ``T(x, y) = wx . x + wy . y + bias`` exactly (for wx, wy >= 0 and inputs >= 0 the ReLUs pass)."""
    lin1, lin2, lin3 = mi.net[0], mi.net[2], mi.net[4]
    with torch.no_grad():
        for lin in (lin1, lin2, lin3):
            lin.weight.zero_()
            lin.bias.zero_()
        lin1.weight[0, : mi.dim_x] = torch.tensor(wx)
        lin1.weight[0, mi.dim_x:] = torch.tensor(wy)
        lin2.weight[0, 0] = 1.0
        lin3.weight[0, 0] = 1.0
        lin3.bias.fill_(bias)


# ----------------------------------------------------------------------------- SCD
def test_scd_hand_values():
    s = torch.tensor([[0.0, 0.0], [3.0, 0.0]])
    t = torch.tensor([[0.0, 0.0], [0.0, 4.0]])
    # pull: (0 + 25) / 2 = 12.5; distances to the other teacher: ||s0 - t1|| = 4, ||s1 - t0|| = 3
    # margin 5: ((5-4)^2 + (5-3)^2) / 2 = 2.5;  margin 3.5: (0 + 0.5^2) / 2 = 0.125
    assert SampleContrastiveDistillation(margin=5.0)(s, t).item() == pytest.approx(15.0)
    assert SampleContrastiveDistillation(margin=3.5)(s, t).item() == pytest.approx(12.625)
    assert SampleContrastiveDistillation(margin=0.0)(s, t).item() == pytest.approx(12.5)


def test_scd_matches_reference_on_random_batch():
    rng = np.random.default_rng(0)
    s, t = rng.normal(size=(5, 3)), rng.normal(size=(5, 3))
    out = SampleContrastiveDistillation(margin=2.0)(torch.tensor(s, dtype=torch.float32),
                                                    torch.tensor(t, dtype=torch.float32))
    assert out.dtype == torch.float32 and out.dim() == 0
    assert out.item() == pytest.approx(scd_ref(s, t, 2.0), rel=1e-5)


def test_scd_teacher_gets_no_gradient_and_zero_distance_is_finite():
    # s0 coincides with t1: the hinge sees distance exactly 0 off the diagonal
    s = torch.tensor([[1.0, 1.0], [0.0, 2.0], [2.0, 0.0]], requires_grad=True)
    t = torch.tensor([[0.0, 0.0], [1.0, 1.0], [2.0, 0.5]], requires_grad=True)
    loss = SampleContrastiveDistillation(margin=1.0)(s, t)
    loss.backward()
    assert t.grad is None
    assert s.grad is not None and torch.isfinite(s.grad).all()
    assert loss.item() == pytest.approx(scd_ref(s.detach().numpy(), t.detach().numpy(), 1.0), rel=1e-6)


def test_scd_single_sample_has_no_push_term_and_no_nan():
    s = torch.tensor([[1.0, 2.0]], requires_grad=True)
    t = torch.tensor([[1.0, 2.0]])
    loss = SampleContrastiveDistillation(margin=1.0)(s, t)
    loss.backward()
    assert loss.item() == 0.0 and torch.isfinite(s.grad).all()
    loss2 = SampleContrastiveDistillation()(torch.tensor([[0.0, 0.0]]), torch.tensor([[3.0, 4.0]]))
    assert loss2.item() == pytest.approx(25.0)


# ----------------------------------------------------------------------------- CPD
def test_cpd_hand_value_with_absent_class():
    # labels [0, 0, 2]: class 1 is absent and is left out
    t = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])  # prototypes (.5, .5) and (1, 1): both along (1, 1)
    s = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])  # prototypes (1, 0) and (0, 1)
    labels = torch.tensor([0, 0, 2])
    # M_t = [[r, r], [r, r], [1, 1]], r = 1/sqrt(2);  M_s = [[1, 0], [1, 0], [0, 1]]
    # ||M_t - M_s||_F^2 = 2 (1 - r)^2 + 2 r^2 + 1 = 5 - 2 sqrt(2);  / B = 3
    expected = (5 - 2 * math.sqrt(2)) / 3
    out = PrototypeDistillation(num_classes=3)(s, t, labels)
    assert torch.isfinite(out)
    assert out.item() == pytest.approx(expected, rel=1e-6)
    assert out.item() == pytest.approx(cpd_ref(s.numpy(), t.numpy(), [0, 0, 2]), rel=1e-6)


def test_cpd_matches_reference_and_does_not_scale_with_batch():
    rng = np.random.default_rng(1)
    s, t = rng.normal(size=(7, 4)), rng.normal(size=(7, 4))
    labels = [3, 1, 3, 3, 1, 4, 1]  # classes 0 and 2 absent
    cpd = PrototypeDistillation(num_classes=5)
    st, tt = torch.tensor(s, dtype=torch.float32), torch.tensor(t, dtype=torch.float32)
    out = cpd(st, tt, torch.tensor(labels))
    assert out.item() == pytest.approx(cpd_ref(s, t, labels), rel=1e-5)
    # the batch twice over: same prototypes, every row twice -> the same mean over samples
    twice = cpd(st.repeat(2, 1), tt.repeat(2, 1), torch.tensor(labels * 2))
    assert twice.item() == pytest.approx(out.item(), rel=1e-5)


def test_cpd_identical_is_zero_and_empty_batch_is_zero():
    torch.manual_seed(0)
    h = torch.randn(6, 3)
    labels = torch.tensor([0, 1, 1, 0, 0, 1])
    cpd = PrototypeDistillation(num_classes=4)
    assert cpd(h, h.clone(), labels).item() == pytest.approx(0.0, abs=1e-10)
    empty = cpd(torch.zeros(0, 3), torch.zeros(0, 3), torch.zeros(0, dtype=torch.long))
    assert empty.item() == 0.0


def test_cpd_teacher_gets_no_gradient():
    torch.manual_seed(0)
    s = torch.randn(5, 3, requires_grad=True)
    t = torch.randn(5, 3, requires_grad=True)
    PrototypeDistillation(num_classes=3)(s, t, torch.tensor([0, 2, 2, 0, 0])).backward()
    assert t.grad is None
    assert s.grad is not None and torch.isfinite(s.grad).all() and s.grad.abs().sum() > 0


# ----------------------------------------------------------------------------- CPD, multi-label (IEMOCAP)
#: emotions of 4 samples: one emotion, two emotions, none, one emotion; emotion 2 is absent from the batch
MULTI = torch.tensor([[1, 0, 0], [1, 1, 0], [0, 0, 0], [0, 1, 0]])


def test_cpd_multi_label_prototypes_by_hand():
    t = torch.tensor([[1.0, 0.0], [0.0, 1.0], [5.0, 5.0], [1.0, 1.0]])
    # emotion 0: samples 0, 1 -> (0.5, 0.5); emotion 1: samples 1, 3 -> (0.5, 1.0); emotion 2: none -> 0;
    # sample 2 (no emotion) is in no prototype (it would move both)
    protos = PrototypeDistillation(num_classes=3).prototypes(t, MULTI)
    torch.testing.assert_close(protos, torch.tensor([[0.5, 0.5], [0.5, 1.0], [0.0, 0.0]]))
    # integer labels are the one-hot special case
    torch.testing.assert_close(PrototypeDistillation(num_classes=3).prototypes(t, torch.tensor([0, 1, 1, 0])),
                               torch.tensor([[1.0, 0.5], [2.5, 3.0], [0.0, 0.0]]))


def test_cpd_multi_label_hand_value():
    t = torch.tensor([[1.0, 0.0], [0.0, 1.0], [5.0, 5.0], [1.0, 1.0]])  # prototypes (.5, .5), (.5, 1)
    s = torch.tensor([[1.0, 0.0], [1.0, 0.0], [-3.0, 2.0], [0.0, 1.0]])  # prototypes (1, 0), (.5, .5)
    r, q5, q10 = 1 / math.sqrt(2), math.sqrt(5), math.sqrt(10)
    # rows of M_t: t0 (r, 1/sqrt5), t1 (r, 2/sqrt5), t3 (1, 3/sqrt10); M_s: s0 (1, r), s1 (1, r), s3 (0, r)
    row0 = (r - 1) ** 2 + (1 / q5 - r) ** 2
    row1 = (r - 1) ** 2 + (2 / q5 - r) ** 2
    row3 = 1.0 + (3 / q10 - r) ** 2
    # weights = emotions per sample: 1, 2, 0 (sample 2 is no CPD row), 1
    expected = (row0 + 2 * row1 + row3) / 4
    cpd = PrototypeDistillation(num_classes=3)
    out = cpd(s, t, MULTI)
    assert out.item() == pytest.approx(expected, rel=1e-6)
    # = the paper's single-label CPD on the batch with sample 1 once per emotion and sample 2 left out
    rows = [0, 1, 1, 3]
    assert out.item() == pytest.approx(cpd_ref(s.numpy()[rows], t.numpy()[rows], [0, 0, 1, 1]), rel=1e-6)
    # what an argmax of the 0/1 rows did: sample 2 -> emotion 0, sample 1 -> emotion 0 only; not this loss
    assert cpd(s, t, MULTI.argmax(1)).item() != pytest.approx(expected, rel=1e-3)


def test_cpd_without_labelled_sample_is_zero_and_labels_are_checked():
    torch.manual_seed(0)
    s = torch.randn(3, 2, requires_grad=True)
    cpd = PrototypeDistillation(num_classes=3)
    out = cpd(s, torch.randn(3, 2), torch.zeros(3, 3, dtype=torch.long))
    out.backward()
    assert out.item() == 0.0 and torch.isfinite(s.grad).all()
    with pytest.raises(ValueError, match="0/1"):
        cpd(s, s, torch.tensor([[2, 0, 0], [0, 1, 0], [0, 0, 1]]))
    with pytest.raises(ValueError, match="labels of shape"):
        cpd(s, s, torch.zeros(3, 4, dtype=torch.long))


def test_corrkd_objective_cpd_keeps_several_and_no_emotions():
    """CorrKD's IEMOCAP labels (B, 4) reach CPD as emotion memberships, not an argmax (which put the
    no-emotion sample into emotion 0 and the two-emotion sample into its first emotion only)."""
    from lightning_kd.methods.corrkd import CorrKDObjective, CorrKDOutput
    from lightning_kd.methods.corrkd.losses import prototype_labels

    labels = torch.cat([MULTI, torch.zeros(4, 1, dtype=torch.long)], 1)  # 4th emotion absent
    assert torch.equal(prototype_labels(labels), labels)
    assert torch.equal(prototype_labels(torch.tensor([[1], [0], [1]])), torch.tensor([[0, 1], [1, 0], [0, 1]]))
    t = torch.tensor([[1.0, 0.0], [0.0, 1.0], [5.0, 5.0], [1.0, 1.0]])
    s = torch.tensor([[1.0, 0.0], [1.0, 0.0], [-3.0, 2.0], [0.0, 1.0]])
    obj = CorrKDObjective(tasks=4, classes=2, mi_hidden=8)
    logits = torch.zeros(4, 4, 2)
    terms = obj(CorrKDOutput(s, logits), labels, CorrKDOutput(t, logits))
    rows = [0, 1, 1, 3]  # sample 1 once per emotion, sample 2 (no emotion) left out
    assert terms["cpd"].item() == pytest.approx(cpd_ref(s.numpy()[rows], t.numpy()[rows], [0, 0, 1, 1]), rel=1e-6)


# ----------------------------------------------------------------------------- JS mutual information
def test_js_mi_with_hand_set_statistics_network():
    mi = JSMutualInformation(1, 1, hidden=2)
    set_linear_statistic(mi, [1.0], [1.0], bias=-1.0)  # T(x, y) = x + y - 1
    x = torch.tensor([[0.5], [1.0], [2.0]])
    y = torch.tensor([[1.0], [0.0], [3.0]])
    # joint T = [0.5, 0, 4]; marginal pairs y rolled by one = [3, 1, 0] -> T = [2.5, 1, 1]
    expected = (-(softplus(-0.5) + softplus(0.0) + softplus(-4.0)) / 3
                - (softplus(2.5) + softplus(1.0) + softplus(1.0)) / 3)
    assert expected == pytest.approx(-2.130262, abs=1e-6)
    assert mi(x, y).item() == pytest.approx(expected, rel=1e-6)


def test_js_mi_grouped_pairs_roll_along_samples_by_hand():
    mi = JSMutualInformation(1, 1, hidden=2)
    set_linear_statistic(mi, [1.0], [1.0], bias=-1.0)  # T(x, y) = x + y - 1
    x = torch.tensor([[[0.5], [0.0]], [[1.0], [1.0]], [[2.0], [0.5]]])  # (B=3, G=2, 1)
    y = torch.tensor([[[1.0], [2.0]], [[0.0], [0.5]], [[3.0], [0.0]]])
    # joint: group 0 T = [0.5, 0, 4], group 1 T = [1, 0.5, -0.5]
    # marginal, y of the previous SAMPLE in the same group: group 0 y = [3, 1, 0] -> T = [2.5, 1, 1];
    # group 1 y = [0, 2, 0.5] -> T = [-1, 2, 0]
    joint, marginal = [0.5, 0.0, 4.0, 1.0, 0.5, -0.5], [2.5, 1.0, 1.0, -1.0, 2.0, 0.0]
    expected = js_ref(joint, marginal)
    assert expected == pytest.approx(-1.880923, abs=1e-6)
    assert mi(x, y).item() == pytest.approx(expected, rel=1e-6)
    # the mean of the per-group estimates
    per_group = [mi(x[:, g], y[:, g]).item() for g in range(2)]
    assert mi(x, y).item() == pytest.approx(sum(per_group) / 2, rel=1e-6)
    # flattening samples x groups first pairs a sample's group 1 with its own group 0: another value
    assert mi(x.flatten(0, 1), y.flatten(0, 1)).item() != pytest.approx(expected, rel=1e-3)
    with pytest.raises(ValueError, match="expected x"):
        mi(x, y[:, :1])


def test_js_mi_fewer_than_two_samples_is_zero():
    mi = JSMutualInformation(2, 3)
    x = torch.randn(1, 2, requires_grad=True)
    out = mi(x, torch.randn(1, 3))
    out.backward()
    assert out.item() == 0.0 and torch.isfinite(x.grad).all()
    assert mi(torch.zeros(0, 2), torch.zeros(0, 3)).item() == 0.0


def test_js_mi_training_separates_dependent_from_independent_pairs():
    torch.manual_seed(0)
    mi = JSMutualInformation(2, 2, hidden=32)
    opt = torch.optim.Adam(mi.parameters(), lr=1e-2)
    x = torch.randn(64, 2)
    x_eval, z_eval = torch.randn(64, 2), torch.randn(64, 2)
    with torch.no_grad():
        before = mi(x_eval, x_eval).item()
    for _ in range(60):
        opt.zero_grad()
        (-mi(x, x)).backward()  # maximise the estimate on perfectly dependent pairs (y = x)
        opt.step()
    with torch.no_grad():
        dependent = mi(x_eval, x_eval).item()
        independent = mi(x_eval, z_eval).item()
    assert dependent > before
    assert dependent > -2 * math.log(2)  # above the best any statistic reaches on independent pairs
    assert dependent > independent + 0.5


# ----------------------------------------------------------------------------- RCD
def test_rcd_binary_is_target_part_only():
    rcd = ResponseDisentangledDistillation(num_classes=2)
    assert rcd.nontarget_mi is None
    assert sum(p.numel() for p in rcd.parameters()) == sum(p.numel() for p in rcd.target_mi.parameters())
    set_linear_statistic(rcd.target_mi, [1.0, 0.0], [1.0, 0.0], bias=0.0)  # T = p_t[target] + p_s[target]
    student = torch.tensor([[2.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    teacher = torch.tensor([[1.0, 0.0], [0.0, 3.0], [0.0, 0.0]])
    labels = torch.tensor([0, 1, 0])
    sig = lambda v: 1 / (1 + math.exp(-v))  # noqa: E731 -- two-class softmax of the target
    ps = [sig(2.0), sig(1.0), 0.5]
    pt = [sig(1.0), sig(3.0), 0.5]
    joint = [pt[i] + ps[i] for i in range(3)]
    marginal = [pt[i] + ps[i - 1] for i in range(3)]  # student rolled by one: ps[-1] pairs with pt[0]
    parts = rcd.parts(student, teacher, labels)
    assert parts["nontarget_mi"].item() == 0.0
    assert parts["target_mi"].item() == pytest.approx(js_ref(joint, marginal), rel=1e-6)
    assert rcd(student, teacher, labels).item() == pytest.approx(-js_ref(joint, marginal), rel=1e-6)


def test_rcd_four_classes_has_both_parts():
    rng = np.random.default_rng(2)
    student, teacher = rng.normal(size=(5, 4)), rng.normal(size=(5, 4))
    labels = [0, 3, 1, 2, 0]
    tau = 2.0
    rcd = ResponseDisentangledDistillation(num_classes=4, hidden=8, temperature=tau)
    assert isinstance(rcd.nontarget_mi, JSMutualInformation)
    assert (rcd.nontarget_mi.dim_x, rcd.nontarget_mi.dim_y) == (3, 3)
    wt, wn = [0.7, 0.2], [1.0, 2.0, 3.0]  # distinct weights: the class order of p^ matters
    set_linear_statistic(rcd.target_mi, wt, wt, bias=-0.5)
    set_linear_statistic(rcd.nontarget_mi, wn, wn, bias=-2.0)
    b_s, h_s = decouple_ref(student, labels, tau)
    b_t, h_t = decouple_ref(teacher, labels, tau)

    def ref(xs: np.ndarray, ys: np.ndarray, w: list[float], bias: float) -> float:
        stat = lambda a, b: float(np.dot(w, a) + np.dot(w, b) + bias)  # noqa: E731
        n = len(xs)
        return js_ref([stat(xs[i], ys[i]) for i in range(n)], [stat(xs[i], ys[i - 1]) for i in range(n)])

    parts = rcd.parts(torch.tensor(student, dtype=torch.float32), torch.tensor(teacher, dtype=torch.float32),
                      torch.tensor(labels))
    target, nontarget = ref(b_t, b_s, wt, -0.5), ref(h_t, h_s, wn, -2.0)
    assert parts["target_mi"].item() == pytest.approx(target, rel=1e-5)
    assert parts["nontarget_mi"].item() == pytest.approx(nontarget, rel=1e-5)
    assert parts["nontarget_mi"].item() != 0.0


def test_rcd_grouped_responses_match_per_emotion_reference():
    rng = np.random.default_rng(3)
    b, e, c = 5, 4, 3
    student, teacher = rng.normal(size=(b, e, c)), rng.normal(size=(b, e, c))
    labels = rng.integers(0, c, size=(b, e))
    rcd = ResponseDisentangledDistillation(num_classes=c, hidden=8)
    wt, wn = [0.7, 0.2], [1.0, 2.0]
    set_linear_statistic(rcd.target_mi, wt, wt, bias=-0.5)
    set_linear_statistic(rcd.nontarget_mi, wn, wn, bias=-1.0)

    def ref(part: int, w: list[float], bias: float) -> float:
        joint, marginal = [], []
        for g in range(e):  # per emotion, pairs across samples: (i, g) with (i - 1, g)
            xs = decouple_ref(teacher[:, g], list(labels[:, g]), 1.0)[part]
            ys = decouple_ref(student[:, g], list(labels[:, g]), 1.0)[part]
            joint += [float(np.dot(w, xs[i]) + np.dot(w, ys[i]) + bias) for i in range(b)]
            marginal += [float(np.dot(w, xs[i]) + np.dot(w, ys[i - 1]) + bias) for i in range(b)]
        return js_ref(joint, marginal)

    parts = rcd.parts(torch.tensor(student, dtype=torch.float32), torch.tensor(teacher, dtype=torch.float32),
                      torch.tensor(labels))
    assert parts["target_mi"].item() == pytest.approx(ref(0, wt, -0.5), rel=1e-5)
    assert parts["nontarget_mi"].item() == pytest.approx(ref(1, wn, -1.0), rel=1e-5)


def test_iemocap_rcd_marginal_pairs_join_different_samples():
    """Through CorrKD's objective on (B, 4, 2) responses: every pair the estimator treats as independent
    holds two DIFFERENT samples' responses to the SAME emotion. Sample and emotion ids are encoded in the
    logits (each (sample, emotion) has its own target probability) and decoded from the estimator's input."""
    from lightning_kd.methods.corrkd import CorrKDObjective, CorrKDOutput

    b, e = 6, 4
    obj = CorrKDObjective(tasks=e, classes=2, mi_hidden=8)
    labels = torch.randint(0, 2, (b, e), generator=torch.Generator().manual_seed(0))
    code = torch.arange(b * e, dtype=torch.float32).reshape(b, e)
    z_t, z_s = 0.1 * code - 1.2, -0.1 * code + 1.1  # distinct margins target - other per (sample, emotion)

    def logits(z: torch.Tensor) -> torch.Tensor:  # logit of the labelled class = z, of the other = 0
        return torch.stack([torch.where(labels == 0, z, 0.0), torch.where(labels == 1, z, 0.0)], -1)

    table_t, table_s = torch.sigmoid(z_t).flatten(), torch.sigmoid(z_s).flatten()  # p_target -> b * E + e
    calls = []
    statistic = obj.rcd.target_mi.statistic
    obj.rcd.target_mi.statistic = lambda x, y: calls.append((x.detach(), y.detach())) or statistic(x, y)
    rep = torch.randn(b, 8)
    obj(CorrKDOutput(rep, logits(z_s)), labels, CorrKDOutput(rep, logits(z_t)))
    assert len(calls) == 2  # joint, then marginal pairs

    def ids(rows: torch.Tensor, table: torch.Tensor) -> list[tuple[int, int]]:
        hit = (rows.reshape(-1, 2)[:, :1] - table[None, :]).abs().argmin(1)
        return [divmod(int(k), e) for k in hit]

    joint_t, joint_s = ids(calls[0][0], table_t), ids(calls[0][1], table_s)
    assert joint_t == joint_s and sorted(joint_t) == [(i, g) for i in range(b) for g in range(e)]
    marg_t, marg_s = ids(calls[1][0], table_t), ids(calls[1][1], table_s)
    assert sorted(marg_t) == sorted(marg_s) == sorted(joint_t)  # every response once on each side
    for (i_t, g_t), (i_s, g_s) in zip(marg_t, marg_s):
        assert i_t != i_s, "a marginal pair holds two responses of the same sample"
        assert g_t == g_s, "a marginal pair mixes two emotions"


def test_rcd_gradients_reach_student_and_estimators_not_teacher():
    torch.manual_seed(0)
    rcd = ResponseDisentangledDistillation(num_classes=4, hidden=16)
    student = torch.randn(6, 4, requires_grad=True)
    teacher = torch.randn(6, 4, requires_grad=True)
    rcd(student, teacher, torch.tensor([0, 1, 2, 3, 1, 0])).backward()
    assert teacher.grad is None
    assert student.grad is not None and torch.isfinite(student.grad).all() and student.grad.abs().sum() > 0
    for p in rcd.parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all()


# ----------------------------------------------------------------------------- mixed precision
def test_losses_are_float32_with_finite_gradients_under_bf16_autocast():
    torch.manual_seed(0)
    enc_s, enc_t = torch.nn.Linear(6, 5), torch.nn.Linear(6, 5)
    head = torch.nn.Linear(5, 3)
    scd, cpd = SampleContrastiveDistillation(), PrototypeDistillation(num_classes=3)
    rcd = ResponseDisentangledDistillation(num_classes=3, hidden=8)
    x, labels = torch.randn(8, 6), torch.tensor([0, 1, 2, 0, 1, 2, 0, 0])
    with torch.autocast("cpu", dtype=torch.bfloat16):
        hs, ht = enc_s(x), enc_t(x)
        assert hs.dtype == torch.bfloat16
        losses = [scd(hs, ht), cpd(hs, ht, labels), rcd(head(hs), head(ht), labels)]
    assert all(loss.dtype == torch.float32 and torch.isfinite(loss) for loss in losses)
    sum(losses).backward()
    for p in [*enc_s.parameters(), *head.parameters(), *rcd.parameters()]:
        assert p.grad is not None and torch.isfinite(p.grad).all()
    assert all(p.grad is None for p in enc_t.parameters())
    # inside, the losses ran in float32: the same bf16 inputs outside autocast give the same values
    assert losses[0].item() == pytest.approx(scd(hs.detach(), ht.detach()).item(), rel=1e-6)
    assert losses[1].item() == pytest.approx(cpd(hs.detach(), ht.detach(), labels).item(), rel=1e-6)
