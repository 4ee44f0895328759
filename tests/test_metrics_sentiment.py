"""Tests for lightning_kd.metrics.sentiment: hand-computed golden values (MMSA MetricsTop rules)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from lightning_kd.metrics import (
    MMSA_KEYS,
    SIMS_KEYS,
    SentimentMetrics,
    mmsa_regression_metrics,
    sims_regression_metrics,
)

ABS = 1e-6  # inputs go through float32


def t(values: list[float]) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float32)


# ----------------------------------------------------------------------------------- mmsa scheme


def test_mmsa_keys_and_order() -> None:
    out = mmsa_regression_metrics(t([0.5, -1.0]), t([1.0, -2.0]))
    assert tuple(out) == MMSA_KEYS
    assert all(isinstance(v, float) for v in out.values())


def test_mmsa_rounding_clipping_and_unclipped_mae() -> None:
    pred = t([0.5, 1.5, 3.7, -0.5, 2.5, 0.6, -3.2, -2.4])
    truth = t([0.4, 2.4, 2.6, 0.3, 1.6, 0.4, -2.6, -3.0])
    # pair  acc7: clip[-3,3] -> round (half to even)      acc5: clip[-2,2] -> round
    # 0.5 / 0.4     0  vs 0   match                          0  vs 0   match
    # 1.5 / 2.4     2  vs 2   match                          2  vs 2   match
    # 3.7 / 2.6     3.0->3 vs 3  match (unclipped 4 != 3)    2  vs 2   match
    # -0.5/ 0.3    -0  vs 0   match                         -0  vs 0   match
    # 2.5 / 1.6     2  vs 2   match (half-up would give 3)   2  vs 2   match
    # 0.6 / 0.4     1  vs 0   miss                           1  vs 0   miss
    # -3.2/-2.6    -3  vs -3  match                         -2  vs -2  match
    # -2.4/-3.0    -2  vs -3  miss                          -2  vs -2  match (clip)
    # acc7 = 6/8, acc5 = 7/8
    out = mmsa_regression_metrics(pred, truth)
    assert out["Mult_acc_7"] == pytest.approx(6 / 8, abs=1e-12)
    assert out["Mult_acc_5"] == pytest.approx(7 / 8, abs=1e-12)
    # MAE on UNCLIPPED values: |diffs| = 0.1, 0.9, 1.1, 0.8, 0.9, 0.2, 0.6, 0.6 -> 5.2 / 8 = 0.65
    # (clipping to [-3,3] would give 0.4 instead of 1.1 and 0.4 instead of 0.6 -> 4.9 / 8).
    assert out["MAE"] == pytest.approx(0.65, abs=ABS)


def test_mmsa_has0_vs_non0_weighted_f1() -> None:
    #          idx:   0     1    2    3    4     5    6     7     8    9
    truth = t([0.0, 0.0, 1.2, 2.0, 0.8, 0.6, 1.4, -1.0, -0.4, 2.6])
    pred = t([-0.5, 0.3, 0.9, 0.0, 1.1, -0.2, 2.2, -0.7, 0.5, 1.8])
    out = mmsa_regression_metrics(pred, truth)

    # Has0 (all 10, truth >= 0 vs pred >= 0):
    #   truth: 1 1 1 1 1 1 1 0 0 1   (8 positive, 2 negative -> imbalanced)
    #   pred:  0 1 1 1 1 0 1 0 1 1   (pred 0.0 counts as >= 0)
    #   correct: idx 1,2,3,4,6,7,9 -> 7/10
    #   class 1: tp=6 (1,2,3,4,6,9) fp=1 (8) fn=2 (0,5) -> F1 = 12/15 = 0.8, support 8
    #   class 0: tp=1 (7) fp=2 (0,5) fn=1 (8)           -> F1 = 2/5 = 0.4,  support 2
    #   weighted = (8*0.8 + 2*0.4) / 10 = 0.72
    assert out["Has0_acc_2"] == pytest.approx(0.7, abs=1e-12)
    assert out["Has0_F1_score"] == pytest.approx(0.72, abs=1e-12)

    # Non0 (drop idx 0,1 whose truth == 0; truth > 0 vs pred > 0 on idx 2..9):
    #   truth: 1 1 1 1 1 0 0 1   (6 positive, 2 negative)
    #   pred:  1 0 1 0 1 0 1 1   (pred 0.0 at idx 3 is NOT > 0)
    #   correct: idx 2,4,6,7,9 -> 5/8
    #   class 1: tp=4 (2,4,6,9) fp=1 (8) fn=2 (3,5) -> F1 = 8/11, support 6
    #   class 0: tp=1 (7) fp=2 (3,5) fn=1 (8)       -> F1 = 2/5,  support 2
    #   weighted = (6*8/11 + 2*2/5) / 8 = (284/55) / 8 = 71/110
    assert out["Non0_acc_2"] == pytest.approx(5 / 8, abs=1e-12)
    assert out["Non0_F1_score"] == pytest.approx(71 / 110, abs=1e-12)


def test_mmsa_single_class_f1() -> None:
    # All truths positive, one wrong prediction: class 0 has support 0 -> weight 0.
    # class 1: tp=3 fp=0 fn=1 -> F1 = 6/7; weighted = 6/7. acc = 3/4.
    out = mmsa_regression_metrics(t([1.0, 2.0, -1.0, 0.5]), t([1.0, 1.0, 1.0, 1.0]))
    assert out["Has0_acc_2"] == pytest.approx(0.75, abs=1e-12)
    assert out["Has0_F1_score"] == pytest.approx(6 / 7, abs=1e-12)
    assert out["Non0_F1_score"] == pytest.approx(6 / 7, abs=1e-12)
    # All correct, one class: F1 = 1.
    out = mmsa_regression_metrics(t([1.0, 2.0]), t([0.5, 3.0]))
    assert out["Has0_F1_score"] == 1.0 and out["Non0_F1_score"] == 1.0


def test_mmsa_all_truth_zero() -> None:
    out = mmsa_regression_metrics(t([0.2, -0.1, 0.0]), t([0.0, 0.0, 0.0]))
    # Has0: truth all 1, pred 1 0 1 -> acc 2/3; class 1 tp=2 fn=1 -> F1 = 4/5 (only class with support).
    assert out["Has0_acc_2"] == pytest.approx(2 / 3, abs=1e-12)
    assert out["Has0_F1_score"] == pytest.approx(0.8, abs=1e-12)
    # Non0: no sample left -> NaN. Corr: constant truth -> NaN.
    assert math.isnan(out["Non0_acc_2"]) and math.isnan(out["Non0_F1_score"])
    assert math.isnan(out["Corr"])
    # round(0.2)=0, round(-0.1)=-0, round(0)=0 all equal 0.
    assert out["Mult_acc_7"] == 1.0 and out["Mult_acc_5"] == 1.0
    # MAE = (0.2 + 0.1 + 0) / 3 = 0.1
    assert out["MAE"] == pytest.approx(0.1, abs=ABS)


def test_mmsa_pearson() -> None:
    # x = 1,2,3 (mean 2), y = 2,4,7 (mean 13/3): dx = -1,0,1; dy = -7/3,-1/3,8/3
    # sum dx*dy = 7/3 + 8/3 = 5; sum dx^2 = 2; sum dy^2 = 114/9 -> r = 5 / sqrt(228/9) = 15 / sqrt(228)
    out = mmsa_regression_metrics(t([1.0, 2.0, 3.0]), t([2.0, 4.0, 7.0]))
    assert out["Corr"] == pytest.approx(15 / math.sqrt(228), abs=1e-12)
    out = mmsa_regression_metrics(t([1.0, 2.0, 3.0]), t([3.0, 2.0, 1.0]))
    assert out["Corr"] == pytest.approx(-1.0, abs=1e-12)


def test_mmsa_bf16_any_shape() -> None:
    pred = torch.tensor([[0.5], [1.5], [-2.0]], dtype=torch.bfloat16)  # exact in bf16
    truth = torch.tensor([0.0, 2.0, -1.0], dtype=torch.float64)
    out = mmsa_regression_metrics(pred, truth)
    # acc7: round 0,2,-2 vs 0,2,-1 -> 2/3; MAE = (0.5 + 0.5 + 1.0)/3 = 2/3
    assert out["Mult_acc_7"] == pytest.approx(2 / 3, abs=1e-12)
    assert out["MAE"] == pytest.approx(2 / 3, abs=1e-12)


def test_corr_nan_cases_do_not_warn() -> None:
    """Constant or non-finite sides give NaN (as np.corrcoef) without torchmetrics' "variance close to zero"
    UserWarning (which would fire on every constant prediction of an untrained model)."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert math.isnan(mmsa_regression_metrics(t([1.0, 1.0, 1.0]), t([0.0, 1.0, 2.0]))["Corr"])
        assert math.isnan(mmsa_regression_metrics(t([0.0, 1.0, 2.0]), t([0.5, 0.5, 0.5]))["Corr"])
        assert math.isnan(mmsa_regression_metrics(t([0.0, float("nan"), 2.0]), t([0.0, 1.0, 2.0]))["Corr"])
        assert math.isnan(mmsa_regression_metrics(t([0.5]), t([1.0]))["Corr"])
        # a tiny but non-zero spread is a real correlation (torchmetrics scales by the largest deviation)
        x = 1.0 + 1e-6 * torch.tensor([0.0, 1.0, 3.0], dtype=torch.float64)
        y = torch.tensor([0.0, 2.0, 5.0], dtype=torch.float64)
        assert mmsa_regression_metrics(x, y)["Corr"] == pytest.approx(
            float(np.corrcoef(x.float().double().numpy(), y.numpy())[0, 1]), abs=1e-6)


