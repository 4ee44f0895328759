"""VLSG's network: one MLP autoencoder per view with a feature head and a cluster (label) head.

The per-view sizes follow MFLVC (Xu et al., CVPR 2022, Sec. 3 and its public code): encoder
``d -> 500 -> 500 -> 2000 -> 512`` with ReLU, a mirrored decoder, a linear feature head ``512 -> 128`` whose
output is L2-normalised for the contrastive loss, and a label head ``512 -> K`` with softmax. VLSG (IJCAI
2024) publishes no architecture; using MFLVC's per-view networks is this project's interpretation.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["VLSGNet", "ViewAutoencoder"]


def _mlp(sizes: Sequence[int]) -> nn.Sequential:
    """Linear layers between consecutive ``sizes`` with ReLU after all but the last."""
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


class ViewAutoencoder(nn.Module):
    """MLP autoencoder of one view: ``encode (B, d) -> (B, latent)`` and ``decode`` back to ``(B, d)``."""

    def __init__(self, in_dim: int, hidden: Sequence[int] = (500, 500, 2000), latent: int = 512) -> None:
        super().__init__()
        sizes = [in_dim, *hidden, latent]
        self.encoder = _mlp(sizes)
        self.decoder = _mlp(sizes[::-1])

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        z = self.encoder(x)
        return z, self.decoder(z)


class VLSGNet(nn.Module):
    """Per-view autoencoders plus feature and label heads (MFLVC sizes by default).

    Args:
        feature_dims: view name -> input size, e.g. ``{"view_0": 76, "view_1": 216}``.
        num_clusters: K, the size of every label head.
        hidden: encoder hidden sizes (the decoder mirrors them).
        latent: size of each view's latent code ``z``.
        feature_dim: size of each view's contrastive feature ``h`` (L2-normalised).
    """

    def __init__(
        self,
        feature_dims: dict[str, int],
        num_clusters: int,
        hidden: Sequence[int] = (500, 500, 2000),
        latent: int = 512,
        feature_dim: int = 128,
    ) -> None:
        super().__init__()
        if not feature_dims:
            raise ValueError("feature_dims is empty: a multi-view model needs at least one view")
        if num_clusters < 2:
            raise ValueError(f"num_clusters must be >= 2, got {num_clusters}")
        self.views = list(feature_dims)
        self.autoencoders = nn.ModuleDict({v: ViewAutoencoder(d, hidden, latent) for v, d in feature_dims.items()})
        self.feature_heads = nn.ModuleDict({v: nn.Linear(latent, feature_dim) for v in self.views})
        self.label_heads = nn.ModuleDict({v: nn.Linear(latent, num_clusters) for v in self.views})

    def forward(self, inputs: dict[str, Tensor]) -> dict[str, dict[str, Tensor]]:
        """``{"z", "recon", "h", "q"}``, each a dict view -> tensor: latent, reconstruction, normalised feature
        ``(B, feature_dim)`` and cluster probabilities ``(B, K)``."""
        out: dict[str, dict[str, Tensor]] = {"z": {}, "recon": {}, "h": {}, "q": {}}
        for v in self.views:
            z, recon = self.autoencoders[v](inputs[v])
            out["z"][v], out["recon"][v] = z, recon
            out["h"][v] = F.normalize(self.feature_heads[v](z).float(), dim=1)
            out["q"][v] = torch.softmax(self.label_heads[v](z).float(), dim=1)
        return out

    def embed(self, inputs: dict[str, Tensor], latent: bool = False) -> Tensor:
        """The clustering embedding: every view's normalised feature ``h`` (or, with ``latent``, normalised latent
        code ``z``) concatenated, ``(B, V feature_dim)`` (``(B, V latent)``)."""
        parts = []
        for v in self.views:
            z = self.autoencoders[v].encoder(inputs[v])
            parts.append(F.normalize((z if latent else self.feature_heads[v](z)).float(), dim=1))
        return torch.cat(parts, dim=1)

    def cluster_probs(self, inputs: dict[str, Tensor]) -> Tensor:
        """The label heads' cluster probabilities averaged over views, ``(B, K)``."""
        return torch.stack([torch.softmax(self.label_heads[v](self.autoencoders[v].encoder(inputs[v])).float(), dim=1)
                            for v in self.views]).mean(0)
