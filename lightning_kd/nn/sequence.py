"""Per-modality sequence encoder: temporal Conv1d, sinusoidal positions, Transformer encoder.

The unimodal encoder of CorrKD (CVPR 2024, Sec. 3.1) and its follow-up HRLF (NeurIPS 2024, Sec. 4.1:
"a 1D temporal convolution with kernel size 3 and positional embedding, then a Transformer").
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lightning_kd.nn.mult import chunked_attention, sinusoidal_positions, tracing

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
        pad = None
        if mask is not None:
            pad = ~mask.bool()
            pad = pad & mask.any(1, keepdim=True)  # nothing valid: attend everywhere (no NaN rows)
        if not self.training and (torch.is_inference_mode_enabled() or tracing()):
            return self._encode_eval(x, mask, pad)
        if mask is not None:
            x = x.masked_fill(~mask.bool().unsqueeze(-1), 0.0)
        h = self.conv(x.transpose(1, 2)).transpose(1, 2) * self.scale
        h = self.dropout(h + sinusoidal_positions(h.shape[1], h.shape[2], device=h.device, dtype=h.dtype))
        return self.encoder(h, src_key_padding_mask=pad)

    def _encode_eval(self, x: Tensor, mask: Tensor | None, pad: Tensor | None) -> Tensor:
        """The eval forward (no dropout) as explicit products on the same parameters; equal to the modules'
        function to float rounding (tests/test_sequence_encoder.py). It runs where autograd records nothing:
        under ``torch.inference_mode`` (Lightning's validation, test and predict loops, benchmarks) and when
        traced for export. A frozen teacher under ``torch.no_grad`` keeps the modules, so a student's training
        steps stay bit-for-bit those of earlier releases.

        At these sizes (width 40, heads of width 4, 50 steps) PyTorch's own kernels made inference slow:
        the Transformer's inference fast path runs a scalar masked softmax, the fused SDPA kernel is built
        for wide heads (each took ~20 ms of a 256-sample batch's ~35 ms per layer, 2 CPU cores), and the
        convolution needs two layout copies of the input. Here the convolution is one product in the input's
        own layout (:func:`_conv_steps`) and the attention :func:`_self_attention`
        (``benchmarks/export_bench.py``: the CorrKD student's throughput 1.5-2x, README "Exported students").
        """
        h = _conv_steps(x, self.conv.weight * self.scale, mask)
        h = h + sinusoidal_positions(h.shape[1], h.shape[2], device=h.device, dtype=h.dtype)
        for layer in self.encoder.layers:
            h = h + _self_attention(layer.self_attn, layer.norm1(h), pad)
            h = h + layer.linear2(F.relu(layer.linear1(layer.norm2(h))))
        return self.encoder.norm(h)


def _conv_steps(x: Tensor, weight: Tensor, mask: Tensor | None) -> Tensor:
    """``conv1d`` with same-length zero padding, without bias, of ``x (B, L, C)`` with ``weight (D, C, K)``
    (odd ``K``) over the steps where ``mask (B, L)`` is True (others count as zeros) -> ``(B, L, D)``.

    One product ``x @ W`` gives each step's contribution to every tap, ``(B, L, K, D)``; output step ``l``
    sums tap ``t`` of input step ``l + t - K // 2``. No transposed copy of ``x``, and the mask zeroes the
    (narrower) per-tap contributions instead of the input.
    """
    B, L, _ = x.shape
    D, C, K = weight.shape
    z = (x @ weight.permute(1, 2, 0).reshape(C, K * D)).view(B, L, K, D)
    if mask is not None:
        z = z.masked_fill(~mask.bool()[:, :, None, None], 0.0)  # not a product: padding may hold inf
    z = F.pad(z, (0, 0, 0, 0, K // 2, K // 2))
    out = z[:, 0:L, 0]
    for t in range(1, K):
        out = out + z[:, t:t + L, t]
    return out


def _self_attention(attn: nn.MultiheadAttention, x: Tensor, pad: Tensor | None) -> Tensor:
    """``attn(x, x, x, key_padding_mask=pad)`` without dropout; ``x (B, L, D)``, ``pad (B, L)`` True = hidden.

    The key padding enters the score product itself: queries get a constant 1 and keys a ``0`` / ``-inf``
    column, so ``[q, 1] . [k, bias] = q . k + bias`` with no pass over the scores to mask them
    (:func:`~lightning_kd.nn.mult.chunked_attention` computes the rest).
    """
    B, L, D = x.shape
    H = attn.num_heads
    qkv = F.linear(x, attn.in_proj_weight, attn.in_proj_bias).view(B, L, 3, H, D // H).permute(2, 0, 3, 1, 4)
    q, k, v = qkv[0] * (D // H) ** -0.5, qkv[1], qkv[2]  # (B, H, L, D/H)
    if pad is not None:
        bias = torch.zeros(pad.shape, dtype=x.dtype, device=x.device).masked_fill_(pad, float("-inf"))
        q = torch.cat([q, torch.ones_like(q[..., :1])], dim=-1)
        k = torch.cat([k, bias[:, None, :, None].expand(B, H, L, 1)], dim=-1)
    out = chunked_attention(q, k, v, scale=1.0)
    return attn.out_proj(out.transpose(1, 2).reshape(B, L, D))


def masked_mean(states: list[Tensor], masks: list[Tensor]) -> Tensor:
    """Global average over the valid steps of several ``(B, L_m, d)`` sequences -> ``(B, d)``.

    Sequences are concatenated along time and averaged over their valid steps (CorrKD Sec. 3.1:
    "concatenated and globally average-pooled"); a sample with no valid step gets zeros.
    """
    h = torch.cat(states, 1)
    m = torch.cat(masks, 1).to(h.dtype).unsqueeze(-1)
    return (h * m).sum(1) / m.sum(1).clamp_min(1.0)
