"""Semantic graphs of a multi-view data set: kNN table, filtered views, against dense references."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from lightning_kd.data.generate.multiview import SyntheticMultiViewDataModule
from lightning_kd.data.semantic_graph import NEIGHBOURS_KEY, SemanticGraph


def _dense_knn(x: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    xn = F.normalize(x.double(), dim=1)
    sim = xn @ xn.T
    sim.fill_diagonal_(-float("inf"))
    vals, idx = sim.topk(k, dim=1)
    adj = torch.zeros(len(x), len(x), dtype=torch.float64)
    adj.scatter_(1, idx, vals.clamp_min(0))
    return idx, torch.maximum(adj, adj.T)


def _dense_filter(adj: torch.Tensor, x: torch.Tensor, order: int) -> torch.Tensor:
    a = adj + torch.eye(len(adj), dtype=adj.dtype)
    d = a.sum(1).rsqrt()
    h = 0.5 * (torch.eye(len(a), dtype=a.dtype) + d[:, None] * a * d[None, :])
    return torch.linalg.matrix_power(h, order) @ x.double()


@pytest.fixture
def views() -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return [torch.randn(50, 6, generator=g), torch.randn(50, 4, generator=g) + 1.0]


def test_each_view_graph_equals_dense_reference(views: list[torch.Tensor]) -> None:
    filtered, table = SemanticGraph(k=4, filter_order=2, source="each").build(views)
    assert table.shape == (50, 8) and table.dtype == torch.int64
    for v, x in enumerate(views):
        idx, adj = _dense_knn(x, 4)
        assert torch.equal(table[:, 4 * v:4 * v + 4], idx)
        torch.testing.assert_close(filtered[v].double(), _dense_filter(adj, x, 2), rtol=1e-4, atol=1e-5)


def test_concat_and_single_view_sources(views: list[torch.Tensor]) -> None:
    cat = torch.cat([F.normalize(v, dim=1) for v in views], dim=1)
    idx, adj = _dense_knn(cat, 5)
    filtered, table = SemanticGraph(k=5, filter_order=1, source="concat").build(views)
    assert torch.equal(table, idx)
    for v, x in enumerate(views):
        torch.testing.assert_close(filtered[v].double(), _dense_filter(adj, x, 1), rtol=1e-4, atol=1e-5)
    idx1, adj1 = _dense_knn(views[1], 3)
    filtered, table = SemanticGraph(k=3, filter_order=3, source="view_1").build(views)
    assert torch.equal(table, idx1)
    torch.testing.assert_close(filtered[0].double(), _dense_filter(adj1, views[0], 3), rtol=1e-4, atol=1e-5)


def test_order_zero_keeps_the_views(views: list[torch.Tensor]) -> None:
    filtered, _ = SemanticGraph(k=3, filter_order=0).build(views)
    assert all(torch.equal(a, b) for a, b in zip(filtered, views))


@pytest.mark.parametrize("bad", [{"k": 0}, {"filter_order": -1}, {"source": "views"}, {"source": "view_x"}])
def test_bad_options(bad: dict) -> None:
    with pytest.raises(ValueError, match="semantic_graph"):
        SemanticGraph(**bad)


def test_source_view_out_of_range(views: list[torch.Tensor]) -> None:
    with pytest.raises(ValueError, match="view_0 .. view_1"):
        SemanticGraph(source="view_2").build(views)


def test_datamodule_attaches_neighbours_and_keeps_feature_dims(tmp_path: Path) -> None:
    dm = SyntheticMultiViewDataModule(path=str(tmp_path / "mv.mat"), n=60, dims=(5, 4), clusters=3, batch_size=16,
                                      semantic_graph=SemanticGraph(k=3))
    dm.setup("fit")
    assert dm.feature_dims == {"view_0": 5, "view_1": 4} and dm.num_views == 2 and dm.num_clusters == 3
    batch = next(iter(dm.train_dataloader()))
    assert batch.inputs[NEIGHBOURS_KEY].shape == (16, 3)  # the default source is one graph over the views (concat)
    table = dm.splits["train"].inputs[NEIGHBOURS_KEY]
    assert torch.equal(batch.inputs[NEIGHBOURS_KEY], table[batch.index])
    plain = SyntheticMultiViewDataModule(path=str(tmp_path / "mv.mat"), n=60, dims=(5, 4), clusters=3)
    plain.setup("fit")
    assert NEIGHBOURS_KEY not in plain.splits["train"].inputs
    assert not torch.equal(plain.splits["train"].inputs["view_0"], dm.splits["train"].inputs["view_0"])  # filtered


@pytest.mark.slow
def test_graph_memory_never_grows_as_n_squared() -> None:
    """N = 20k: a dense N x N float32 matrix would be 1.6 GB; the build's peak stays far below it."""
    import resource
    import subprocess
    import sys

    code = (
        "import resource, torch\n"
        "from lightning_kd.data.semantic_graph import SemanticGraph\n"
        "g = torch.Generator().manual_seed(0)\n"
        "views = [torch.randn(20000, 16, generator=g), torch.randn(20000, 8, generator=g)]\n"
        "before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "SemanticGraph(k=10, block_size=512).build(views)\n"
        "print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=True)
    grown_mb = float(out.stdout.strip().splitlines()[-1])
    assert grown_mb < 400, f"semantic graph build grew the peak RSS by {grown_mb:.0f} MB (dense would be 1600 MB)"
    del resource
