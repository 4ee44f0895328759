"""Tests for lightning_kd.metrics.classification: hand-computed values and agreement with scikit-learn."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from sklearn.metrics import accuracy_score, f1_score
from torch import nn

from lightning_kd.metrics import (
    BINARY_SENTIMENT_KEYS,
    EMOTIONS,
    ClassificationMetrics,
    binary_sentiment_metrics,
    emotion_keys,
    emotion_metrics,
    mmsa_regression_metrics,
)


def t(values, dtype=torch.float32) -> torch.Tensor:
    return torch.tensor(values, dtype=dtype)


# ----------------------------------------------------------------------------- binary sentiment


def test_binary_sentiment_hand_computed() -> None:
    #          idx:  0    1    2    3    4    5    6     7     8    9
    truth = t([0.0, 0.0, 1.2, 2.0, 0.8, 0.6, 1.4, -1.0, -0.4, 2.6])
    pred = t([0, 1, 1, 1, 1, 0, 1, 0, 1, 1], torch.int64)
    out = binary_sentiment_metrics(pred, truth)
    assert tuple(out) == BINARY_SENTIMENT_KEYS
    # Has0: truth >= 0 -> 1 1 1 1 1 1 1 0 0 1; pred 0 1 1 1 1 0 1 0 1 1; correct 1,2,3,4,6,7,9 -> 7/10
    #   class 1: tp=6 fp=1 fn=2 -> 12/15 = 0.8 (support 8); class 0: tp=1 fp=2 fn=1 -> 2/5 (support 2)
    #   weighted = (8 * 0.8 + 2 * 0.4) / 10 = 0.72
    assert out["Has0_acc_2"] == pytest.approx(0.7, abs=1e-12)
    assert out["Has0_F1_score"] == pytest.approx(0.72, abs=1e-12)
    # Non0: drop idx 0, 1; truth > 0 -> 1 1 1 1 1 0 0 1; pred 1 1 1 0 1 0 1 1; correct 2,3,4,6,7,9 -> 6/8
    #   class 1: tp=5 fp=1 fn=1 -> 10/12 (support 6); class 0: tp=1 fp=1 fn=1 -> 2/4 (support 2)
    #   weighted = (6 * 5/6 + 2 * 1/2) / 8 = 6/8
    assert out["Non0_acc_2"] == pytest.approx(6 / 8, abs=1e-12)
    assert out["Non0_F1_score"] == pytest.approx(6 / 8, abs=1e-12)


def test_binary_sentiment_matches_regression_metrics_columns() -> None:
    """A classifier predicting class 1 exactly where a regressor predicts > 0 scores the same Non0 columns, and
    where it predicts >= 0 the same Has0 columns."""
    gen = torch.Generator().manual_seed(0)
    truth = torch.round(torch.rand(300, generator=gen) * 18 - 9) / 3  # multiples of 1/3, many exact zeros
    score = torch.randn(300, generator=gen) * 1.5
    score[:20] = 0.0
    reg = mmsa_regression_metrics(score, truth)
    has0 = binary_sentiment_metrics((score >= 0).long(), truth)
    non0 = binary_sentiment_metrics((score > 0).long(), truth)
    for k in ("Has0_acc_2", "Has0_F1_score"):
        assert has0[k] == pytest.approx(reg[k], abs=1e-12), k
    for k in ("Non0_acc_2", "Non0_F1_score"):
        assert non0[k] == pytest.approx(reg[k], abs=1e-12), k


def test_binary_sentiment_edge_cases() -> None:
    out = binary_sentiment_metrics(t([1, 0, 1], torch.int64), t([0.0, 0.0, 0.0]))
    # Has0: truth all 1, pred 1 0 1 -> acc 2/3, F1 of class 1 only: 2*2/(2*2+0+1) = 4/5
    assert out["Has0_acc_2"] == pytest.approx(2 / 3) and out["Has0_F1_score"] == pytest.approx(0.8)
    assert math.isnan(out["Non0_acc_2"]) and math.isnan(out["Non0_F1_score"])
    assert all(math.isnan(v) for v in binary_sentiment_metrics(t([], torch.int64), t([])).values())
    # float / bool / (N, 1) predictions are accepted
    a = binary_sentiment_metrics(t([[1.0], [0.0]]), t([1.0, -1.0]))
    b = binary_sentiment_metrics(torch.tensor([True, False]), t([1.0, -1.0]))
    assert a == b and a["Has0_F1_score"] == 1.0
    with pytest.raises(ValueError, match="0/1"):
        binary_sentiment_metrics(t([2, 0], torch.int64), t([1.0, -1.0]))
    with pytest.raises(ValueError, match="0/1"):
        binary_sentiment_metrics(t([0.3, 0.0]), t([1.0, -1.0]))
    with pytest.raises(ValueError, match="values"):
        binary_sentiment_metrics(t([1, 0], torch.int64), t([1.0]))


# ----------------------------------------------------------------------------------- emotions


def test_emotion_hand_computed() -> None:
    truth = t([[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [1, 0, 0, 0]], torch.int64)
    pred = t([[1, 0, 0, 0], [1, 0, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]], torch.int64)
    out = emotion_metrics(pred, truth)
    assert tuple(out) == emotion_keys() == (
        "Neutral_acc", "Neutral_F1", "Happy_acc", "Happy_F1", "Sad_acc", "Sad_F1", "Angry_acc", "Angry_F1",
        "Avg_acc", "Avg_F1")
    # Neutral: truth 1 0 0 1, pred 1 1 0 0 -> acc 2/4; class 1 tp1 fp1 fn1 -> 1/2, class 0 tp1 fp1 fn1 -> 1/2 -> F1 1/2
    assert out["Neutral_acc"] == pytest.approx(0.5) and out["Neutral_F1"] == pytest.approx(0.5)
    # Happy: truth 0 1 0 0, pred 0 0 0 0 -> acc 3/4; class 0 tp3 fn0 fp1 -> 6/7 (support 3), class 1 -> 0 (support 1)
    assert out["Happy_acc"] == pytest.approx(0.75) and out["Happy_F1"] == pytest.approx(3 / 4 * 6 / 7)
    # Sad: all correct
    assert out["Sad_acc"] == 1.0 and out["Sad_F1"] == 1.0
    # Angry: truth 0 0 0 0, pred 0 0 0 1 -> acc 3/4; only class 0 has support: tp3 fp0 fn1 -> 6/7
    assert out["Angry_acc"] == pytest.approx(0.75) and out["Angry_F1"] == pytest.approx(6 / 7)
    assert out["Avg_acc"] == pytest.approx((0.5 + 0.75 + 1 + 0.75) / 4)
    assert out["Avg_F1"] == pytest.approx((0.5 + 9 / 14 + 1 + 6 / 7) / 4)


def test_emotion_names_and_errors() -> None:
    out = emotion_metrics(t([[1, 0], [0, 1]], torch.int64), t([[1, 0], [1, 1]], torch.int64), names=("Joy", "Fear"))
    assert tuple(out) == ("Joy_acc", "Joy_F1", "Fear_acc", "Fear_F1", "Avg_acc", "Avg_F1")
    assert all(math.isnan(v) for v in emotion_metrics(torch.zeros(0, 4), torch.zeros(0, 4)).values())
    with pytest.raises(ValueError, match=r"\(N, 4\)"):
        emotion_metrics(torch.zeros(3, 2), torch.zeros(3, 2))
    with pytest.raises(ValueError, match="0/1"):
        emotion_metrics(torch.full((3, 4), 2), torch.zeros(3, 4))


# ----------------------------------------------------------------------- reference: scikit-learn


@pytest.mark.parametrize("seed", range(6))
def test_against_sklearn_random(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(5, 80))
    truth = (rng.integers(-9, 10, n) / 3).astype(np.float32)
    pred = rng.integers(0, 2, n)
    if seed == 1:
        pred[:] = 1  # a class absent from the prediction
    if seed == 2:
        truth = np.abs(truth) + 0.5  # a class absent from the truth (and no zeros)
    got = binary_sentiment_metrics(torch.from_numpy(pred), torch.from_numpy(truth))
    nz = truth != 0
    ref = {
        "Has0_acc_2": accuracy_score(truth >= 0, pred == 1),
        "Has0_F1_score": f1_score(truth >= 0, pred == 1, average="weighted"),
        "Non0_acc_2": accuracy_score(truth[nz] > 0, pred[nz] == 1),
        "Non0_F1_score": f1_score(truth[nz] > 0, pred[nz] == 1, average="weighted"),
    }
    for k in BINARY_SENTIMENT_KEYS:
        assert got[k] == pytest.approx(ref[k], abs=1e-12), k

    # emotions, MulT eval_iemocap: per column accuracy and f1_score(truth, pred, average="weighted")
    e_truth = np.eye(4, dtype=np.int64)[rng.choice(4, n, p=[0.4, 0.2, 0.2, 0.2])]
    e_pred = (rng.random((n, 4)) < 0.3).astype(np.int64)
    e_truth[:, 3] = 0 if seed % 2 else e_truth[:, 3]  # Angry absent from truth
    e_pred[:, 2] = 0 if seed % 3 == 0 else e_pred[:, 2]  # Sad never predicted
    got = emotion_metrics(torch.from_numpy(e_pred), torch.from_numpy(e_truth))
    for i, name in enumerate(EMOTIONS):
        assert got[f"{name}_acc"] == pytest.approx(accuracy_score(e_truth[:, i], e_pred[:, i]), abs=1e-12)
        assert got[f"{name}_F1"] == pytest.approx(f1_score(e_truth[:, i], e_pred[:, i], average="weighted"), abs=1e-12)
    assert got["Avg_F1"] == pytest.approx(
        np.mean([f1_score(e_truth[:, i], e_pred[:, i], average="weighted") for i in range(4)]), abs=1e-12)


def test_torchmetrics_divides_in_float32() -> None:
    """Why lightning_kd.metrics.label_scores divides torchmetrics' class counts itself: torchmetrics' own
    accuracy and weighted F1 divide them in float32, ~2e-8 away from scikit-learn's float64 values (which MMSA and
    MulT report); on the counts themselves the two agree, so only the division is ours."""
    from torchmetrics.functional.classification import multiclass_accuracy, multiclass_f1_score

    from lightning_kd.metrics.label_scores import accuracy_and_weighted_f1

    pred, truth = t([1, 0, 0], torch.int64), t([1, 1, 0], torch.int64)
    want_acc, want_f1 = accuracy_score(truth, pred), f1_score(truth, pred, average="weighted")  # both 2/3
    tm_acc = multiclass_accuracy(pred, truth, num_classes=2, average="micro")
    tm_f1 = multiclass_f1_score(pred, truth, num_classes=2, average="weighted")
    assert tm_acc.dtype == tm_f1.dtype == torch.float32
    assert abs(tm_acc.item() - want_acc) > 1e-9 and abs(tm_f1.item() - want_f1) > 1e-9
    acc, f1 = accuracy_and_weighted_f1(pred, truth, 2)
    assert acc == pytest.approx(want_acc, abs=1e-15) and f1 == pytest.approx(want_f1, abs=1e-15)

    rng = np.random.default_rng(0)
    for k in (2, 3, 7):
        p, y = torch.from_numpy(rng.integers(0, k, 500)), torch.from_numpy(rng.integers(0, k, 500))
        acc, f1 = accuracy_and_weighted_f1(p, y, k)
        assert acc == pytest.approx(multiclass_accuracy(p, y, num_classes=k, average="micro").item(), abs=1e-6)
        assert f1 == pytest.approx(multiclass_f1_score(p, y, num_classes=k, average="weighted").item(), abs=1e-6)
        assert f1 == pytest.approx(f1_score(y, p, average="weighted"), abs=1e-12)


# ----------------------------------------------------------------------------- ClassificationMetrics


def test_module_accumulates_like_functional() -> None:
    gen = torch.Generator().manual_seed(3)
    truth = torch.round(torch.rand(50, generator=gen) * 6 - 3)
    pred = (torch.rand(50, generator=gen) > 0.4).long()
    metric = ClassificationMetrics("binary_sentiment")
    assert metric.keys == BINARY_SENTIMENT_KEYS
    for lo, hi in [(0, 7), (7, 30), (30, 50)]:
        metric.update(pred[lo:hi], truth[lo:hi])
    got, want = metric.compute(), binary_sentiment_metrics(pred, truth)
    assert tuple(got) == BINARY_SENTIMENT_KEYS
    for k in BINARY_SENTIMENT_KEYS:
        assert got[k].dtype == torch.float64 and got[k].ndim == 0
        assert got[k].item() == pytest.approx(want[k], abs=1e-12), k

    e_truth = torch.eye(4, dtype=torch.long)[torch.randint(0, 4, (33,), generator=gen)]
    e_pred = (torch.rand(33, 4, generator=gen) > 0.6).long()
    metric = ClassificationMetrics("emotion")
    metric.update(e_pred[:10], e_truth[:10])
    metric.update(e_pred[10:], e_truth[10:])
    got, want = metric.compute(), emotion_metrics(e_pred, e_truth)
    assert tuple(got) == metric.keys == emotion_keys()
    for k in metric.keys:
        assert got[k].item() == pytest.approx(want[k], abs=1e-12), k
    metric.reset()
    with pytest.warns(UserWarning, match="before the ``update``"):  # torchmetrics' notice
        assert all(torch.isnan(v) for v in metric.compute().values())


def test_module_state_not_in_state_dict() -> None:
    from torchmetrics.utilities import dim_zero_cat

    holder = nn.Module()
    holder.binary = ClassificationMetrics("binary_sentiment")
    holder.emotion = ClassificationMetrics("emotion")
    holder.binary.update(t([1, 0, 1], torch.int64), t([1.0, -1.0, 0.0]))
    holder.emotion.update(torch.eye(4, dtype=torch.long), torch.eye(4, dtype=torch.long))
    assert holder.state_dict() == {}
    for m in (holder.binary, holder.emotion):
        for name in ("preds", "targets"):
            assert m._reductions[name] is dim_zero_cat  # gathered with "cat" under DDP
            assert m._persistent[name] is False


def test_module_errors_and_empty() -> None:
    with pytest.warns(UserWarning, match="before the ``update``"):
        out = ClassificationMetrics("emotion", names=("A", "B")).compute()
    assert tuple(out) == ("A_acc", "A_F1", "B_acc", "B_F1", "Avg_acc", "Avg_F1")
    assert all(torch.isnan(v) for v in out.values())
    with pytest.raises(ValueError, match="scheme"):
        ClassificationMetrics("multiclass")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"\(B, 4\)"):
        ClassificationMetrics("emotion").update(torch.zeros(3, 2), torch.zeros(3, 2))
    with pytest.raises(ValueError, match="values"):
        ClassificationMetrics("binary_sentiment").update(torch.zeros(3), torch.zeros(2))


def _ddp_worker(rank: int, port: int, out: str) -> None:
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    try:
        gen = torch.Generator().manual_seed(7)
        truth = torch.round(torch.rand(30, generator=gen) * 6 - 3)
        pred = (torch.rand(30, generator=gen) > 0.5).long()
        e_truth = torch.eye(4, dtype=torch.long)[torch.randint(0, 4, (30,), generator=gen)]
        e_pred = (torch.rand(30, 4, generator=gen) > 0.6).long()
        part = slice(0, 11) if rank == 0 else slice(11, 30)  # uneven shards
        binary, emotion = ClassificationMetrics("binary_sentiment"), ClassificationMetrics("emotion")
        binary.update(pred[part], truth[part])
        emotion.update(e_pred[part], e_truth[part])
        got = {**binary.compute(), **emotion.compute()}
        want = {**binary_sentiment_metrics(pred, truth), **emotion_metrics(e_pred, e_truth)}
        torch.save({k: (got[k].item(), want[k]) for k in want}, f"{out}.{rank}")
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_module_gathers_across_ddp_ranks(tmp_path) -> None:
    import socket

    import torch.multiprocessing as mp

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = str(tmp_path / "result")
    mp.spawn(_ddp_worker, args=(port, out), nprocs=2, join=True)
    for rank in (0, 1):
        for k, (got, want) in torch.load(f"{out}.{rank}").items():
            assert got == pytest.approx(want, abs=1e-12), (rank, k)


def test_binary_labels_scheme_hand_computed() -> None:
    """``scheme="binary"`` (0/1 truth labels, CDGKD's arousal / valence): acc and weighted F1 by hand."""
    from lightning_kd.metrics.classification import BINARY_KEYS, ClassificationMetrics

    m = ClassificationMetrics("binary")
    m.update(torch.tensor([1, 0, 1]), torch.tensor([1, 1, 1]))
    m.update(torch.tensor([0, 0]), torch.tensor([0, 1]))
    out = m.compute()
    assert tuple(out) == BINARY_KEYS == ("acc", "F1")
    # truth 1,1,1,0,1 / pred 1,0,1,0,0: 3 of 5 right; F1 class 1 = 2*2/(2*2+0+2) = 2/3 (support 4),
    # class 0 = 2*1/(2*1+2+0) = 1/2 (support 1): weighted (4 * 2/3 + 1/2) / 5
    assert float(out["acc"]) == pytest.approx(0.6)
    assert float(out["F1"]) == pytest.approx((4 * 2 / 3 + 0.5) / 5)
    with pytest.raises(ValueError, match="classes 0/1"):
        m.update(torch.tensor([0]), torch.tensor([0.5]))
