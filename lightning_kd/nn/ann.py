"""Approximate k-nearest-neighbour search with faiss (the ``ann`` extra), and recall against exact search.

Exact kNN (:func:`lightning_kd.nn.graph.knn_search`) costs ``O(N^2 D)``: hours (estimated) for N = 1M rows of 256
features on 2 cores. faiss (Douze et al., "The Faiss library", 2024) indexes the rows once and scans a small part
of them per query:

* ``"ivf"``: inverted file (Jegou et al., TPAMI 2011, Sec. IV-A): a k-means coarse quantiser of ``nlist`` cells,
  trained on a seeded random subsample; every query scans the rows of its ``nprobe`` nearest cells. Queries run in
  the order of their cells (the rows of one inverted list after another), so consecutive queries scan the same
  cells while they are in cache. Deterministic given ``seed``.
* ``"hnsw"``: hierarchical navigable small-world graph (Malkov & Yashunin, TPAMI 2020): greedy search on a layered
  proximity graph of ``m`` links per node. Parallel insertion makes the graph depend on the thread schedule, so
  the index is built on one thread (deterministic, slower); the search uses all threads.

Rows are stored as ``encoding`` (``"fp16"`` by default: half the memory traffic of ``"flat"`` float32 and the same
neighbours up to ties within fp16 rounding); the scores of the neighbours found are then recomputed exactly in
float32 and every row is sorted by them, so only the choice of neighbours is approximate. Cosine search
L2-normalises the rows and uses inner products (scores are cosine similarities); Euclidean search returns squared
distances, as the exact search does. faiss runs ``torch.get_num_threads()`` OpenMP threads.
"""

from __future__ import annotations

import importlib.util
import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from lightning_kd.checkpoint import ConfigError

__all__ = ["ANN_METHODS", "ANNOptions", "ann_search", "knn_recall", "require_faiss"]

#: the approximate search methods (``"exact"`` is the blockwise exact search of :mod:`lightning_kd.nn.graph`)
ANN_METHODS = ("ivf", "hnsw")
_FIX = "Fix: pip install 'lightning_kd[ann]' (or `pip install faiss-cpu`), or use search: exact."
_QUERY_BLOCK = 16384  # queries per faiss call: bounds the (queries, nprobe) coarse-search temporaries


