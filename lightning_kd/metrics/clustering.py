"""Clustering metrics for multi-view clustering (VLSG): Hungarian accuracy, NMI, ARI and purity.

All four are computed in float64 from the contingency matrix of (true class, predicted cluster), so they agree
with scikit-learn to rounding (torchmetrics' ``normalized_mutual_info_score`` / ``adjusted_rand_score`` work in
float32 and differ by ~1e-7, and its NMI of two single-cluster labellings is 0 where scikit-learn says 1).

* ``ACC``: best one-to-one mapping of clusters to classes (``scipy.optimize.linear_sum_assignment`` on the
  contingency matrix); with more clusters than classes (or the reverse) the unmatched ones count as wrong.
* ``NMI``: ``sklearn.metrics.normalized_mutual_info_score`` (arithmetic normalisation, its default).
* ``ARI``: ``sklearn.metrics.adjusted_rand_score``.
* ``purity``: sum over clusters of the largest class count in the cluster, divided by N.

Cluster ids and labels may be any integers (remapped with ``torch.unique``); empty input gives NaN everywhere.
:class:`EvaluatedSamples` collects the samples a clustering method clusters at an epoch end (VLSG, k-means).
"""

from __future__ import annotations

import math

import torch
from scipy.optimize import linear_sum_assignment
from torch import Tensor
from torchmetrics import Metric
from torchmetrics.utilities import dim_zero_cat

__all__ = ["CLUSTERING_KEYS", "ClusteringMetrics", "EvaluatedSamples", "clustering_metrics", "contingency_matrix"]

CLUSTERING_KEYS: tuple[str, ...] = ("ACC", "NMI", "ARI", "purity")
_NAN = float("nan")


def _ids(x: Tensor, name: str) -> Tensor:
    """Detached, flattened int64 tensor; floats must hold whole numbers."""
    x = torch.as_tensor(x).detach()
    if x.is_floating_point() and not torch.equal(x, x.round()):
        raise ValueError(f"{name} must hold integer ids, got non-integer values")
    return x.reshape(-1).long()


def contingency_matrix(pred: Tensor, truth: Tensor) -> Tensor:
    """(n_classes, n_clusters) int64 counts: entry [i, j] = samples of the i-th true class in the j-th cluster."""
    pred, truth = _ids(pred, "pred"), _ids(truth, "truth").to(torch.as_tensor(pred).device)
    if pred.numel() != truth.numel():
        raise ValueError(f"pred has {pred.numel()} values but truth has {truth.numel()}")
    _, p = torch.unique(pred, return_inverse=True)
    _, t = torch.unique(truth, return_inverse=True)
    n_t = int(t.max()) + 1 if t.numel() else 0
    n_p = int(p.max()) + 1 if p.numel() else 0
    return torch.bincount(t * n_p + p, minlength=n_t * n_p).reshape(n_t, n_p)


def _entropy(counts: Tensor) -> float:
    """Natural-log entropy of a count vector (float64)."""
    c = counts[counts > 0].double()
    n = c.sum()
    return float(-((c / n) * (c.log() - n.log())).sum())


def clustering_metrics(pred: Tensor, truth: Tensor) -> dict[str, float]:
    """``ACC``, ``NMI``, ``ARI`` and ``purity`` of a clustering against true labels.

    Args:
        pred: (N,) predicted cluster ids (any integers).
        truth: (N,) true class labels (any integers).

    Returns:
        :data:`CLUSTERING_KEYS` -> float; NaN for everything on empty input.
    """
    cont = contingency_matrix(pred, truth).cpu()
    n = int(cont.sum())
    if n == 0:
        return dict.fromkeys(CLUSTERING_KEYS, _NAN)
    c = cont.double()

    rows, cols = linear_sum_assignment(cont.numpy(), maximize=True)
    acc = float(cont.numpy()[rows, cols].sum()) / n
    purity = float(cont.max(dim=0).values.sum()) / n

    n_t, n_p = cont.shape  # classes, clusters
    a, b = c.sum(dim=1), c.sum(dim=0)
    if n_t == n_p == 1:
        nmi = 1.0
    elif n_t == 1 or n_p == 1:
        nmi = 0.0
    else:
        nz = c[c > 0]
        outer = (a[:, None] * b[None, :])[c > 0]
        mi = float((nz / n * (nz.log() + math.log(n) - outer.log())).sum())
        mi = max(mi, 0.0)
        nmi = 0.0 if mi == 0.0 else mi / ((_entropy(a) + _entropy(b)) / 2)

    # pair-confusion counts (scikit-learn's pair_confusion_matrix), exact in Python ints
    ss = int((cont * cont).sum())
    tp = ss - n
    fp = int((cont.sum(dim=0) ** 2).sum()) - ss
    fn = int((cont.sum(dim=1) ** 2).sum()) - ss
    tn = n * n - fp - fn - ss
    if fn == 0 and fp == 0:
        ari = 1.0
    else:
        ari = 2.0 * (tp * tn - fn * fp) / ((tp + fn) * (fn + tn) + (tp + fp) * (fp + tn))
    return {"ACC": acc, "NMI": nmi, "ARI": ari, "purity": purity}


