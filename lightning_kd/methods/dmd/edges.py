"""The learned GD-Unit edge weights as 3x3 matrices and heatmaps (DMD paper, Fig. 5)."""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import Tensor

from lightning_kd.data.batch import Batch
from lightning_kd.distill.gd_unit import EDGES, VERTICES


def edge_matrix(weights: Tensor) -> Tensor:
    """Place the 6 directed edge weights (``EDGES`` order) into a 3x3 matrix: row = source, column = target."""
    m = torch.full((3, 3), float("nan"))
    for w, (src, dst) in zip(weights.tolist(), EDGES):
        m[src, dst] = w
    return m


@torch.no_grad()
def mean_edge_weights(module, batches: Iterable[Batch]) -> dict[str, Tensor]:
    """Sample-averaged edge weights ``{"homo": (6,), "hetero": (6,)}`` of a trained :class:`DMD` in eval mode."""
    was_training = module.training
    module.eval()
    sums, n = {"homo": torch.zeros(6), "hetero": torch.zeros(6)}, 0
    for batch in batches:
        batch = batch.to(module.device)
        for k, w in module.edge_weights(batch).items():
            sums[k] += w.cpu() * len(batch)
        n += len(batch)
    module.train(was_training)
    return {k: v / max(n, 1) for k, v in sums.items()}


def plot_edge_heatmaps(weights: dict[str, Tensor], title: str = "DMD learned edge weights"):
    """One heatmap per graph (source modality -> target modality); returns the matplotlib figure."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(weights), figsize=(4.2 * len(weights), 3.6))
    for ax, (name, w) in zip(list(axes) if len(weights) > 1 else [axes], weights.items()):
        m = edge_matrix(w)
        im = ax.imshow(m.numpy(), cmap="viridis", vmin=0)
        ax.set_xticks(range(3), VERTICES)
        ax.set_yticks(range(3), VERTICES)
        ax.set_xlabel("target (student)")
        ax.set_ylabel("source (teacher)")
        ax.set_title(f"{name}-GD")
        for i in range(3):
            for j in range(3):
                if i != j:
                    ax.text(j, i, f"{m[i, j]:.3f}", ha="center", va="center", color="w")
        fig.colorbar(im, ax=ax, fraction=0.046)
    fig.suptitle(title)
    fig.tight_layout()
    return fig
