"""Structural OT KD (PKDOT / MT-PKDOT): similarity matrices, anchors, debiased Sinkhorn divergence, centroid,
checked against closed forms, POT's exact EMD and hand-computed values."""

import math

import ot
import pytest
import torch

from lightning_kd.distill.structural_ot import (
    StructuralOT,
    centroid_distance,
    cosine_similarity_matrix,
    lowest_similarity_columns,
    shift_nonnegative,
    sinkhorn_divergence,
)


def test_identical_clouds_give_zero() -> None:
    x = torch.randn(40, 5, generator=torch.Generator().manual_seed(0))
    assert abs(float(sinkhorn_divergence(x, x.clone()))) < 1e-5


def test_two_point_closed_form_with_blur() -> None:
    # x: both points at 0 (a Dirac: the plan is forced, OT_eps(x, y) = mean cost = 0.5 * 1^2 = 0.5, OT_eps(x, x) = 0);
    # y = {-1, +1}: OT_eps(y, y) = eps * KL(diag(1/2) | 1/4) = eps * log 2 up to exp(-2 / eps) (cross cost 2).
    x = torch.zeros(2, 1, dtype=torch.float64)
    y = torch.tensor([[-1.0], [1.0]], dtype=torch.float64)
    eps = 0.1 ** 2
    assert float(sinkhorn_divergence(x, y, blur=0.1)) == pytest.approx(0.5 - 0.5 * eps * math.log(2), abs=1e-7)


def test_one_dimensional_transport_matches_exact_cost() -> None:
    # well-separated 1-D clouds (spread ~10 >> blur 0.1): the debiased divergence is the exact W2^2 / 2 (ot.emd2)
    g = torch.Generator().manual_seed(1)
    x = (torch.rand(12, 1, generator=g, dtype=torch.float64) * 10)
    y = (torch.rand(12, 1, generator=g, dtype=torch.float64) * 10 + 3)
    exact = float(ot.emd2(torch.full((12,), 1 / 12, dtype=torch.float64), torch.full((12,), 1 / 12,
                                                                                      dtype=torch.float64),
                          0.5 * ot.dist(x, y)))
    # 1-D: the exact plan is the monotone matching of the sorted points
    by_hand = float(0.5 * ((x.sort(0).values - y.sort(0).values) ** 2).mean())
    assert exact == pytest.approx(by_hand, rel=1e-9)
    assert float(sinkhorn_divergence(x, y, blur=0.1)) == pytest.approx(exact, rel=2e-3)
    # a larger blur smooths more: farther from the exact cost
    assert abs(float(sinkhorn_divergence(x, y, blur=1.0)) - exact) > abs(float(sinkhorn_divergence(x, y)) - exact)