def test_nan_prediction_counts_as_miss() -> None:
    # a diverged model: the NaN sample is wrong in every accuracy (as np.round(nan) == x is False), MAE/Corr NaN
    out = mmsa_regression_metrics(t([0.4, float("nan"), 1.0, -2.2]), t([0.2, 1.0, 1.0, -2.0]))
    assert out["Mult_acc_7"] == pytest.approx(0.75, abs=1e-12) and out["Mult_acc_5"] == pytest.approx(0.75, abs=1e-12)
    assert out["Has0_acc_2"] == pytest.approx(0.75, abs=1e-12)  # NaN >= 0 is False: predicted negative
    assert math.isnan(out["MAE"]) and math.isnan(out["Corr"])


def test_empty_and_mismatch() -> None:
    out = mmsa_regression_metrics(t([]), t([]))
    assert all(math.isnan(v) for v in out.values())
    with pytest.raises(ValueError):
        mmsa_regression_metrics(t([1.0, 2.0]), t([1.0]))


# ----------------------------------------------------------------------------------- sims scheme


def test_sims_bins_at_boundaries() -> None:
    # pred sits on (or next to) every cut; truth is an interior point of the bin pred must land in.
    pred = t([-1.5, -0.7, -0.69, -0.1, -0.09, 0.0, 0.1, 0.11, 0.7, 0.71, 1.0, 1.3])
    truth = t([-0.9, -0.9, -0.4, -0.4, 0.05, 0.05, 0.05, 0.4, 0.4, 0.9, 0.9, 0.9])
    out = sims_regression_metrics(pred, truth)
    assert tuple(out) == SIMS_KEYS
    # 5 bins [-1,-.7] (-.7,-.1] (-.1,.1] (.1,.7] (.7,1]:
    #   pred -> 0 0 1 1 2 2 2 3 3 4 4 4 (-1.5 clipped to -1; -0.7 -> bin 0; -0.1 -> bin 1; 0.1 -> bin 2;
    #   0.7 -> bin 3; 1.3 clipped to 1), truth -> same -> 12/12
    assert out["Mult_acc_5"] == 1.0
    # 3 bins [-1,-.1] (-.1,.1] (.1,1]: pred 0 0 0 0 1 1 1 2 2 2 2 2, truth the same -> 12/12
    assert out["Mult_acc_3"] == 1.0
    # 2 bins [-1,0] (0,1]: pred  0 0 0 0 0 0 1 1 1 1 1 1   (0.0 is in the negative bin)
    #                      truth 0 0 0 0 1 1 1 1 1 1 1 1   -> idx 4, 5 wrong -> 10/12
    assert out["Mult_acc_2"] == pytest.approx(10 / 12, abs=1e-12)
    # class 1: tp=6 fp=0 fn=2 -> F1 = 12/14 = 6/7, support 8
    # class 0: tp=4 fp=2 fn=0 -> F1 = 8/10 = 4/5,  support 4
    # weighted = (8*6/7 + 4*4/5) / 12 = (352/35) / 12 = 88/105
    assert out["F1_score"] == pytest.approx(88 / 105, abs=1e-12)
    # MAE on CLIPPED values: 0.1 0.2 0.29 0.3 0.14 0.05 0.05 0.29 0.3 0.19 0.1 0.1 -> 2.11 / 12
    # (unclipped would use 0.6 and 0.4 for the first and last pairs).
    assert out["MAE"] == pytest.approx(2.11 / 12, abs=ABS)


