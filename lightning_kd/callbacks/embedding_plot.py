"""Test-end 2-D embedding plot of a clustering model, coloured by cluster."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import lightning.pytorch as pl
import numpy as np
from lightning.pytorch.callbacks import Callback

from lightning_kd.callbacks.run_dir import run_dir

__all__ = ["EmbeddingPlot", "embed_2d", "plot_embedding"]


def embed_2d(x: np.ndarray, method: Literal["tsne", "pca"] = "tsne", seed: int = 0) -> np.ndarray:
    """``(N, 2)`` projection of ``x (N, D)``: t-SNE (scikit-learn, PCA-initialised) or PCA."""
    x = np.asarray(x, dtype=np.float64)
    x = x - x.mean(0)
    if method == "pca" or len(x) < 5:
        u, s, _ = np.linalg.svd(x, full_matrices=False)
        out = u[:, :2] * s[:2]
        return np.pad(out, ((0, 0), (0, 2 - out.shape[1])))
    from sklearn.manifold import TSNE

    return TSNE(2, perplexity=min(30.0, (len(x) - 1) / 3), init="pca", random_state=seed).fit_transform(x)


def plot_embedding(xy: np.ndarray, clusters: np.ndarray, path: str | Path, title: str = "") -> Path:
    """Scatter ``xy (N, 2)`` coloured by ``clusters (N,)``; saved as PNG at ``path`` (written atomically)."""
    from matplotlib.figure import Figure  # no pyplot: the caller's backend (a notebook's inline one) is left alone

    from lightning_kd.io import atomic_write_binary

    fig = Figure(figsize=(6, 6), dpi=110)
    ax = fig.subplots()
    ax.scatter(xy[:, 0], xy[:, 1], c=clusters, cmap="tab10" if clusters.max() < 10 else "tab20", s=4, linewidths=0)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    path = Path(path)
    atomic_write_binary(path, lambda f: fig.savefig(f, format="png"))
    return path


class EmbeddingPlot(Callback):
    """After ``test``, writes ``<run_dir>/embedding_2d.png``: the model's test embeddings in 2-D, coloured by
    the predicted cluster. Works with a module that sets ``test_embedding``, ``test_prediction`` (numpy) in its
    test epoch end (e.g. :class:`~lightning_kd.methods.vlsg.VLSG`).

    Args:
        method: ``"tsne"`` or ``"pca"``.
        max_points: a random (seeded) subset of at most this many samples is projected (t-SNE is O(N log N)
            but slow past ~10k points on a CPU).
        seed: subset and t-SNE seed.
    """

    filename = "embedding_2d.png"

    def __init__(self, method: Literal["tsne", "pca"] = "tsne", max_points: int = 5000, seed: int = 0) -> None:
        self.method, self.max_points, self.seed = method, max_points, seed

    def on_test_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        emb = getattr(pl_module, "test_embedding", None)
        pred = getattr(pl_module, "test_prediction", None)
        if emb is None or pred is None or trainer.fast_dev_run:
            return
        out = run_dir(trainer) / self.filename
        if not trainer.is_global_zero:
            return
        rows = np.arange(len(emb))
        if len(rows) > self.max_points:
            rows = np.sort(np.random.default_rng(self.seed).choice(rows, self.max_points, replace=False))
        xy = embed_2d(emb[rows], self.method, self.seed)
        metrics = {k.removeprefix("test/"): float(v) for k, v in trainer.callback_metrics.items()
                   if k in ("test/ACC", "test/NMI", "test/ARI")}
        title = f"{type(pl_module).__name__}: {len(rows)} samples, {self.method}, coloured by cluster" + (
            "\n" + "  ".join(f"{k} {v:.3f}" for k, v in metrics.items()) if metrics else "")
        plot_embedding(xy, pred[rows], out, title)
        pl_module.print(f"embedding plot written to {out}")
