"""kNN graph builder and low-pass graph filter vs dense references; memory bound of the builder."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

from lightning_kd.nn.graph import knn_graph, normalized_laplacian_filter, sparse_max_symmetrize


def _dense_knn_reference(x: np.ndarray, k: int, metric: str, include_self: bool, symmetric: bool) -> np.ndarray:
    """Full N x N similarity, top-k per row, max-symmetrise: the dense definition."""
    n = x.shape[0]
    if metric == "cosine":
        xn = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
        score = xn @ xn.T  # larger = nearer
    else:
        d2 = ((x[:, None, :] - x[None, :, :]) ** 2).sum(-1)
        score = -d2
    if not include_self:
        np.fill_diagonal(score, -np.inf)
    idx = np.argsort(-score, axis=1, kind="stable")[:, :k]
    a = np.zeros((n, n))
    rows = np.repeat(np.arange(n), k)
    if metric == "cosine":
        a[rows, idx.ravel()] = np.maximum(score[rows, idx.ravel()], 0.0)
    else:
        d2k = -score[rows, idx.ravel()]
        sigma = np.sqrt(d2k).mean()
        a[rows, idx.ravel()] = np.exp(-d2k / (2 * sigma**2))
    return np.maximum(a, a.T) if symmetric else a


@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
@pytest.mark.parametrize("block_size", [1, 7, 16, 50, 4096])
@pytest.mark.parametrize("symmetric", [True, False])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_knn_graph_matches_dense_reference(metric: str, block_size: int, symmetric: bool, dtype: torch.dtype) -> None:
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(50, 8, generator=gen, dtype=torch.float64)
    adj = knn_graph(x.to(dtype), 5, metric=metric, block_size=block_size, symmetric=symmetric)
    assert adj.layout == torch.sparse_coo and adj.is_coalesced() and adj.dtype == torch.float32
    assert adj.shape == (50, 50)
    ref = _dense_knn_reference(x.numpy(), 5, metric, include_self=False, symmetric=symmetric)
    np.testing.assert_allclose(adj.to_dense().numpy(), ref, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
def test_knn_graph_structure(metric: str) -> None:
    x = torch.randn(60, 4, generator=torch.Generator().manual_seed(1))
    k = 4
    asym = knn_graph(x, k, metric=metric, block_size=13, symmetric=False)
    r, c = asym.indices()
    assert torch.equal(torch.bincount(r, minlength=60), torch.full((60,), k))  # exactly k stored per row
    assert not bool((r == c).any())  # no self loops by default
    sym = knn_graph(x, k, metric=metric, block_size=13)
    r, c = sym.indices()
    assert bool((torch.bincount(r, minlength=60) >= k).all())
    assert not bool((r == c).any())
    dense = sym.to_dense()
    assert torch.equal(dense, dense.T)
    assert torch.equal(sym.to_dense(), sparse_max_symmetrize(asym).to_dense())


@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
def test_knn_graph_include_self(metric: str) -> None:
    x = torch.randn(30, 5, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    adj = knn_graph(x, 3, metric=metric, block_size=8, include_self=True, symmetric=False)
    ref = _dense_knn_reference(x.numpy(), 3, metric, include_self=True, symmetric=False)
    np.testing.assert_allclose(adj.to_dense().numpy(), ref, rtol=1e-5, atol=1e-6)
    assert torch.allclose(adj.to_dense().diagonal(), torch.ones(30))  # self is its own nearest, weight 1


def test_knn_graph_deterministic_and_validates() -> None:
    x = torch.randint(0, 3, (40, 2), generator=torch.Generator().manual_seed(0)).float()  # many exact ties
    a = knn_graph(x, 6, metric="euclidean", block_size=9)
    for block_size in (9, 1, 40, 4096):  # ties are broken the same way however the rows are blocked
        b = knn_graph(x, 6, metric="euclidean", block_size=block_size)
        assert torch.equal(a.indices(), b.indices()) and torch.equal(a.values(), b.values())
    with pytest.raises(ValueError, match=r"k must be in \[1, 39\] for N=40"):
        knn_graph(x, 40)
    with pytest.raises(ValueError, match="unknown metric 'manhattan'"):
        knn_graph(x, 2, metric="manhattan")  # type: ignore[arg-type]


def _dense_filter_reference(a: np.ndarray, x: np.ndarray, order: int, self_loops: bool) -> np.ndarray:
    n = a.shape[0]
    ap = a + np.eye(n) if self_loops else a
    deg = ap.sum(1)
    dinv = np.where(deg > 0, 1.0 / np.sqrt(np.where(deg > 0, deg, 1.0)), 0.0)
    lsym = np.eye(n) - dinv[:, None] * ap * dinv[None, :]
    lsym[deg == 0, deg == 0] = 0.0  # isolated nodes: L_sym row is zero
    h = np.eye(n) - lsym / 2
    return np.linalg.matrix_power(h, order) @ x


@pytest.mark.parametrize("self_loops", [True, False])
@pytest.mark.parametrize("order", [0, 1, 2, 3])
def test_filter_matches_dense_reference(self_loops: bool, order: int) -> None:
    x = torch.randn(50, 6, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    adj = knn_graph(x, 5, metric="euclidean", block_size=16)
    out = normalized_laplacian_filter(adj, x, order=order, self_loops=self_loops)
    ref = _dense_filter_reference(adj.to_dense().double().numpy(), x.numpy(), order, self_loops)
    assert out.dtype == x.dtype and out.shape == x.shape
    np.testing.assert_allclose(out.numpy(), ref, rtol=1e-6, atol=1e-6)
    # CSR input and 1-D signals give the same result
    out_csr = normalized_laplacian_filter(adj.to_sparse_csr(), x[:, 0], order=order, self_loops=self_loops)
    np.testing.assert_allclose(out_csr.numpy(), ref[:, 0], rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("self_loops", [True, False])
def test_filter_isolated_node_keeps_features(self_loops: bool) -> None:
    # path 0-1-2-3, node 4 isolated
    r = torch.tensor([0, 1, 1, 2, 2, 3])
    c = torch.tensor([1, 0, 2, 1, 3, 2])
    adj = torch.sparse_coo_tensor(torch.stack([r, c]), torch.ones(6), (5, 5))
    x = torch.randn(5, 3, generator=torch.Generator().manual_seed(4))
    out = normalized_laplacian_filter(adj, x, order=3, self_loops=self_loops)
    assert torch.allclose(out[4], x[4])
    assert not torch.allclose(out[:4], x[:4])
    ref = _dense_filter_reference(adj.to_dense().double().numpy(), x.double().numpy(), 3, self_loops)
    np.testing.assert_allclose(out.numpy(), ref, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("self_loops", [True, False])
def test_filter_constant_signal_on_regular_graph(self_loops: bool) -> None:
    n = 12  # ring with +-1, +-2 neighbours: 4-regular
    i = torch.arange(n)
    r = torch.cat([i, i, i, i])
    c = torch.cat([(i + 1) % n, (i - 1) % n, (i + 2) % n, (i - 2) % n])
    adj = torch.sparse_coo_tensor(torch.stack([r, c]), torch.full((4 * n,), 0.7), (n, n))
    x = torch.full((n, 2), 3.5)
    out = normalized_laplacian_filter(adj, x, order=4, self_loops=self_loops)
    assert torch.allclose(out, x, atol=1e-6)


def test_filter_rejects_dense() -> None:
    with pytest.raises(TypeError, match="sparse"):
        normalized_laplacian_filter(torch.eye(3), torch.ones(3, 2))


_MEM_SCRIPT = textwrap.dedent(
    """
    import resource, time, torch
    from lightning_kd.nn.graph import knn_graph, normalized_laplacian_filter
    torch.manual_seed(0)
    n, d, k = 20000, 16, 10
    x = torch.randn(n, d)
    knn_graph(x[:256], 3, block_size=64)  # warm up allocator / kernels

    def status_kib(key):
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith(key))

    def growth(fn):  # peak resident-set growth in bytes while fn runs
        try:  # reset the high-water mark (Linux >= 4.0) so earlier peaks (import torch) cannot mask it
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")
            before, peak = status_kib("VmRSS"), (lambda: status_kib("VmHWM"))
        except OSError:
            before, peak = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
                            lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
        t0 = time.perf_counter()
        out = fn()
        return (peak() - before) * 1024, time.perf_counter() - t0, out

    g, dt, (adj, y) = growth(lambda: (a := knn_graph(x, k, metric="{metric}", block_size=1024),
                                      normalized_laplacian_filter(a, x, order=2)))
    assert adj._nnz() >= n * k and y.shape == x.shape
    # positive control: a (4096, N) float32 block (328 MB) touched in full must register
    g_ctrl, _, _ = growth(lambda: torch.ones(4096, n).sum())
    print(g, dt, adj._nnz(), g_ctrl)
    """
)


@pytest.mark.slow
@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
@pytest.mark.slow
def test_knn_graph_never_allocates_dense_n_by_n(metric: str) -> None:
    """At N=20000 a dense float32 graph is 1.6 GB; the builder's peak RSS growth must stay far below."""
    proc = subprocess.run(
        [sys.executable, "-c", _MEM_SCRIPT.format(metric=metric)], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    growth, seconds, nnz, control = proc.stdout.split()
    growth_bytes = int(growth)
    print(f"metric={metric}: peak RSS growth {growth_bytes / 2**20:.1f} MiB, {float(seconds):.2f} s, nnz={nnz}")
    assert int(control) > 300 * 2**20, "measurement cannot see a 328 MB allocation"
    assert growth_bytes < 300 * 2**20, f"peak RSS grew {growth_bytes / 2**20:.0f} MiB (dense graph: 1526 MiB)"
