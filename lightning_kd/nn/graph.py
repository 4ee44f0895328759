"""Sparse k-nearest-neighbour graphs and low-pass graph filtering (the semantic graphs of VLSG).

Everything here is memory-bounded: :func:`knn_graph` only ever holds a ``(block_size, N)`` dense
block plus ``O(N k)`` sparse entries, and :func:`normalized_laplacian_filter` applies the filter as
sparse-dense matmuls. Nothing is ever materialised as an ``N x N`` dense matrix.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

import torch
import torch.nn.functional as F
from torch import Tensor

if TYPE_CHECKING:
    from lightning_kd.nn.ann import ANNOptions

__all__ = ["knn_graph", "knn_search", "normalized_laplacian_filter", "sparse_max_symmetrize"]


def _coalesce_amax(rows: Tensor, cols: Tensor, vals: Tensor, n: int) -> Tensor:
    """COO ``(n, n)`` tensor from (possibly duplicated) entries, merging duplicates with ``max``.

    ``Tensor.coalesce`` sums duplicates, so entries are linearised as ``row * n + col``, made unique
    (sorted, hence row-major coalesced order) and reduced with ``scatter_reduce(reduce="amax")``.
    """
    lin = rows.to(torch.int64) * n + cols.to(torch.int64)
    uniq, inverse = torch.unique(lin, sorted=True, return_inverse=True)
    out = torch.zeros(uniq.numel(), dtype=vals.dtype, device=vals.device)
    out = out.scatter_reduce(0, inverse, vals, reduce="amax", include_self=False)
    indices = torch.stack([torch.div(uniq, n, rounding_mode="floor"), uniq % n])
    return torch.sparse_coo_tensor(indices, out, (n, n), is_coalesced=True, check_invariants=False)


def sparse_max_symmetrize(adj: Tensor) -> Tensor:
    """``max(A, A^T)`` of a sparse COO ``(N, N)`` tensor, computed sparsely; returns a coalesced COO."""
    adj = adj.coalesce()
    n = adj.shape[0]
    r, c = adj.indices()
    v = adj.values()
    return _coalesce_amax(torch.cat([r, c]), torch.cat([c, r]), torch.cat([v, v]), n)


def knn_search(
    x: Tensor,
    k: int,
    metric: Literal["cosine", "euclidean"] = "cosine",
    block_size: int = 1024,
    include_self: bool = False,
    rows: Tensor | None = None,
    search: Literal["exact", "ivf", "hnsw"] = "exact",
    ann: ANNOptions | None = None,
) -> tuple[Tensor, Tensor]:
    """The ``k`` nearest rows of every row of ``x`` ``(N, D)`` (or of the rows ``rows``), searched in row blocks.

    Returns ``(indices (N, k) int64, scores (N, k))`` sorted nearest first; scores are cosine
    similarities (``"cosine"``) or squared Euclidean distances (``"euclidean"``). Each block of
    ``block_size`` rows forms one ``(block_size, N)`` temporary from which :func:`torch.topk` keeps the
    ``k`` best, so memory is ``O(N k + block_size N)``, never ``O(N^2)``. The point itself is masked
    out unless ``include_self``. Ties are resolved by :func:`torch.topk` (deterministic on CPU).

    ``rows`` (int64 row numbers) searches the neighbours of those rows only, among all ``N`` rows (``(len(rows), k)``
    results; e.g. an exact reference for a sample of queries). ``search="ivf"`` or ``"hnsw"`` is the approximate
    search of :func:`lightning_kd.nn.ann.ann_search` (faiss, options ``ann``) over all rows instead.
    """
    if x.dim() != 2:
        raise ValueError(f"x must be (N, D), got shape {tuple(x.shape)}")
    if metric not in ("cosine", "euclidean"):
        raise ValueError(f"unknown metric {metric!r}")
    n = x.shape[0]
    max_k = n if include_self else n - 1
    if not 1 <= k <= max_k:
        raise ValueError(f"k must be in [1, {max_k}] for N={n}, include_self={include_self}; got {k}")
    if block_size < 1:
        raise ValueError(f"block_size must be >= 1, got {block_size}")
    if search != "exact":
        if rows is not None:
            raise ValueError("rows is only supported by the exact search")
        from lightning_kd.nn.ann import ann_search

        return ann_search(x, k, metric, search, ann, include_self, exact_search=knn_search)
    if not x.is_floating_point():
        x = x.float()
    x = x.detach()

    if metric == "cosine":
        x = F.normalize(x, dim=1)
    else:
        sq = (x * x).sum(dim=1)

    m = n if rows is None else rows.numel()
    nbr_idx = torch.empty(m, k, dtype=torch.int64, device=x.device)
    nbr_val = torch.empty(m, k, dtype=x.dtype, device=x.device)
    for start in range(0, m, block_size):
        stop = min(start + block_size, m)
        b = stop - start
        ids = torch.arange(start, stop, device=x.device) if rows is None else rows[start:stop].to(x.device)
        block = (x[start:stop] if rows is None else x[ids]) @ x.T  # (b, N), the only dense temporary
        if metric == "euclidean":
            block.mul_(-2.0).add_(sq.unsqueeze(0)).add_(sq[ids].unsqueeze(1)).clamp_(min=0.0)
        local = torch.arange(b, device=x.device)
        if include_self:
            if metric == "euclidean":
                block[local, ids] = 0.0  # exact zero self-distance despite rounding
        else:
            block[local, ids] = float("inf") if metric == "euclidean" else float("-inf")
        vals, idx = torch.topk(block, k, dim=1, largest=(metric == "cosine"), sorted=True)
        nbr_idx[start:stop] = idx
        nbr_val[start:stop] = vals
        del block
    return nbr_idx, nbr_val


def knn_graph(
    x: Tensor,
    k: int,
    metric: Literal["cosine", "euclidean"] = "cosine",
    block_size: int = 1024,  # the (block_size, N) float32 temporary: 0.4 GB at N = 100k
    include_self: bool = False,
    symmetric: bool = True,
    neighbours: tuple[Tensor, Tensor] | None = None,
) -> Tensor:
    """Weighted kNN graph of the rows of ``x`` ``(N, D)`` as a coalesced float32 sparse COO ``(N, N)``.

    Neighbours come from :func:`knn_search` (or are passed as its output in ``neighbours``, to reuse one
    search). Memory is ``O(N k + block_size N)``, never ``O(N^2)``. Every row stores exactly ``k``
    entries before symmetrisation (explicit zero weights are kept as structure).

    Weights:

    - ``"cosine"``: ``max(cos_sim, 0)``;
    - ``"euclidean"``: ``exp(-d^2 / (2 sigma^2))`` with one global ``sigma`` = mean kNN distance over
      all ``N k`` selected pairs of the same pass (``sigma = 1`` if that mean is 0).

    ``symmetric`` returns ``max(A, A^T)`` (so every row then has ``>= k`` neighbours). Results do not
    depend on ``block_size`` up to floating-point rounding of the block matmul.
    """
    nbr_idx, nbr_val = neighbours if neighbours is not None else knn_search(x, k, metric, block_size, include_self)
    n = x.shape[0]
    if metric == "cosine":
        weights = nbr_val.clamp(min=0.0)
    else:
        sigma = nbr_val.sqrt().mean().item()
        if sigma <= 0.0:
            sigma = 1.0
        weights = torch.exp(-nbr_val / (2.0 * sigma * sigma))

    rows = torch.arange(n, device=nbr_idx.device).repeat_interleave(nbr_idx.shape[1])
    cols = nbr_idx.reshape(-1)
    vals = weights.reshape(-1).to(torch.float32)
    if symmetric:
        rows, cols, vals = torch.cat([rows, cols]), torch.cat([cols, rows]), torch.cat([vals, vals])
    return _coalesce_amax(rows, cols, vals, n)


def normalized_laplacian_filter(adj: Tensor, x: Tensor, order: int = 2, self_loops: bool = True) -> Tensor:
    """Low-pass filter ``X <- (I - L_sym / 2)^order X`` with sparse matmuls only.

    ``L_sym = I - D^-1/2 A' D^-1/2`` with ``A' = A + I`` if ``self_loops`` else ``A`` and ``D`` the row
    sums of ``A'``; equivalently ``H = (I + D^-1/2 A' D^-1/2) / 2`` is applied ``order`` times.
    Isolated nodes (degree 0, only possible without self loops) keep their features (``L_sym`` row 0).
    ``adj`` is a sparse COO or CSR ``(N, N)`` tensor; the result has ``x``'s shape and dtype.
    """
    if not (adj.is_sparse or adj.layout == torch.sparse_csr):
        raise TypeError("adj must be a sparse (COO or CSR) tensor")
    if adj.layout == torch.sparse_csr:
        adj = adj.to_sparse_coo()
    n = adj.shape[0]
    if adj.dim() != 2 or adj.shape[1] != n or x.shape[0] != n:
        raise ValueError(f"adj must be (N, N) and x (N, ...); got {tuple(adj.shape)} and {tuple(x.shape)}")
    if order < 0:
        raise ValueError(f"order must be >= 0, got {order}")
    if not x.is_floating_point():
        x = x.float()
    adj = adj.coalesce()
    r, c = adj.indices()
    v = adj.values().to(x.dtype)
    if self_loops:
        diag = torch.arange(n, device=r.device)
        r, c = torch.cat([r, diag]), torch.cat([c, diag])
        v = torch.cat([v, torch.ones(n, dtype=v.dtype, device=v.device)])
    deg = torch.zeros(n, dtype=v.dtype, device=v.device).index_add_(0, r, v)
    isolated = deg == 0
    dinv = torch.where(isolated, torch.zeros_like(deg), deg.clamp(min=torch.finfo(deg.dtype).tiny).rsqrt())
    s = torch.sparse_coo_tensor(torch.stack([r, c]), v * dinv[r] * dinv[c], (n, n), check_invariants=False).coalesce()
    out = x.reshape(n, -1)
    has_isolated = bool(isolated.any())
    for _ in range(order):
        new = 0.5 * (out + torch.sparse.mm(s, out))
        if has_isolated:
            new[isolated] = out[isolated]
        out = new
    return out.reshape(x.shape)
