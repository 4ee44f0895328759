"""Semantic graphs of a multi-view data set: sparse kNN graphs, low-pass filtered views, neighbour table.

VLSG (Ke et al., IJCAI 2024) builds semantic graphs from (CLIP) embeddings and filters the node features
with graph filters to counter the encoder's noise; its code is not public. This project's interpretation
(see ``lightning_kd/methods/vlsg``):

* one graph shared by all views, built from all views concatenated after L2-normalising each
  (``source="concat"``, the default), or from one view (``source="view_<i>"``, e.g. the CLIP image view), or one
  sparse kNN graph per view (``source="each"``);
* every view is low-pass filtered on its graph, ``X <- (I - L_sym / 2)^order X``
  (:func:`~lightning_kd.nn.graph.normalized_laplacian_filter`);
* the ``k`` nearest neighbours of every sample in every graph form a neighbour table ``(N, G k)``
  (``G`` = number of graphs) that the contrastive loss reads: a sample's semantic neighbours are not
  used as its negatives.

Everything is sparse and built in row blocks: memory grows with ``N k``, never ``N x N``. The exact kNN search
costs ``O(N^2 D)`` time (minutes at N = 100k, hours at 1M on 2 cores, estimated); ``search: ivf`` or ``hnsw`` finds
approximate neighbours with faiss instead (:mod:`lightning_kd.nn.ann`, the ``ann`` extra), and
:meth:`SemanticGraph.recall` measures their recall@k against exact search on a sample of rows.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from lightning_kd.checkpoint import ConfigError
from lightning_kd.nn.ann import ANNOptions, knn_recall, require_faiss
from lightning_kd.nn.graph import knn_graph, knn_search, normalized_laplacian_filter

__all__ = ["NEIGHBOURS_KEY", "SemanticGraph"]

#: the batch input that carries each sample's semantic-graph neighbours, (B, G k) int64 row numbers
NEIGHBOURS_KEY = "semantic_neighbours"


@dataclass
class SemanticGraph:
    """Options of the semantic graphs a multi-view datamodule builds once, over all samples.

    Args:
        k: neighbours per sample in each kNN graph.
        metric: ``"cosine"`` (weights ``max(cos, 0)``) or ``"euclidean"`` (heat kernel).
        filter_order: power of the low-pass filter ``(I - L_sym / 2)``; 0 keeps the features unfiltered.
        source: ``"concat"`` (one graph from all views, each L2-normalised, concatenated; the configs' choice),
            ``"each"`` (one graph per view, from that view) or ``"view_<i>"`` (one graph from view ``i``).
        block_size: rows per block of the exact kNN search (its ``(block_size, N)`` temporary).
        neighbours: attach the neighbour table to every batch (read by the graph-guided contrastive loss).
        search: ``"exact"`` (blockwise exact search, the default), or approximate with faiss: ``"ivf"`` (inverted
            file; the choice for large N) or ``"hnsw"`` (graph index, built on one thread); needs the ``ann`` extra.
        ann: the index parameters of ``ivf`` / ``hnsw`` (:class:`~lightning_kd.nn.ann.ANNOptions`: ``nlist``,
            ``nprobe``, ``m``, ``ef_search``, ``seed``, ...).
    """

    k: int = 10
    metric: Literal["cosine", "euclidean"] = "cosine"
    filter_order: int = 2
    source: str = "concat"
    block_size: int = 1024
    neighbours: bool = True
    search: Literal["exact", "ivf", "hnsw"] = "exact"
    ann: ANNOptions = field(default_factory=ANNOptions)

    def __post_init__(self) -> None:
        if self.k < 1:
            raise ValueError(f"semantic_graph.k must be >= 1, got {self.k}")
        if self.filter_order < 0:
            raise ValueError(f"semantic_graph.filter_order must be >= 0, got {self.filter_order}")
        src = self.source
        if src not in ("each", "concat") and not (src.startswith("view_") and src[5:].isdigit()):
            raise ValueError(f"semantic_graph.source must be 'each', 'concat' or 'view_<i>', got {src!r}")
        if self.search not in ("exact", "ivf", "hnsw"):
            raise ConfigError(f"semantic_graph.search must be 'exact', 'ivf' or 'hnsw', got {self.search!r}")
        if self.search != "exact":
            require_faiss(f"semantic_graph.search={self.search!r}")  # fail at configuration, before reading data

    def sources(self, views: list[Tensor]) -> list[Tensor]:
        """The matrices the graphs are built from: one per graph (``source``)."""
        if self.source == "each":
            return list(views)
        if self.source == "concat":
            return [torch.cat([F.normalize(v.float(), dim=1) for v in views], dim=1)]
        i = int(self.source[5:])
        if i >= len(views):
            raise ValueError(f"semantic_graph.source={self.source!r}, but the data has {len(views)} views "
                             f"(view_0 .. view_{len(views) - 1})")
        return [views[i]]

    def _k(self, n: int) -> int:
        k = min(self.k, n - 1)
        if k < 1:
            raise ValueError(f"a semantic graph needs at least 2 samples, got {n}")
        return k

    def build(self, views: list[Tensor]) -> tuple[list[Tensor], Tensor]:
        """Filtered views (same shapes) and the neighbour table ``(N, G k)`` int64 of ``views`` ``[(N, D_v)]``."""
        k = self._k(views[0].shape[0])
        graphs, tables = [], []
        for x in self.sources(views):
            found = knn_search(x, k, self.metric, self.block_size, search=self.search, ann=self.ann)
            tables.append(found[0])
            if self.filter_order > 0:
                graphs.append(knn_graph(x, k, self.metric, self.block_size, neighbours=found))
        if self.filter_order > 0:
            views = [normalized_laplacian_filter(graphs[v if len(graphs) > 1 else 0], x, self.filter_order)
                     for v, x in enumerate(views)]
        return views, torch.cat(tables, dim=1)

    def recall(self, views: list[Tensor], table: Tensor, sample: int = 1000, seed: int = 0,
               labels: Tensor | None = None) -> dict[str, float]:
        """recall@k of the neighbour ``table`` that :meth:`build` returned for ``views`` (the views it was given,
        unfiltered) against exact search, on ``sample`` seeded random rows (all rows if fewer), averaged over the
        graphs; 1.0 for ``search: exact``. With ``labels`` (N,) also the fraction of neighbours that share the
        row's label, of the table and of the exact neighbours (how semantic the neighbours are).

        Returns ``{"recall", "rows"}`` (+ ``"label_agreement"``, ``"exact_label_agreement"``).
        """
        n = views[0].shape[0]
        k = self._k(n)
        rows = torch.randperm(n, generator=torch.Generator().manual_seed(seed))[:sample].sort().values
        block = max(1, min(self.block_size, 2**27 // n))  # (block, N) float32 temporaries of <= 0.5 GB
        out = {"recall": 0.0, "rows": float(len(rows))}
        if labels is not None:
            out["label_agreement"] = out["exact_label_agreement"] = 0.0
        sources = self.sources(views)
        for i, x in enumerate(sources):
            found = table[rows, i * k:(i + 1) * k]
            exact, _ = knn_search(x, k, self.metric, block, rows=rows)
            out["recall"] += knn_recall(found, exact) / len(sources)
            if labels is not None:
                same = labels[rows].unsqueeze(1)
                out["label_agreement"] += float((labels[found] == same).float().mean()) / len(sources)
                out["exact_label_agreement"] += float((labels[exact] == same).float().mean()) / len(sources)
        return out