def test_sims_zero_is_negative_and_clip() -> None:
    # pred 0.0 vs truth -0.5: both in [-1, 0] -> match; pred 0.0 vs truth 0.5 -> miss. acc2 = 1/2.
    out = sims_regression_metrics(t([0.0, 0.0]), t([-0.5, 0.5]))
    assert out["Mult_acc_2"] == 0.5
    # pred -2, 0, 2 clipped to -1, 0, 1 == truth -> MAE 0 (unclipped 2/3), Corr 1.
    out = sims_regression_metrics(t([-2.0, 0.0, 2.0]), t([-1.0, 0.0, 1.0]))
    assert out["MAE"] == 0.0
    assert out["Corr"] == pytest.approx(1.0, abs=1e-12)
    assert out["Mult_acc_5"] == out["Mult_acc_3"] == out["Mult_acc_2"] == out["F1_score"] == 1.0
    # truth 1.4 and 3.0 both clip to 1 -> constant truth -> Corr NaN
    out = sims_regression_metrics(t([0.2, 0.9]), t([1.4, 3.0]))
    assert math.isnan(out["Corr"])


# ----------------------------------------------------------------------- reference: sklearn / numpy


def _mmsa_reference(p: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """MMSA MetricsTop rules, written with numpy + scikit-learn on float32 arrays."""
    from sklearn.metrics import accuracy_score, f1_score

    def mult(a: float) -> float:
        return float(np.mean(np.round(np.clip(p, -a, a)) == np.round(np.clip(y, -a, a))))

    nz = y != 0
    return {
        "Has0_acc_2": accuracy_score(y >= 0, p >= 0),
        "Has0_F1_score": f1_score(y >= 0, p >= 0, average="weighted"),
        "Non0_acc_2": accuracy_score(y[nz] > 0, p[nz] > 0),
        "Non0_F1_score": f1_score(y[nz] > 0, p[nz] > 0, average="weighted"),
        "Mult_acc_5": mult(2.0),
        "Mult_acc_7": mult(3.0),
        "MAE": float(np.mean(np.abs(p.astype(np.float64) - y))),
        "Corr": float(np.corrcoef(p, y)[0][1]),
    }


def _sims_reference(p: np.ndarray, y: np.ndarray) -> dict[str, float]:
    from sklearn.metrics import accuracy_score, f1_score

    p, y = np.clip(p, -1.0, 1.0), np.clip(y, -1.0, 1.0)

    def bins(x: np.ndarray, edges: list[float]) -> np.ndarray:
        out = np.full(x.shape, -1)
        for i in range(len(edges) - 1):  # (lo, hi], compared in float32 like MMSA's numpy code
            out[(x > np.float32(edges[i])) & (x <= np.float32(edges[i + 1]))] = i
        assert (out >= 0).all()
        return out

    e2, e3, e5 = [-1.01, 0.0, 1.01], [-1.01, -0.1, 0.1, 1.01], [-1.01, -0.7, -0.1, 0.1, 0.7, 1.01]
    return {
        "Mult_acc_2": accuracy_score(bins(y, e2), bins(p, e2)),
        "F1_score": f1_score(bins(y, e2), bins(p, e2), average="weighted"),
        "Mult_acc_3": accuracy_score(bins(y, e3), bins(p, e3)),
        "Mult_acc_5": accuracy_score(bins(y, e5), bins(p, e5)),
        "MAE": float(np.mean(np.abs(p.astype(np.float64) - y))),
        "Corr": float(np.corrcoef(p, y)[0][1]),
    }


def test_against_sklearn_numpy_random() -> None:
    rng = np.random.default_rng(0)
    n = 200
    # MOSI-like truths: multiples of 1/3 in [-3, 3] (many exact zeros); preds with some exact halves.
    y = (rng.integers(-9, 10, n) / 3).astype(np.float32)
    p = rng.normal(0.0, 1.6, n).astype(np.float32)
    p[:30] = rng.integers(-4, 4, 30) + 0.5
    assert (y == 0).sum() > 0
    got = mmsa_regression_metrics(torch.from_numpy(p), torch.from_numpy(y))
    ref = _mmsa_reference(p, y)
    for k in MMSA_KEYS:
        assert got[k] == pytest.approx(ref[k], abs=1e-6), k

    # SIMS-like truths: multiples of 0.1 in [-1, 1] (hit every cut), preds beyond the clip range.
    y = (rng.integers(-10, 11, n) / 10).astype(np.float32)
    p = rng.uniform(-1.3, 1.3, n).astype(np.float32)
    p[:20] = np.array([-0.7, -0.1, 0.0, 0.1, 0.7] * 4, dtype=np.float32)
    got = sims_regression_metrics(torch.from_numpy(p), torch.from_numpy(y))
    ref = _sims_reference(p, y)
    for k in SIMS_KEYS:
        assert got[k] == pytest.approx(ref[k], abs=1e-6), k


# ----------------------------------------------------------------------------- SentimentMetrics


@pytest.mark.parametrize(
    ("scheme", "fn", "keys", "scale"),
    [("mmsa", mmsa_regression_metrics, MMSA_KEYS, 3.0), ("sims", sims_regression_metrics, SIMS_KEYS, 1.0)],
)
def test_module_accumulates_like_functional(scheme, fn, keys, scale) -> None:
    gen = torch.Generator().manual_seed(1)
    pred = torch.randn(50, generator=gen) * scale
    truth = torch.round(torch.rand(50, generator=gen) * 2 * scale - scale)  # includes exact zeros
    metric = SentimentMetrics(scheme)
    assert metric.keys == keys
    for lo, hi in [(0, 7), (7, 30), (30, 50)]:
        dtype = torch.bfloat16 if lo == 0 else torch.float32
        metric.update(pred[lo:hi].unsqueeze(-1).to(dtype), truth[lo:hi])
    # first chunk went in as bf16: the reference uses the same rounded values
    ref_pred = torch.cat([pred[:7].to(torch.bfloat16).float(), pred[7:]])
    got, want = metric.compute(), fn(ref_pred, truth)
    assert tuple(got) == keys
    for k in keys:
        assert got[k].dtype == torch.float64 and got[k].ndim == 0
        assert got[k].item() == pytest.approx(want[k], abs=1e-12, nan_ok=True), k

    metric.reset()
    metric.update(pred, truth)
    assert metric.compute()["MAE"].item() == pytest.approx(fn(pred, truth)["MAE"], abs=1e-12)


def test_module_state_not_in_state_dict() -> None:
    holder = nn.Module()
    holder.metric = SentimentMetrics()
    holder.metric.update(t([0.5, -1.0, 2.0]), t([1.0, -1.0, 0.0]))
    assert holder.state_dict() == {}
    assert holder.metric.state_dict() == {}
    # list states gathered with "cat" under DDP, marked non-persistent
    from torchmetrics.utilities import dim_zero_cat

    for name in ("preds", "targets"):
        assert holder.metric._reductions[name] is dim_zero_cat
        assert holder.metric._persistent[name] is False


def test_module_compute_before_update_and_bad_scheme() -> None:
    with pytest.warns(UserWarning, match="before the ``update``"):  # torchmetrics' notice
        out = SentimentMetrics("sims").compute()
    assert tuple(out) == SIMS_KEYS and all(torch.isnan(v) for v in out.values())
    with pytest.raises(ValueError):
        SentimentMetrics("mosi")  # type: ignore[arg-type]