@dataclass(frozen=True)
class ANNOptions:
    """Index parameters of the approximate kNN search (faiss).

    Args:
        nlist: IVF cells; ``None`` = ``round(4 sqrt(N))`` (faiss' guideline), at most ``N / 39`` (faiss wants >= 39
            training rows per cell).
        nprobe: IVF cells scanned per query (recall grows, speed falls with it).
        train_points: IVF training rows per cell; the quantiser trains on a seeded random subsample of
            ``min(N, nlist * train_points)`` rows (faiss' own cap is 256 per cell).
        niter: k-means iterations of the IVF quantiser.
        m: HNSW links per node.
        ef_construction: HNSW candidate list size while building.
        ef_search: HNSW candidate list size while searching (at least ``k + 1`` is used).
        encoding: how the index stores the rows: ``"fp16"`` (half precision), ``"flat"`` (float32) or ``"sq8"``
            (8-bit scalar quantiser, trained on the same subsample); only the search reads them.
        seed: seed of the IVF training subsample and k-means initialisation.
    """

    nlist: int | None = None
    nprobe: int = 32
    train_points: int = 64
    niter: int = 10
    m: int = 32
    ef_construction: int = 64
    ef_search: int = 128
    encoding: Literal["fp16", "flat", "sq8"] = "fp16"
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("nprobe", "train_points", "niter", "m", "ef_construction", "ef_search"):
            if getattr(self, name) < 1:
                raise ConfigError(f"semantic_graph.ann.{name} must be >= 1, got {getattr(self, name)}")
        if self.encoding not in ("fp16", "flat", "sq8"):
            raise ConfigError(f"semantic_graph.ann.encoding must be 'fp16', 'flat' or 'sq8', got {self.encoding!r}")
        if self.nlist is not None and self.nlist < 1:
            raise ConfigError(f"semantic_graph.ann.nlist must be >= 1 or null (4 sqrt(N)), got {self.nlist}")

    def cells(self, n: int) -> int:
        """The number of IVF cells for ``n`` rows."""
        if self.nlist is None:
            return max(1, min(round(4 * math.sqrt(n)), n // 39))
        if self.nlist > n:
            raise ConfigError(f"semantic_graph.ann.nlist={self.nlist} exceeds the {n} samples; lower it, or set "
                              "null (4 sqrt(N))")
        return self.nlist


def require_faiss(what: str = "an approximate kNN search") -> None:
    """:class:`ConfigError` (one line with the fix) unless ``faiss`` can be imported."""
    if importlib.util.find_spec("faiss") is None:
        raise ConfigError(f"{what} needs faiss (the `ann` extra), which is not installed. {_FIX}")


def _faiss(what: str) -> Any:
    require_faiss(what)
    import faiss

    return faiss


@contextmanager
def _threads(faiss: Any) -> Iterator[None]:
    """faiss' OpenMP threads = torch's intra-op threads for the duration."""
    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(torch.get_num_threads())
    try:
        yield
    finally:
        faiss.omp_set_num_threads(before)


def _index(faiss: Any, method: str, metric: str, d: int, nlist: int, opts: ANNOptions) -> Any:
    """An empty faiss index (untrained)."""
    fmetric = faiss.METRIC_INNER_PRODUCT if metric == "cosine" else faiss.METRIC_L2
    qtype = {"fp16": faiss.ScalarQuantizer.QT_fp16, "sq8": faiss.ScalarQuantizer.QT_8bit}.get(opts.encoding)
    if method == "hnsw":
        index = faiss.IndexHNSWFlat(d, opts.m, fmetric) if qtype is None else faiss.IndexHNSWSQ(d, qtype, opts.m, fmetric)
        index.hnsw.efConstruction = opts.ef_construction
        return index
    quantizer = faiss.IndexFlatIP(d) if metric == "cosine" else faiss.IndexFlatL2(d)
    if qtype is None:
        index = faiss.IndexIVFFlat(quantizer, d, nlist, fmetric)
    else:
        index = faiss.IndexIVFScalarQuantizer(quantizer, d, nlist, qtype, fmetric)
    index.cp.seed, index.cp.niter = opts.seed, opts.niter
    index.cp.max_points_per_centroid = max(opts.train_points, 39)  # the subsample below is all faiss sees
    index.cp.min_points_per_centroid = 1  # small N: no warning about few training rows per cell
    return index


def _cell_order(faiss: Any, index: Any) -> np.ndarray:
    """Row numbers in the order of the IVF cells they were added to (the inverted lists one after another)."""
    inv = index.invlists
    sizes = [inv.list_size(c) for c in range(index.nlist)]
    return np.concatenate([faiss.rev_swig_ptr(inv.get_ids(c), size).copy()
                           for c, size in enumerate(sizes) if size] or [np.zeros(0, dtype=np.int64)])


def _rescore(data: Tensor, idx: Tensor, metric: str, block: int = 8192) -> tuple[Tensor, Tensor]:
    """Exact float32 scores of the pairs ``(i, idx[i, j])`` of ``data`` (prepared rows); rows sorted nearest first."""
    val = torch.empty(idx.shape, dtype=torch.float32)
    for start in range(0, idx.shape[0], block):
        q, nb = data[start:start + block], data[idx[start:start + block]]  # (b, D), (b, k, D)
        if metric == "cosine":
            val[start:start + block] = torch.bmm(nb, q.unsqueeze(2)).squeeze(2)
        else:
            val[start:start + block] = (nb - q.unsqueeze(1)).square().sum(2)
    val, perm = val.sort(dim=1, descending=metric == "cosine", stable=True)
    return idx.gather(1, perm), val


def ann_search(
    x: Tensor,
    k: int,
    metric: Literal["cosine", "euclidean"] = "cosine",
    method: Literal["ivf", "hnsw"] = "ivf",
    options: ANNOptions | None = None,
    include_self: bool = False,
    exact_search: Callable[..., tuple[Tensor, Tensor]] | None = None,
) -> tuple[Tensor, Tensor]:
    """Approximate ``k`` nearest rows of every row of ``x`` ``(N, D)``, as :func:`~lightning_kd.nn.graph.knn_search`.

    Returns ``(indices (N, k) int64, scores (N, k) float32)`` sorted nearest first (exact cosine similarities or
    squared Euclidean distances of the neighbours found). Without ``include_self`` every row searches ``k + 1`` and
    drops itself (or, where the index did not return it, its last result). Rows for which the index returned fewer
    than ``k`` neighbours (tiny IVF cells, rare with HNSW) are searched exactly by ``exact_search`` (the caller's
:func:`~lightning_kd.nn.graph.knn_search`, passed in so this module does not import the graph module). Memory: a float32 copy of ``x``,
    the index (``encoding``) and ``O(N k)``.
    """
    if method not in ANN_METHODS:
        raise ConfigError(f"unknown approximate search {method!r}; choose one of {ANN_METHODS}")
    if metric not in ("cosine", "euclidean"):
        raise ValueError(f"unknown metric {metric!r}")
    opts = options or ANNOptions()
    faiss = _faiss(f"semantic_graph.search={method!r}")
    n, d = x.shape
    data = x.detach().to("cpu", torch.float32)
    data = F.normalize(data, dim=1) if metric == "cosine" else data.contiguous()
    xs = data.numpy()
    q = k if include_self else k + 1
    nlist = opts.cells(n) if method == "ivf" else 0
    index = _index(faiss, method, metric, d, nlist, opts)
    with _threads(faiss):
        if not index.is_trained:  # IVF cells, sq8 ranges: on a seeded subsample
            m = min(n, nlist * opts.train_points) if method == "ivf" else min(n, 65536)
            sub = np.sort(np.random.default_rng(opts.seed).choice(n, m, replace=False))
            index.train(np.ascontiguousarray(xs[sub]))
        if method == "hnsw":
            faiss.omp_set_num_threads(1)  # parallel insertion depends on the thread schedule
            index.add(xs)
            faiss.omp_set_num_threads(torch.get_num_threads())
            index.hnsw.efSearch = max(opts.ef_search, q)
            order = np.arange(n)
        else:
            index.add(xs)
            index.nprobe = min(opts.nprobe, nlist)
            order = _cell_order(faiss, index)
        nbr_idx = torch.empty(n, q, dtype=torch.int64)
        for start in range(0, n, _QUERY_BLOCK):
            rows = order[start:start + _QUERY_BLOCK]
            nbr_idx[torch.from_numpy(rows)] = torch.from_numpy(index.search(xs[rows], q)[1])
        del index
    idx = nbr_idx
    if not include_self:
        drop = idx == torch.arange(n).unsqueeze(1)
        drop[:, -1] |= ~drop.any(1)  # self not returned: drop the farthest instead
        keep = torch.argsort(drop.to(torch.uint8), dim=1, stable=True)[:, :k]  # the k kept columns, in order
        idx = idx.gather(1, keep)
    missing = (idx < 0).any(1).nonzero().squeeze(1)
    if missing.numel():
        if exact_search is None:
            raise ValueError(f"{missing.numel()} rows got fewer than {k} neighbours from the index; pass exact_search "
                             "(lightning_kd.nn.graph.knn_search) or call knn_search(..., search=...)")
        block = max(1, min(1024, 2**27 // n))  # (block, N) float32 temporaries of <= 0.5 GB
        idx[missing] = exact_search(x, k, metric, block, include_self, rows=missing)[0]
    return _rescore(data, idx, metric)


def knn_recall(found: Tensor, exact: Tensor) -> float:
    """recall@k: the mean fraction of every row's exact ``k`` nearest neighbours (``exact`` (B, k)) that ``found``
    (B, k') holds (k' >= k allowed: recall@k of a larger result list)."""
    if found.shape[0] != exact.shape[0]:
        raise ValueError(f"found and exact need the same rows, got {tuple(found.shape)} and {tuple(exact.shape)}")
    hits = (found.unsqueeze(2) == exact.unsqueeze(1)).any(1)  # (B, k): exact neighbour j found
    return float(hits.float().mean()) if hits.numel() else 1.0
