"""Per-modality sequence encoder: temporal Conv1d, sinusoidal positions, Transformer encoder.

The unimodal encoder of CorrKD (CVPR 2024, Sec. 3.1) and its follow-up HRLF (NeurIPS 2024, Sec. 4.1:
"a 1D temporal convolution with kernel size 3 and positional embedding, then a Transformer").
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from lightning_kd.nn.mult import sinusoidal_positions

__all__ = ["ConvTransformerEncoder", "masked_mean"]


class ConvTransformerEncoder(nn.Module):
    """``(B, L, D_in)`` features -> ``(B, L, dim)`` contextual states.

    Args:
        in_dim: input feature size.
        dim: model width.
        heads: attention heads (``dim`` must be divisible by it).
        layers: Transformer encoder layers.
        kernel_size: temporal convolution width (odd; same-length padding).
        dropout: dropout inside the Transformer layers and on the embedded input.
    """

    def __init__(self, in_dim: int, dim: int = 40, heads: int = 10, layers: int = 2, kernel_size: int = 3,
                 dropout: float = 0.1) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"dim {dim} must be divisible by heads {heads}")
        self.conv = nn.Conv1d(in_dim, dim, kernel_size, padding=kernel_size // 2, bias=False)
        self.scale = math.sqrt(dim)
        self.dropout = nn.Dropout(dropout)
        layer = nn.TransformerEncoderLayer(dim, heads, dim_feedforward=4 * dim, dropout=dropout,
                                           batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, layers, norm=nn.LayerNorm(dim), enable_nested_tensor=False)

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        """``x (B, L, D_in)``, ``mask (B, L)`` True on valid steps -> ``(B, L, dim)``.

        Padding steps are hidden from attention; a sample without any valid step (a removed modality)
        attends over all steps instead (its output is excluded later by :func:`masked_mean`). Padding
        steps are zeroed before the convolution, so their contents never reach a valid step.
        """
        if mask is not None:
            x = x.masked_fill(~mask.bool().unsqueeze(-1), 0.0)
        h = self.conv(x.transpose(1, 2)).transpose(1, 2) * self.scale
        h = self.dropout(h + sinusoidal_positions(h.shape[1], h.shape[2], device=h.device, dtype=h.dtype))
        pad = None
        if mask is not None:
            pad = ~mask.bool()
            pad = pad & mask.any(1, keepdim=True)  # nothing valid: attend everywhere (no NaN rows)
        return self.encoder(h, src_key_padding_mask=pad)


def masked_mean(states: list[Tensor], masks: list[Tensor]) -> Tensor:
    """Global average over the valid steps of several ``(B, L_m, d)`` sequences -> ``(B, d)``.

    Sequences are concatenated along time and averaged over their valid steps (CorrKD Sec. 3.1:
    "concatenated and globally average-pooled"); a sample with no valid step gets zeros.
    """
    h = torch.cat(states, 1)
    m = torch.cat(masks, 1).to(h.dtype).unsqueeze(-1)
    return (h * m).sum(1) / m.sum(1).clamp_min(1.0)