def test_translation_gives_half_squared_shift() -> None:
    x = torch.rand(30, 3, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    d = torch.tensor([0.3, -0.2, 0.1], dtype=torch.float64)
    assert float(sinkhorn_divergence(x, x + d)) == pytest.approx(0.5 * float(d @ d), rel=1e-4)


def test_envelope_gradient_matches_finite_differences() -> None:
    g = torch.Generator().manual_seed(3)
    x = torch.rand(8, 2, generator=g, dtype=torch.float64)
    y = torch.rand(8, 2, generator=g, dtype=torch.float64).requires_grad_()
    sinkhorn_divergence(x, y, blur=0.3, tol=1e-12, max_iter=20000).backward()
    h = 1e-5
    for i, j in [(0, 0), (3, 1), (7, 0)]:
        yp, ym = y.detach().clone(), y.detach().clone()
        yp[i, j] += h
        ym[i, j] -= h
        fd = (sinkhorn_divergence(x, yp, 0.3, 20000, 1e-12) - sinkhorn_divergence(x, ym, 0.3, 20000, 1e-12)) / (2 * h)
        assert float(y.grad[i, j]) == pytest.approx(float(fd), rel=1e-4, abs=1e-8)


def test_cosine_shift_and_centroid_by_hand() -> None:
    x = torch.tensor([[1.0, 0.0], [0.0, 2.0], [-3.0, 0.0]])
    assert torch.allclose(cosine_similarity_matrix(x), torch.tensor([[1.0, 0, -1], [0, 1, 0], [-1, 0, 1]]))
    s = torch.tensor([[1.0, -0.5], [-0.5, 1.0]])
    assert torch.allclose(shift_nonnegative(s, "min"), torch.tensor([[1.5, 0.0], [0.0, 1.5]]))
    assert torch.allclose(shift_nonnegative(s, "affine"), torch.tensor([[1.0, 0.25], [0.25, 1.0]]))
    with pytest.raises(ValueError, match="shift"):
        shift_nonnegative(s, "softplus")
    # mean rows [0.5, 0.5] vs [1, 1] -> sqrt(0.5)
    assert float(centroid_distance(torch.eye(2), torch.ones(2, 2))) == pytest.approx(math.sqrt(0.5))


def _angles(degrees: list[float]) -> torch.Tensor:
    r = torch.tensor(degrees, dtype=torch.float64) * math.pi / 180
    return torch.stack([torch.cos(r), torch.sin(r)], dim=1)


def test_anchor_columns_are_the_lowest_teacher_similarities() -> None:
    # unit vectors at 0, 60, 100, 180 degrees; cosines:
    # row 0: [1, .5, -.17, -1]  row 1: [.5, 1, .77, -.5]  row 2: [-.17, .77, 1, .17]  row 3: [-1, -.5, .17, 1]
    t = _angles([0, 60, 100, 180])
    cols = lowest_similarity_columns(cosine_similarity_matrix(t), 2)
    assert cols.tolist() == [[3, 2], [3, 0], [0, 3], [0, 1]]

    # the module gathers the SAME columns from the student's shifted matrix
    s = _angles([10, 20, 90, 200]) * 3.0
    terms = StructuralOT(k=2)(t, s)
    assert terms.columns.tolist() == cols.tolist()
    st, ss = cosine_similarity_matrix(t), cosine_similarity_matrix(s)
    rows_t = torch.stack([st[i, cols[i]] - st.min() for i in range(4)])
    rows_s = torch.stack([ss[i, cols[i]] - ss.min() for i in range(4)])
    assert float(terms.ot) == pytest.approx(float(sinkhorn_divergence(rows_t, rows_s)), rel=1e-5)  # float32 vs float64
    assert float(terms.centroid) == pytest.approx(float(torch.linalg.vector_norm(st.mean(0) - ss.mean(0))), rel=1e-6)


def test_same_structure_gives_zero_and_other_structure_does_not() -> None:
    g = torch.Generator().manual_seed(4)
    t = torch.randn(16, 8, generator=g)
    loss = StructuralOT()
    # a per-row rescaling keeps every cosine: same structure, zero loss (k = 30 clipped to 16 columns)
    same = loss(t, t * torch.rand(16, 1, generator=g).add(0.5))
    assert same.columns.shape == (16, 16)
    assert abs(float(same.ot)) < 1e-5 and float(same.centroid) < 1e-5
    other = loss(t, torch.randn(16, 3, generator=g))
    assert float(other.ot) > 1e-3 and float(other.centroid) > 1e-3


def test_gradient_reaches_the_student_only() -> None:
    g = torch.Generator().manual_seed(5)
    teacher = torch.randn(12, 6, generator=g, requires_grad=True)
    student = torch.randn(12, 4, generator=g, requires_grad=True)
    terms = StructuralOT(k=5)(teacher, student)
    (terms.ot + terms.centroid).backward()
    assert teacher.grad is None
    assert student.grad is not None and torch.isfinite(student.grad).all() and student.grad.abs().sum() > 0


def test_batch_smaller_than_k_and_bad_shapes() -> None:
    g = torch.Generator().manual_seed(6)
    t, s = torch.randn(5, 3, generator=g), torch.randn(5, 3, generator=g)
    terms = StructuralOT(k=30)(t, s)
    assert terms.columns.shape == (5, 5) and torch.isfinite(terms.ot)
    one = StructuralOT()(t[:1], s[:1])  # one sample: both matrices are [[1]] -> nothing to transport
    assert abs(float(one.ot)) < 1e-6
    with pytest.raises(ValueError, match="same batch"):
        StructuralOT()(t, s[:4])
    with pytest.raises(ValueError, match="k >= 1"):
        StructuralOT(k=0)


def test_half_precision_inputs_and_autocast_compute_in_float32() -> None:
    g = torch.Generator().manual_seed(7)
    t, s = torch.randn(10, 6, generator=g), torch.randn(10, 6, generator=g)
    ref = StructuralOT(k=4)(t, s)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        mixed = StructuralOT(k=4)(t, s)
    assert mixed.ot.dtype == torch.float32 and float(mixed.ot) == pytest.approx(float(ref.ot), rel=1e-6)
    low = StructuralOT(k=4)(t.bfloat16(), s.bfloat16())
    assert low.ot.dtype == torch.float32 and float(low.ot) == pytest.approx(float(ref.ot), rel=0.1)


def test_the_cli_does_not_import_pot() -> None:
    """POT (and the scikit-learn it imports) costs ~44 MiB of every process; only MT-PKDOT's loss needs it."""
    import subprocess
    import sys

    code = "import sys, lightning_kd.cli, lightning_kd.methods.mt_pkdot; print('ot' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
