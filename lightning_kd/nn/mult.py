"""MulT-style transformer encoder (Tsai et al., ACL 2019), as used by DMD and later MSA methods.

Sequence-first tensors ``(L, B, D)`` like the reference implementations. Differences from the
fairseq-derived reference code, all deliberate:

- attention runs through :func:`torch.nn.functional.scaled_dot_product_attention` (fused kernels);
- key and value of cross-modal attention are one tensor ``kv`` (the reference code embeds and drops
  out key and value separately even though callers always pass the same tensor, so the two got
  different dropout masks; here they share one);
- sinusoidal positions are ``1..L`` for every step. The reference ``make_positions`` gives position 0
  (a zero embedding) to any step whose FIRST feature is exactly 0, a token-padding rule that does not
  fit continuous features.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["MulTEncoder", "MulTLayer", "fast_dropout", "sinusoidal_positions", "future_mask"]


def sinusoidal_positions(length: int, dim: int, *, device=None, dtype=None) -> Tensor:
    """tensor2tensor sinusoids ``[sin | cos]`` for positions ``1..length`` -> ``(length, dim)``.

    Frequencies ``exp(-i * log(10000) / (dim//2 - 1))``; an odd ``dim`` gets a zero last column.
    """
    half = dim // 2
    step = math.log(10000.0) / max(half - 1, 1)
    freqs = torch.exp(torch.arange(half, device=device, dtype=torch.float32) * -step)
    pos = torch.arange(1, length + 1, device=device, dtype=torch.float32)
    angles = pos[:, None] * freqs[None, :]
    emb = torch.cat([angles.sin(), angles.cos()], dim=1)
    if dim % 2:
        emb = F.pad(emb, (0, 1))
    return emb.to(dtype or torch.get_default_dtype())


def future_mask(len_q: int, len_k: int, device=None) -> Tensor:
    """Boolean "may attend" mask ``(len_q, len_k)``: query ``i`` sees key ``j`` iff ``j - i < 1 + |len_k - len_q|``.

    The complement of the reference ``buffered_future_mask`` (``-inf`` on ``triu(.., 1 + |Lk - Lq|)``).
    """
    offset = 1 + abs(len_k - len_q)
    i = torch.arange(len_q, device=device)[:, None]
    j = torch.arange(len_k, device=device)[None, :]
    return (j - i) < offset


def _keep_mask(shape: torch.Size, p: float, device: torch.device | None) -> Tensor:
    """Boolean keep mask with drop probability ``p``: one 32-bit random draw per TWO elements.

    Each draw is split into two independent 15-bit uniforms compared with ``round(p * 2**15)``, so the
    drop probability is ``p`` to within 2e-5.
    """
    n = math.prod(shape)
    bits = torch.empty((n + 1) // 2, dtype=torch.int32, device=device).random_()
    uniform15 = torch.cat([bits & 0x7FFF, (bits >> 15) & 0x7FFF])[:n].view(shape)
    return uniform15 >= int(round(p * 32768))


def fast_dropout(x: Tensor, p: float, training: bool) -> Tensor:
    """Inverted dropout whose mask (:func:`_keep_mask`) costs one 32-bit random draw per TWO elements.

    On CPU, ``bernoulli_`` (what ``F.dropout`` uses) was the largest single cost of a DMD training step
    (28 %); this mask is about 5x cheaper.
    """
    if not training or p == 0.0:
        return x
    if p >= 1.0:
        return torch.zeros_like(x)
    keep = _keep_mask(x.shape, p, x.device)
    return x * keep.to(x.dtype) * (1.0 / (1.0 - p))


class _DropoutAttention(torch.autograd.Function):
    """``dropout(softmax(q k^T / sqrt(d) + mask)) v`` that keeps two tensors for backward instead of three.

    Autograd through the plain expression keeps the softmax output, the float dropout mask and the dropped
    probabilities: three ``(B, H, Lq, Lk)`` float tensors per layer. Here backward gets the probabilities
    and a boolean keep mask (5 instead of 12 bytes per attention entry; about 0.1 GB of a DMD step's peak
    at the official MOSI sizes). The mask is drawn exactly as :func:`fast_dropout` draws it, so forward
    values equal the plain expression's bit for bit; gradients agree to float rounding (tests/test_mult.py).
    """

    @staticmethod
    @torch.amp.custom_fwd(device_type="cpu")
    def forward(ctx, q: Tensor, k: Tensor, v: Tensor, allowed: Tensor | None, p: float) -> Tensor:
        scores = (q @ k.transpose(-2, -1)) * (q.shape[-1] ** -0.5)
        if allowed is not None:
            scores = scores.masked_fill_(~allowed, float("-inf"))
        probs = scores.softmax(dim=-1)
        keep = _keep_mask(probs.shape, p, probs.device)
        ctx.save_for_backward(q, k, v, probs, keep)
        ctx.scale = 1.0 / (1.0 - p)
        return (probs * keep.to(probs.dtype) * ctx.scale) @ v

    @staticmethod
    @torch.amp.custom_bwd(device_type="cpu")
    def backward(ctx, grad_out: Tensor):
        q, k, v, probs, keep = ctx.saved_tensors
        kept = keep.to(probs.dtype) * ctx.scale
        grad_v = (probs * kept).transpose(-2, -1) @ grad_out
        grad_scores = (grad_out @ v.transpose(-2, -1)).mul_(kept)
        grad_scores = probs * (grad_scores - (grad_scores * probs).sum(dim=-1, keepdim=True))
        grad_scores = grad_scores.mul_(q.shape[-1] ** -0.5)
        grad_q = grad_scores @ k
        grad_k = grad_scores.transpose(-2, -1) @ q
        return grad_q.to(q.dtype), grad_k.to(k.dtype), grad_v.to(v.dtype), None, None


def _xavier_linear(d_in: int, d_out: int) -> nn.Linear:
    m = nn.Linear(d_in, d_out)
    nn.init.xavier_uniform_(m.weight)
    nn.init.zeros_(m.bias)
    return m


class MulTLayer(nn.Module):
    """One pre-LayerNorm encoder layer: (self- or cross-) attention + ReLU FFN (4D), residual dropout.

    In cross-attention the key/value sequence is normalised with the SAME LayerNorm as the query
    (as in the reference layer).
    """

    def __init__(self, embed_dim: int, num_heads: int, attn_dropout: float = 0.0, relu_dropout: float = 0.0,
                 res_dropout: float = 0.0, causal: bool = True) -> None:
        super().__init__()
        if embed_dim % num_heads:
            raise ValueError(f"embed_dim {embed_dim} must be divisible by num_heads {num_heads}")
        self.embed_dim, self.num_heads = embed_dim, num_heads
        self.attn_dropout, self.relu_dropout, self.res_dropout = attn_dropout, relu_dropout, res_dropout
        self.causal = causal
        # q/k/v projection as one (3D, D) matrix, xavier-initialised as a whole like the reference
        self.in_proj = nn.Linear(embed_dim, 3 * embed_dim)
        nn.init.xavier_uniform_(self.in_proj.weight)
        nn.init.zeros_(self.in_proj.bias)
        self.out_proj = _xavier_linear(embed_dim, embed_dim)
        self.fc1 = _xavier_linear(embed_dim, 4 * embed_dim)
        self.fc2 = _xavier_linear(4 * embed_dim, embed_dim)
        self.norm_attn = nn.LayerNorm(embed_dim)
        self.norm_ffn = nn.LayerNorm(embed_dim)

    def _heads(self, t: Tensor) -> Tensor:  # (L, B, D) -> (B, H, L, D/H)
        L, B, _ = t.shape
        return t.reshape(L, B, self.num_heads, -1).permute(1, 2, 0, 3)

    def attention(self, x: Tensor, kv: Tensor | None) -> Tensor:
        D = self.embed_dim
        w, b = self.in_proj.weight, self.in_proj.bias
        if kv is None:
            q, k, v = F.linear(x, w, b).chunk(3, dim=-1)
        else:
            q = F.linear(x, w[:D], b[:D])
            k, v = F.linear(kv, w[D:], b[D:]).chunk(2, dim=-1)
        len_q, len_k = q.shape[0], k.shape[0]
        mask, is_causal = None, False
        if self.causal:
            if len_q == len_k:
                is_causal = True  # offset 1: the usual lower-triangular mask
            else:
                mask = future_mask(len_q, len_k, device=x.device)
        q, k, v = self._heads(q), self._heads(k), self._heads(v)
        if self.training and self.attn_dropout > 0.0:
            # SDPA with dropout leaves the fused CPU kernel anyway; the explicit path uses fast_dropout
            if is_causal:
                mask = future_mask(len_q, len_k, device=x.device)
            out = (_DropoutAttention.apply(q, k, v, mask, self.attn_dropout) if self.attn_dropout < 1.0
                   else torch.zeros_like(q))
        else:
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=is_causal)
        # out: (B, H, Lq, hd)
        out = out.permute(2, 0, 1, 3).reshape(len_q, x.shape[1], D)
        return self.out_proj(out)

    def forward(self, x: Tensor, kv: Tensor | None = None) -> Tensor:
        h = self.norm_attn(x)
        h = self.attention(h, None if kv is None else self.norm_attn(kv))
        x = x + fast_dropout(h, self.res_dropout, self.training)
        h = F.relu(self.fc1(self.norm_ffn(x)))
        h = self.fc2(fast_dropout(h, self.relu_dropout, self.training))
        return x + fast_dropout(h, self.res_dropout, self.training)


class MulTEncoder(nn.Module):
    """Stack of :class:`MulTLayer` with MulT's input embedding and a final LayerNorm.

    Input embedding: ``x * sqrt(D) + sinusoid(1..L)``, then embedding dropout (the same for ``kv``).

    Args:
        embed_dim, num_heads, layers: width, heads, depth.
        attn_dropout: dropout on attention weights (training only).
        relu_dropout: dropout after the FFN's ReLU. res_dropout: dropout on each residual branch.
        embed_dropout: dropout on the embedded input(s).
        causal: reference ``attn_mask``: additive ``-inf`` above the diagonal offset ``1 + |Lk - Lq|``.
    """

    def __init__(self, embed_dim: int, num_heads: int, layers: int, attn_dropout: float = 0.0,
                 relu_dropout: float = 0.0, res_dropout: float = 0.0, embed_dropout: float = 0.0,
                 causal: bool = True) -> None:
        super().__init__()
        self.embed_dim = embed_dim
        self.embed_scale = math.sqrt(embed_dim)
        self.embed_dropout = embed_dropout
        self.layers = nn.ModuleList(
            MulTLayer(embed_dim, num_heads, attn_dropout, relu_dropout, res_dropout, causal) for _ in range(layers)
        )
        self.norm = nn.LayerNorm(embed_dim)

    def embed(self, x: Tensor) -> Tensor:
        pos = sinusoidal_positions(x.shape[0], self.embed_dim, device=x.device, dtype=x.dtype)
        return fast_dropout(self.embed_scale * x + pos[:, None, :], self.embed_dropout, self.training)

    def forward(self, x: Tensor, kv: Tensor | None = None) -> Tensor:
        """``x (Lq, B, D)``, optional ``kv (Lk, B, D)`` (cross-attention) -> ``(Lq, B, D)``."""
        x = self.embed(x)
        kv = None if kv is None else self.embed(kv)
        for layer in self.layers:
            x = layer(x, kv)
        return self.norm(x)
