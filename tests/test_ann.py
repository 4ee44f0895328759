"""Approximate kNN search (faiss, the `ann` extra) of the semantic graph, recall@k, and VLSG's k-means on a subsample."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from lightning_kd.checkpoint import ConfigError
from lightning_kd.cli import build_cli
from lightning_kd.data.generate.multiview import SyntheticMultiViewDataModule
from lightning_kd.data.semantic_graph import NEIGHBOURS_KEY, SemanticGraph
from lightning_kd.methods.vlsg import VLSG
from lightning_kd.metrics.clustering import EvaluatedSamples, _cat_consuming
from lightning_kd.nn.ann import ANNOptions, knn_recall
from lightning_kd.nn.graph import knn_search

ROOT = Path(__file__).resolve().parents[1]
faiss = pytest.importorskip("faiss", reason="the `ann` extra (faiss-cpu) is part of the dev install")

#: stated bound: recall@10 of the approximate search (at most a quarter of the rows scanned) on the manifold below
RECALL_BOUND = 0.95


def _manifold(n: int = 1200, d: int = 32, seed: int = 0) -> torch.Tensor:
    """Rows on a 6-dimensional linear manifold in ``d`` dimensions plus small noise (low intrinsic dimension, as
    embeddings of real data have; isotropic full-rank noise has no meaningful nearest neighbours)."""
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 6, generator=g) @ torch.randn(6, d, generator=g) + 0.05 * torch.randn(n, d, generator=g)


@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
@pytest.mark.parametrize(("method", "opts"), [("ivf", ANNOptions(nlist=30, nprobe=6)),  # a fifth of the cells
                                              ("hnsw", ANNOptions(m=8, ef_search=16))])
def test_ann_recall_scores_and_determinism(metric: str, method: str, opts: ANNOptions) -> None:
    x = _manifold()
    exact_idx, exact_val = knn_search(x, 10, metric)
    idx, val = knn_search(x, 10, metric, search=method, ann=opts)
    assert idx.shape == val.shape == (1200, 10) and idx.dtype == torch.int64 and val.dtype == torch.float32
    recall = knn_recall(idx, exact_idx)
    assert RECALL_BOUND <= recall < 1.0, recall  # approximate, and close
    assert not (idx == torch.arange(1200).unsqueeze(1)).any() and (idx >= 0).all()
    # scores are the exact scores of the pairs found, sorted nearest first
    xp = torch.nn.functional.normalize(x, dim=1) if metric == "cosine" else x
    ref = (xp[idx] * xp.unsqueeze(1)).sum(2) if metric == "cosine" else (xp[idx] - xp.unsqueeze(1)).square().sum(2)
    torch.testing.assert_close(val, ref, rtol=1e-4, atol=1e-4)
    assert ((val[:, :-1] >= val[:, 1:]) if metric == "cosine" else (val[:, :-1] <= val[:, 1:])).all()
    again = knn_search(x, 10, metric, search=method, ann=opts)
    assert torch.equal(again[0], idx) and torch.equal(again[1], val)  # deterministic given the seed


def test_ivf_probing_every_cell_is_exact_and_include_self() -> None:
    x = torch.randn(300, 16, generator=torch.Generator().manual_seed(1))
    opts = ANNOptions(nlist=7, nprobe=7, encoding="flat")
    for metric in ("cosine", "euclidean"):
        assert torch.equal(knn_search(x, 5, metric, search="ivf", ann=opts)[0], knn_search(x, 5, metric)[0])
        with_self = knn_search(x, 5, metric, include_self=True, search="ivf", ann=opts)[0]
        assert torch.equal(with_self, knn_search(x, 5, metric, include_self=True)[0])
        assert torch.equal(with_self[:, 0], torch.arange(300))


def test_exact_rows_match_the_full_exact_search() -> None:
    x = _manifold(400)
    rows = torch.tensor([0, 7, 399, 123])
    for metric in ("cosine", "euclidean"):
        full_idx, full_val = knn_search(x, 10, metric, block_size=64)
        idx, val = knn_search(x, 10, metric, block_size=3, rows=rows)
        assert torch.equal(idx, full_idx[rows])  # the values: up to the rounding of other matmul shapes
        torch.testing.assert_close(val, full_val[rows], rtol=1e-5, atol=1e-5)
    views = [x[:, :16], x[:, 16:]]
    graph = SemanticGraph(k=10, filter_order=0)
    _, table = graph.build(views)
    quality = graph.recall(views, table, sample=50, labels=torch.zeros(400, dtype=torch.int64))
    assert quality == {"recall": 1.0, "rows": 50.0, "label_agreement": 1.0, "exact_label_agreement": 1.0}


def test_knn_recall() -> None:
    exact = torch.tensor([[1, 2, 3, 4], [0, 2, 3, 4]])
    assert knn_recall(exact, exact) == 1.0
    assert knn_recall(torch.tensor([[4, 3, 9, 8], [9, 8, 7, 6]]), exact) == pytest.approx(0.25)
    with pytest.raises(ValueError, match="same rows"):
        knn_recall(exact[:1], exact)


def test_missing_faiss_is_one_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "faiss", None)  # import faiss -> ImportError; find_spec -> None
    with pytest.raises(ConfigError, match=r"semantic_graph.search='ivf' needs faiss .*pip install 'lightning_kd\[ann\]'"):
        SemanticGraph(search="ivf")
    with pytest.raises(ConfigError, match=r"pip install 'lightning_kd\[ann\]'"):
        knn_search(torch.randn(20, 3), 2, search="hnsw")
    SemanticGraph(search="exact").build([torch.randn(20, 3)])  # the exact search needs no faiss


@pytest.mark.parametrize("bad", [{"search": "annoy"}, {"ann": ANNOptions(nlist=500)}])
def test_bad_search_options(bad: dict) -> None:
    graph = SemanticGraph(**{"search": "ivf", **bad}) if "ann" in bad else None
    if graph is None:
        with pytest.raises(ConfigError, match="semantic_graph.search"):
            SemanticGraph(**bad)
    else:
        with pytest.raises(ConfigError, match="semantic_graph.ann.nlist=500 exceeds the 100 samples"):
            graph.build([torch.randn(100, 4)])
    with pytest.raises(ConfigError, match="semantic_graph.ann.nprobe must be >= 1"):
        ANNOptions(nprobe=0)


def test_datamodule_builds_the_approximate_graph_from_the_config(tmp_path: Path) -> None:
    path = tmp_path / "mv.mat"
    args = ["-c", str(ROOT / "configs/vlsg/mat.yaml"), "--data.init_args.path", str(path),
            "--data.init_args.semantic_graph.search", "ivf", "--data.init_args.semantic_graph.ann.nprobe", "3",
            "--data.init_args.semantic_graph.k", "5", "--trainer.logger", "false", "--trainer.accelerator", "cpu"]
    from lightning_kd.data.generate.multiview import write_multiview_mat

    write_multiview_mat(path, n=400, dims=(8, 6), clusters=3, noise=0.5)
    cli = build_cli(args, run=False)
    dm = cli.datamodule
    assert dm.semantic_graph.search == "ivf" and dm.semantic_graph.ann == ANNOptions(nprobe=3)
    exact = SyntheticMultiViewDataModule(path=str(path), semantic_graph=SemanticGraph(k=5))
    exact.setup("fit")
    table, ref = dm.splits["train"].inputs[NEIGHBOURS_KEY], exact.splits["train"].inputs[NEIGHBOURS_KEY]
    assert table.shape == ref.shape == (400, 5)
    assert 0.6 <= knn_recall(table, ref) < 1.0  # 3 of 10 cells probed on noisy mixture data
    labels = dm.splits["train"].target
    assert (labels[table] == labels.unsqueeze(1)).float().mean() >= 0.95  # the neighbours stay semantic


def test_kmeans_on_a_subsample_assigns_every_sample() -> None:
    g = torch.Generator().manual_seed(0)
    centres = 6.0 * torch.randn(4, 8, generator=g)
    truth = torch.arange(2000) % 4
    emb = centres[truth] + torch.randn(2000, 8, generator=g)
    def vlsg(**kw) -> VLSG:
        return VLSG({"view_0": 8}, num_clusters=4, net={"hidden": [8], "latent": 8, "feature_dim": 8}, kmeans_init=2,
                    kmeans_seed=0, cluster_on="features", **kw)

    full, sub = vlsg(), vlsg(kmeans_fit_size=300)
    a, b = full.fit_clusters(emb), sub.fit_clusters(emb)
    assert b.shape == (2000,) and torch.equal(b, sub.assign(emb))  # every sample: its nearest stored centre
    from sklearn.metrics import adjusted_rand_score

    assert adjusted_rand_score(a.numpy(), b.numpy()) == 1.0 and adjusted_rand_score(truth, b) == 1.0
    assert torch.equal(b, vlsg(kmeans_fit_size=300).fit_clusters(emb))  # seeded subsample
    with pytest.raises(ConfigError, match="kmeans_fit_size=2 is below the 4 clusters"):
        vlsg(kmeans_fit_size=2).fit_clusters(emb)
    with pytest.raises(ConfigError, match="kmeans_fit_size must be >= 1"):
        vlsg(kmeans_fit_size=0)
    with pytest.raises(ConfigError, match="embedding_dtype must be 'float32' or 'float16'"):
        vlsg(embedding_dtype="int8")


def test_half_precision_embeddings_give_the_same_clusters() -> None:
    """``embedding_dtype: float16`` keeps the collected embeddings in half precision; k-means reads them as float32."""
    g = torch.Generator().manual_seed(1)
    emb = torch.nn.functional.normalize(torch.randn(4, 16, generator=g)[torch.arange(600) % 4]
                                        + 0.3 * torch.randn(600, 16, generator=g), dim=1)
    m = EvaluatedSamples(torch.float16)
    m.update(torch.arange(600), emb, torch.arange(600) % 4)
    _, half, _ = m.compute()
    assert half.dtype == torch.float16 and (half.float() - emb).abs().max() < 1e-3
    model = VLSG({"view_0": 16}, num_clusters=4, net={"hidden": [8], "latent": 8, "feature_dim": 16}, kmeans_init=2,
                 kmeans_seed=0, cluster_on="features", kmeans_fit_size=200, embedding_dtype="float16")
    full = VLSG({"view_0": 16}, num_clusters=4, net={"hidden": [8], "latent": 8, "feature_dim": 16}, kmeans_init=2,
                kmeans_seed=0, cluster_on="features")
    from sklearn.metrics import adjusted_rand_score

    assert adjusted_rand_score(model.fit_clusters(half).numpy(), full.fit_clusters(emb).numpy()) == 1.0


def test_cat_consuming_equals_cat_and_frees_the_batches() -> None:
    parts = [torch.randn(3, 2), torch.randn(1, 2), torch.randn(4, 2)]
    ref = torch.cat(parts)
    assert torch.equal(_cat_consuming(parts), ref) and parts == []
    assert _cat_consuming(ref) is ref
    assert np.array_equal(_cat_consuming([torch.tensor([1, 2])]).numpy(), [1, 2])


def test_evaluated_samples_store_blocks_and_samples_equals_compute() -> None:
    m = EvaluatedSamples(torch.float16)
    m.update(torch.tensor([2, 0]), torch.tensor([[2.0], [0.0]]), torch.tensor([12, 10]))
    m.update(torch.tensor([1, 0]), torch.tensor([[1.0], [0.0]]), torch.tensor([11, 10]))
    assert m.embedding[0].untyped_storage().data_ptr() == m.embedding[1].untyped_storage().data_ptr()  # one block
    idx, emb, tgt = m.compute()
    m._computed = None  # noqa: SLF001 - compute consumed the batches; collect them again for samples()
    m.reset()
    m.update(torch.tensor([2, 0]), torch.tensor([[2.0], [0.0]]), torch.tensor([12, 10]))
    m.update(torch.tensor([1, 0]), torch.tensor([[1.0], [0.0]]), torch.tensor([11, 10]))
    s_idx, s_emb, s_tgt = m.samples()
    assert torch.equal(s_idx, idx) and torch.equal(s_emb, emb) and torch.equal(s_tgt, tgt)
    assert emb.dtype == torch.float16 and idx.tolist() == [0, 1, 2] and emb[:, 0].tolist() == [0.0, 1.0, 2.0]
    m.reset()
    assert m._block is None and m.embedding == []  # noqa: SLF001


@pytest.mark.slow
def test_gathering_the_embeddings_does_not_copy_them(tmp_path: Path) -> None:
    """The validation embeddings of all N samples exist once: collecting 400 MB and gathering them for k-means
    raises the peak by far less than another copy (torchmetrics' compute would clone; batch pieces stay in the heap)."""
    import subprocess

    code = (
        "import torch\nfrom pathlib import Path\nfrom lightning_kd.metrics.clustering import EvaluatedSamples\n"
        "def kb(key):\n"
        "    return next(int(l.split()[1]) for l in Path('/proc/self/status').read_text().splitlines() if l.startswith(key))\n"
        "m = EvaluatedSamples()\n"
        "for i in range(0, 100000, 4096):\n"
        "    b = min(4096, 100000 - i)\n"
        "    m.update(torch.arange(i, i + b), torch.randn(b, 1024), torch.zeros(b, dtype=torch.int64))\n"
        "before = kb('VmRSS')\nPath('/proc/self/clear_refs').write_text('5')\n"
        "idx, emb, tgt = m.samples()\nassert emb.shape == (100000, 1024)\n"
        "print((kb('VmHWM') - before) / 1024)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True,
                         cwd=ROOT)
    grown_mb = float(out.stdout.strip().splitlines()[-1])
    assert grown_mb < 150, f"gathering 400 MB of embeddings raised the peak by {grown_mb:.0f} MB"
