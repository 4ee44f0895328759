"""CDGKD's visual encoder (Wu et al., IJCAI 2025; sizes from its released code): per-frame features -> conv
tokens -> pyramid Transformer -> one feature vector.

Input ``(B, F, D)``: ``F`` frames (5) of ``D``-dim per-frame features (768).

* **Conv head** on the ``(1, F, D)`` image: a ``(1, feature_kernel)`` convolution with ``channels`` filters and
  stride ``(1, feature_stride)`` (1 x 32, 64 filters, stride 8: ``D`` -> ``(D - 32) // 8 + 1`` = 93), BN, ReLU;
  an ``(F, frame_kernel)`` convolution that merges the frames (5 x 33: 93 -> 61); a 1 x 1 convolution.
  The result is ``N = (D - feature_kernel) // feature_stride + 1 - frame_kernel + 1`` tokens (61 for D = 768)
  of ``channels`` values.
* **Pyramid Transformer**: level ``l`` projects the previous level's tokens to ``dims[l]`` (64 -> 48 -> 32),
  adds learned positions and runs a Transformer encoder layer (``heads`` heads, feed-forward ``ff``).
* **Readout**: each level's tokens are projected to ``fuse_dim`` (48) and summed over levels; the ``N x fuse_dim``
  tokens are flattened into a linear layer to ``out_dim`` (768).

The released code fuses the summed levels with a ``(14, 1)`` convolution before the dense layer; we flatten
directly (no fixed token count in the kernel), otherwise the sizes are the released ones.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from lightning_kd.checkpoint import ConfigError
from lightning_kd.options import options

__all__ = ["VisualPyramid", "VisualPyramidOptions", "token_count"]


@dataclass(frozen=True)
class VisualPyramidOptions:
    """Options of :class:`VisualPyramid` (defaults: CDGKD's released sizes).

    Attributes:
        channels: filters of the conv head = width of its tokens (64).
        feature_kernel / feature_stride: the first convolution along the feature axis (32 / 8).
        frame_kernel: width of the frame-merging convolution (33).
        dims: widths of the pyramid levels (64, 48, 32).
        heads: attention heads per level (8; must divide every width).
        ff: feed-forward width of each Transformer layer (64).
        fuse_dim: width every level is projected to before the levels are summed (48).
        out_dim: size of the output feature (768).
        dropout: dropout inside the Transformer layers.
    """

    channels: int = 64
    feature_kernel: int = 32
    feature_stride: int = 8
    frame_kernel: int = 33
    dims: tuple[int, ...] = (64, 48, 32)
    heads: int = 8
    ff: int = 64
    fuse_dim: int = 48
    out_dim: int = 768
    dropout: float = 0.1


def token_count(feature_dim: int, opts: VisualPyramidOptions) -> int:
    """Tokens the conv head makes from ``feature_dim``-dim frames (61 for 768 with the defaults)."""
    return (int(feature_dim) - opts.feature_kernel) // opts.feature_stride + 1 - opts.frame_kernel + 1


class VisualPyramid(nn.Module):
    """``(B, F, D)`` per-frame features -> ``(B, out_dim)`` (see the module docstring).

    Args:
        feature_dim: ``D``.
        frames: ``F``.
        opts: :class:`VisualPyramidOptions` (instance, mapping or None); ``overrides`` replace single fields.

    Raises:
        ConfigError: sizes that leave no token, or a head count that does not divide a level width.
    """

    def __init__(self, feature_dim: int, frames: int, opts: VisualPyramidOptions | dict[str, Any] | None = None,
                 **overrides: Any) -> None:
        super().__init__()
        o = self.options = options(VisualPyramidOptions, opts, **overrides)
        self.feature_dim, self.frames = int(feature_dim), int(frames)
        n = self.tokens = token_count(self.feature_dim, o)
        if n < 1 or self.feature_dim < o.feature_kernel:
            raise ConfigError(f"visual encoder: {self.feature_dim}-dim frame features leave {n} tokens with "
                              f"feature_kernel {o.feature_kernel}, feature_stride {o.feature_stride}, frame_kernel "
                              f"{o.frame_kernel}; make the kernels smaller (model.init_args.visual.*)")
        if not o.dims or any(d % o.heads for d in o.dims):
            raise ConfigError(f"visual encoder: heads {o.heads} must divide every level width {list(o.dims)}")
        self.head = nn.Sequential(
            nn.Conv2d(1, o.channels, (1, o.feature_kernel), stride=(1, o.feature_stride)),
            nn.BatchNorm2d(o.channels), nn.ReLU(),
            nn.Conv2d(o.channels, o.channels, (self.frames, o.frame_kernel)),
            nn.Conv2d(o.channels, o.channels, 1),
        )
        widths = (o.channels, *o.dims)
        self.project = nn.ModuleList(nn.Linear(a, b) if a != b else nn.Identity() for a, b in zip(widths, o.dims))
        self.positions = nn.ParameterList(nn.Parameter(torch.zeros(1, n, d)) for d in o.dims)
        for p in self.positions:
            nn.init.trunc_normal_(p, std=0.02)
        self.levels = nn.ModuleList(
            nn.TransformerEncoderLayer(d, o.heads, o.ff, o.dropout, batch_first=True) for d in o.dims)
        self.fuse = nn.ModuleList(nn.Linear(d, o.fuse_dim) for d in o.dims)
        self.out = nn.Linear(n * o.fuse_dim, o.out_dim)
        self.out_dim = o.out_dim

    def forward(self, face: Tensor) -> Tensor:
        """``(B, F, D)`` -> ``(B, out_dim)``."""
        if face.ndim != 3 or face.shape[1:] != (self.frames, self.feature_dim):
            raise ValueError(f"visual encoder expects (B, {self.frames}, {self.feature_dim}) frame features, got "
                             f"{tuple(face.shape)}")
        x = self.head(face.unsqueeze(1))  # (B, channels, 1, N)
        x = x.squeeze(2).transpose(1, 2)  # (B, N, channels)
        fused = 0
        for project, pos, layer, fuse in zip(self.project, self.positions, self.levels, self.fuse):
            x = layer(project(x) + pos)
            fused = fused + fuse(x)
        return self.out(fused.flatten(1))