class ClusteringMetrics(Metric):
    """Epoch-level clustering metrics: ``update(pred (B,), truth (B,))`` -> :data:`CLUSTERING_KEYS`.

    States are lists reduced with ``"cat"`` (DDP gathers all samples before :meth:`compute`) and are
    non-persistent. :meth:`compute` evaluates on CPU and returns float64 scalar tensors (float32 on MPS) on the
    metric's device; before any :meth:`update` every value is NaN.
    """

    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    preds: list[Tensor]
    targets: list[Tensor]

    def __init__(self) -> None:
        super().__init__()
        self.add_state("preds", default=[], dist_reduce_fx="cat", persistent=False)
        self.add_state("targets", default=[], dist_reduce_fx="cat", persistent=False)

    @property
    def keys(self) -> tuple[str, ...]:
        """The keys :meth:`compute` returns, in order."""
        return CLUSTERING_KEYS

    def update(self, pred: Tensor, truth: Tensor) -> None:
        """Store a batch of (B,) cluster ids and (B,) true labels."""
        p = _ids(pred, "pred")
        t = _ids(truth, "truth").to(p.device)
        if p.numel() != t.numel():
            raise ValueError(f"pred has {p.numel()} values but truth has {t.numel()}")
        self.preds.append(p)
        self.targets.append(t)

    def compute(self) -> dict[str, Tensor]:
        if isinstance(self.preds, list) and len(self.preds) == 0:
            values = dict.fromkeys(CLUSTERING_KEYS, _NAN)
        else:
            values = clustering_metrics(dim_zero_cat(self.preds).cpu(), dim_zero_cat(self.targets).cpu())
        dtype = torch.float32 if self.device.type == "mps" else torch.float64  # MPS has no float64
        return {k: torch.tensor(values[k], dtype=dtype, device=self.device) for k in CLUSTERING_KEYS}


#: bytes of one storage block of collected embeddings: above glibc's largest mmap threshold (32 MiB), so a block is
#: its own mapping, returned to the system as soon as it is freed (batch-sized pieces stay in the heap once freed)
_BLOCK_BYTES = 64 << 20


def _cat_consuming(parts: list[Tensor] | Tensor) -> Tensor:
    """``torch.cat`` of a list of batches that drops every batch once copied (with :class:`EvaluatedSamples`'
    blocks the peak is the result plus one block, not twice the data). A tensor (the state after a DDP gather) is
    returned as is."""
    if isinstance(parts, Tensor) or not parts:
        return dim_zero_cat(parts)
    out = torch.empty((sum(p.shape[0] for p in parts), *parts[0].shape[1:]), dtype=parts[0].dtype,
                      device=parts[0].device)
    pos = 0
    parts.reverse()
    while parts:
        p = parts.pop()
        out[pos:pos + p.shape[0]] = p
        pos += p.shape[0]
    return out


class EvaluatedSamples(Metric):
    """Row index, embedding and target of every evaluated sample; :meth:`compute` gathers them over all ranks
    (torchmetrics' ``cat`` reduction) and returns them once each, in row order (``DistributedSampler`` pads with
    repeats). Clustering needs all samples, so the epoch end clusters what this collected.

    Embeddings are kept in ``dtype``, each batch as a view into storage blocks of 64 MiB. In one process the
    gathering consumes them (the caller resets the metric next), so a block's memory goes back to the system once
    copied; :meth:`samples` also skips the copy of the result that torchmetrics' ``compute`` wrapper makes. Together
    the N embeddings exist once (4 GB of float16 VLSG latent codes at N = 1M), not three times."""

    full_state_update = False

    def __init__(self, dtype: torch.dtype = torch.float32) -> None:
        super().__init__()
        self.embedding_dtype = dtype
        self._block: Tensor | None = None
        self._used = 0
        for name in ("index", "embedding", "target"):
            self.add_state(name, default=[], dist_reduce_fx="cat")

    def update(self, index: Tensor, embedding: Tensor, target: Tensor) -> None:
        emb, rows = embedding.detach(), embedding.shape[0]
        block = self._block
        if (block is None or block.shape[1:] != emb.shape[1:] or block.device != emb.device
                or self._used + rows > block.shape[0]):
            row_bytes = max(1, emb[0].numel() * self.embedding_dtype.itemsize) if rows else 1
            block = self._block = torch.empty((max(rows, _BLOCK_BYTES // row_bytes), *emb.shape[1:]),
                                              dtype=self.embedding_dtype, device=emb.device)
            self._used = 0
        view = block[self._used:self._used + rows]
        view.copy_(emb)
        self._used += rows
        self.index.append(index.detach())
        self.embedding.append(view)
        self.target.append(target.detach())

    def reset(self) -> None:
        super().reset()
        self._block, self._used = None, 0

    def compute(self) -> tuple[Tensor, Tensor, Tensor]:
        return self._in_row_order()

    def samples(self) -> tuple[Tensor, Tensor, Tensor]:
        """What :meth:`compute` returns (gathered over ranks the same way), without the copy of the result that
        torchmetrics' ``compute`` wrapper makes."""
        with self.sync_context():
            return self._in_row_order()

    def _in_row_order(self) -> tuple[Tensor, Tensor, Tensor]:
        idx, emb, tgt = (_cat_consuming(getattr(self, n)) for n in ("index", "embedding", "target"))
        if bool((idx[1:] > idx[:-1]).all()):  # one process, sequential loader: already in order (no copy)
            return idx, emb, tgt
        order = torch.argsort(idx, stable=True)
        idx, emb, tgt = idx[order], emb[order], tgt[order]
        keep = torch.ones_like(idx, dtype=torch.bool)
        keep[1:] = idx[1:] != idx[:-1]
        return idx[keep], emb[keep], tgt[keep]
