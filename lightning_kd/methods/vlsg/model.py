"""VLSG's network: one MLP autoencoder per view with a feature head and a cluster (label) head.

The per-view sizes follow MFLVC (Xu et al., CVPR 2022, Sec. 3 and its public code): encoder
``d -> 500 -> 500 -> 2000 -> 512`` with ReLU, a mirrored decoder, a linear feature head ``512 -> 128`` whose
output is L2-normalised for the contrastive loss, and a label head ``512 -> K`` with softmax. MFLVC shares one
feature head and one label head across all views (its ``feature_contrastive_module`` / ``label_contrastive_module``
are applied to every view's ``z``); ``shared_heads=False`` gives every view its own pair. VLSG (IJCAI 2024)
publishes no architecture; using MFLVC's networks is this project's interpretation.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lightning_kd.options import options

__all__ = ["VLSGNet", "VLSGNetOptions", "ViewAutoencoder"]


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


@dataclass(frozen=True)
class VLSGNetOptions:
    """Options of :class:`VLSGNet` (defaults: MFLVC's sizes).

    Attributes:
        hidden: encoder hidden sizes (the decoder mirrors them).
        latent: size of each view's latent code ``z``.
        feature_dim: size of each view's contrastive feature ``h`` (L2-normalised).
        shared_heads: one feature head and one label head applied to every view (MFLVC); ``False`` (default):
            one pair per view. Measured on held-out data (benchmarks/results/vlsg_defaults.json): see the README.
    """

    hidden: tuple[int, ...] = (500, 500, 2000)
    latent: int = 512
    feature_dim: int = 128
    shared_heads: bool = False


class VLSGNet(nn.Module):
    """Per-view autoencoders plus feature and label heads (MFLVC sizes by default).

    Args:
        feature_dims: view name -> input size, e.g. ``{"view_0": 76, "view_1": 216}``.
        num_clusters: K, the size of every label head.
        net: the :class:`VLSGNetOptions` (instance, mapping or None); ``overrides`` replace single fields.
    """

    def __init__(self, feature_dims: dict[str, int], num_clusters: int,
                 net: VLSGNetOptions | dict[str, Any] | None = None, **overrides: Any) -> None:
        super().__init__()
        o = self.options = options(VLSGNetOptions, net, **overrides)
        hidden, latent, feature_dim, shared_heads = o.hidden, o.latent, o.feature_dim, o.shared_heads
        if not feature_dims:
            raise ValueError("feature_dims is empty: a multi-view model needs at least one view")
        if num_clusters < 2:
            raise ValueError(f"num_clusters must be >= 2, got {num_clusters}")
        self.views = list(feature_dims)
        self.autoencoders = nn.ModuleDict({v: ViewAutoencoder(d, hidden, latent) for v, d in feature_dims.items()})
        self.shared_heads = shared_heads
        if shared_heads:
            self.feature_head: nn.Module = nn.Linear(latent, feature_dim)
            self.label_head: nn.Module = nn.Linear(latent, num_clusters)
        else:
            self.feature_heads = nn.ModuleDict({v: nn.Linear(latent, feature_dim) for v in self.views})
            self.label_heads = nn.ModuleDict({v: nn.Linear(latent, num_clusters) for v in self.views})

    def feature_head_of(self, view: str) -> nn.Module:
        """The feature head applied to ``view`` (the same module for every view with ``shared_heads``)."""
        return self.feature_head if self.shared_heads else self.feature_heads[view]

    def label_head_of(self, view: str) -> nn.Module:
        """The label head applied to ``view`` (the same module for every view with ``shared_heads``)."""
        return self.label_head if self.shared_heads else self.label_heads[view]

    def encode(self, inputs: dict[str, Tensor]) -> dict[str, Tensor]:
        """Every view's latent code ``z`` ``(B, latent)``."""
        return {v: self.autoencoders[v].encoder(inputs[v]) for v in self.views}

    def features(self, z: dict[str, Tensor]) -> dict[str, Tensor]:
        """Every view's L2-normalised feature ``h`` ``(B, feature_dim)``, float32."""
        return {v: F.normalize(self.feature_head_of(v)(z[v]).float(), dim=1) for v in self.views}

    def cluster_probs(self, z: dict[str, Tensor]) -> dict[str, Tensor]:
        """Every view's cluster probabilities ``q`` ``(B, K)``, float32."""
        return {v: torch.softmax(self.label_head_of(v)(z[v]).float(), dim=1) for v in self.views}

    def forward(self, inputs: dict[str, Tensor]) -> dict[str, dict[str, Tensor]]:
        """``{"z", "recon", "h", "q"}``, each a dict view -> tensor: latent, reconstruction, normalised feature
        ``(B, feature_dim)`` and cluster probabilities ``(B, K)``."""
        z = self.encode(inputs)
        recon = {v: self.autoencoders[v].decoder(z[v]) for v in self.views}
        return {"z": z, "recon": recon, "h": self.features(z), "q": self.cluster_probs(z)}

    def embed(self, z: dict[str, Tensor], kind: str = "latent") -> Tensor:
        """The clustering embedding of latent codes ``z`` (:meth:`encode`): ``"latent"`` every view's normalised
        ``z`` concatenated ``(B, V latent)``; ``"features"`` every view's ``h`` concatenated ``(B, V feature_dim)``;
        ``"labels"`` the cluster probabilities averaged over views ``(B, K)``."""
        if kind == "labels":
            return torch.stack(list(self.cluster_probs(z).values())).mean(0)
        parts = self.features(z) if kind == "features" else {v: F.normalize(z[v].float(), dim=1) for v in self.views}
        return torch.cat([parts[v] for v in self.views], dim=1)
