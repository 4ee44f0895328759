"""Tests for lightning_kd.metrics.clustering: hand-computed values, brute-force ACC and agreement with scikit-learn."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

from lightning_kd.metrics import CLUSTERING_KEYS, ClusteringMetrics, clustering_metrics, contingency_matrix


def t(values) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.long)


def brute_force_acc(pred: np.ndarray, truth: np.ndarray) -> float:
    """Best accuracy over every one-to-one cluster -> class mapping (padded to a square with dummy ids)."""
    _, p = np.unique(pred, return_inverse=True)
    _, y = np.unique(truth, return_inverse=True)
    size = max(p.max(), y.max()) + 1
    return max(float(np.mean(np.asarray(perm)[p] == y)) for perm in itertools.permutations(range(size)))


def test_keys_and_perfect_permuted_labelling():
    out = clustering_metrics(t([2, 2, 0, 0, 1, 1]), t([0, 0, 1, 1, 2, 2]))
    assert tuple(out) == CLUSTERING_KEYS
    for key in CLUSTERING_KEYS:
        assert out[key] == pytest.approx(1.0, abs=1e-12), key


def test_hand_case_one_error():
    # classes x clusters: [[2,0,0],[0,2,0],[0,1,1]]
    pred, truth = t([0, 0, 1, 1, 2, 1]), t([0, 0, 1, 1, 2, 2])
    assert torch.equal(contingency_matrix(pred, truth), t([[2, 0, 0], [0, 2, 0], [0, 1, 1]]))
    out = clustering_metrics(pred, truth)
    assert out["ACC"] == pytest.approx(5 / 6, abs=1e-12)
    assert out["purity"] == pytest.approx(5 / 6, abs=1e-12)
    # pairs: tp=4, fp=4, fn=2, tn=20 -> ARI = 2(4*20 - 2*4) / (6*22 + 8*24) = 4/9
    assert out["ARI"] == pytest.approx(4 / 9, abs=1e-12)
    # MI = ln3/2 + ln2/3; H(classes) = ln3; H(clusters, sizes 2,3,1) = -(ln(1/3)/3 + ln(1/2)/2 + ln(1/6)/6)
    mi = math.log(3) / 2 + math.log(2) / 3
    h_pred = -(math.log(1 / 3) / 3 + math.log(1 / 2) / 2 + math.log(1 / 6) / 6)
    assert out["NMI"] == pytest.approx(mi / ((math.log(3) + h_pred) / 2), abs=1e-12)
    assert out["NMI"] == pytest.approx(normalized_mutual_info_score(truth.numpy(), pred.numpy()), abs=1e-12)


def test_arbitrary_ids():
    out = clustering_metrics(t([-3, -3, 100, 100, 5]), t([10, 10, 7, 7, 42]))
    for key in CLUSTERING_KEYS:
        assert out[key] == pytest.approx(1.0, abs=1e-12), key
    # whole-number floats are accepted, fractions are not
    assert clustering_metrics(torch.tensor([1.0, 1.0, 0.0]), t([0, 0, 1]))["ACC"] == 1.0
    with pytest.raises(ValueError):
        clustering_metrics(torch.tensor([0.5, 1.0]), t([0, 1]))
    with pytest.raises(ValueError):
        clustering_metrics(t([0, 1, 1]), t([0, 1]))


def test_more_clusters_than_classes():
    # classes x clusters: [[2,1,0,0],[0,0,2,1]] -> two clusters stay unmatched
    out = clustering_metrics(t([0, 0, 1, 2, 2, 3]), t([0, 0, 0, 1, 1, 1]))
    assert out["ACC"] == pytest.approx(4 / 6, abs=1e-12)
    assert out["purity"] == pytest.approx(1.0, abs=1e-12)


def test_fewer_clusters_than_classes():
    out = clustering_metrics(t([0, 0, 1, 1]), t([0, 1, 2, 3]))
    assert out["ACC"] == pytest.approx(0.5, abs=1e-12)
    assert out["purity"] == pytest.approx(0.5, abs=1e-12)


def test_degenerate_single_cluster_matches_sklearn():
    for pred, truth in [([0, 0, 0], [1, 1, 1]), ([0, 0, 0], [0, 1, 1]), ([0, 1, 2], [5, 5, 5]), ([4], [9])]:
        out = clustering_metrics(t(pred), t(truth))
        assert out["NMI"] == pytest.approx(normalized_mutual_info_score(truth, pred), abs=1e-12)
        assert out["ARI"] == pytest.approx(adjusted_rand_score(truth, pred), abs=1e-12)


@pytest.mark.parametrize("seed", range(20))
def test_agrees_with_sklearn_and_brute_force(seed: int):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(2, 60))
    k_pred, k_true = int(rng.integers(1, 6)), int(rng.integers(1, 6))
    pred = rng.integers(0, k_pred, n) * 3 + 1  # non-contiguous ids
    truth = rng.integers(0, k_true, n)
    out = clustering_metrics(torch.from_numpy(pred), torch.from_numpy(truth))
    assert out["NMI"] == pytest.approx(normalized_mutual_info_score(truth, pred), abs=1e-9)
    assert out["ARI"] == pytest.approx(adjusted_rand_score(truth, pred), abs=1e-9)
    assert out["ACC"] == pytest.approx(brute_force_acc(pred, truth), abs=1e-12)
    cont = np.zeros((truth.max() + 1, pred.max() + 1))
    np.add.at(cont, (truth, pred), 1)
    assert out["purity"] == pytest.approx(cont.max(axis=0).sum() / n, abs=1e-12)


def test_empty_is_nan():
    out = clustering_metrics(t([]), t([]))
    assert all(math.isnan(v) for v in out.values())
    metric = ClusteringMetrics()
    with pytest.warns(UserWarning, match="before the ``update``"):  # torchmetrics' notice
        assert all(torch.isnan(v) for v in metric.compute().values())


def test_metric_accumulates_batches():
    rng = np.random.default_rng(7)
    pred, truth = torch.from_numpy(rng.integers(0, 4, 50)), torch.from_numpy(rng.integers(0, 3, 50))
    metric = ClusteringMetrics()
    for sl in (slice(0, 17), slice(17, 30), slice(30, 50)):
        metric.update(pred[sl], truth[sl])
    out = metric.compute()
    expected = clustering_metrics(pred, truth)
    assert tuple(out) == CLUSTERING_KEYS
    for key in CLUSTERING_KEYS:
        assert out[key].dtype == torch.float64 and out[key].ndim == 0
        assert out[key].item() == pytest.approx(expected[key], abs=1e-12)
    assert metric.state_dict() == {}
    metric.reset()
    with pytest.warns(UserWarning, match="before the ``update``"):
        assert all(torch.isnan(v) for v in metric.compute().values())


def test_torchmetrics_differs_where_we_keep_our_own():
    """Why the clustering metrics are computed here and not taken from torchmetrics.functional.clustering:
    its NMI and ARI are float32 (~1e-8 away from scikit-learn), its NMI of two single-cluster labellings is 0
    where scikit-learn says 1, and its cluster_accuracy needs an extra package (torch_linear_assignment)."""
    import importlib.util

    from torchmetrics.functional.clustering import adjusted_rand_score as tm_ari
    from torchmetrics.functional.clustering import cluster_accuracy
    from torchmetrics.functional.clustering import normalized_mutual_info_score as tm_nmi

    pred, truth = t([0, 0, 1, 1, 2, 1]), t([0, 0, 1, 1, 2, 2])  # the hand case above: ARI = 4/9
    tm = tm_ari(pred, truth)
    assert tm.dtype == torch.float32 and abs(tm.item() - 4 / 9) > 1e-9
    assert clustering_metrics(pred, truth)["ARI"] == pytest.approx(4 / 9, abs=1e-15)
    want = normalized_mutual_info_score(truth.numpy(), pred.numpy())
    assert abs(tm_nmi(pred, truth).item() - want) > 1e-9
    assert clustering_metrics(pred, truth)["NMI"] == pytest.approx(want, abs=1e-12)

    one = t([0, 0, 0])
    assert tm_nmi(one, one).item() == 0.0
    assert normalized_mutual_info_score(one.numpy(), one.numpy()) == 1.0 == clustering_metrics(one, one)["NMI"]

    if importlib.util.find_spec("torch_linear_assignment") is None:
        with pytest.raises(RuntimeError, match="torch_linear_assignment"):
            cluster_accuracy(pred, truth, num_classes=3)
