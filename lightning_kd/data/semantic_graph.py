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

Everything is sparse and built in row blocks: memory grows with ``N k``, never ``N x N``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

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
        block_size: rows per block of the kNN search (its ``(block_size, N)`` temporary).
        neighbours: attach the neighbour table to every batch (read by the graph-guided contrastive loss).
    """

    k: int = 10
    metric: Literal["cosine", "euclidean"] = "cosine"
    filter_order: int = 2
    source: str = "concat"
    block_size: int = 1024
    neighbours: bool = True

    def __post_init__(self) -> None:
        if self.k < 1:
            raise ValueError(f"semantic_graph.k must be >= 1, got {self.k}")
        if self.filter_order < 0:
            raise ValueError(f"semantic_graph.filter_order must be >= 0, got {self.filter_order}")
        src = self.source
        if src not in ("each", "concat") and not (src.startswith("view_") and src[5:].isdigit()):
            raise ValueError(f"semantic_graph.source must be 'each', 'concat' or 'view_<i>', got {src!r}")

    def build(self, views: list[Tensor]) -> tuple[list[Tensor], Tensor]:
        """Filtered views (same shapes) and the neighbour table ``(N, G k)`` int64 of ``views`` ``[(N, D_v)]``."""
        n = views[0].shape[0]
        k = min(self.k, n - 1)
        if k < 1:
            raise ValueError(f"a semantic graph needs at least 2 samples, got {n}")
        if self.source == "each":
            sources = views
        elif self.source == "concat":
            sources = [torch.cat([F.normalize(v.float(), dim=1) for v in views], dim=1)]
        else:
            i = int(self.source[5:])
            if i >= len(views):
                raise ValueError(f"semantic_graph.source={self.source!r}, but the data has {len(views)} views "
                                 f"(view_0 .. view_{len(views) - 1})")
            sources = [views[i]]
        graphs, tables = [], []
        for x in sources:
            found = knn_search(x, k, self.metric, self.block_size)
            tables.append(found[0])
            if self.filter_order > 0:
                graphs.append(knn_graph(x, k, self.metric, self.block_size, neighbours=found))
        if self.filter_order > 0:
            views = [normalized_laplacian_filter(graphs[v if len(graphs) > 1 else 0], x, self.filter_order)
                     for v, x in enumerate(views)]
        return views, torch.cat(tables, dim=1)
