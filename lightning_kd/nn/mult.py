"""MulT-style transformer encoder (Tsai et al., ACL 2019), as used by DMD and later MSA methods.

Sequence-first tensors ``(L, B, D)`` like the reference implementations. Differences from the
fairseq-derived reference code, all deliberate:

- attention runs through :func:`torch.nn.functional.scaled_dot_product_attention` (fused kernels) in training
  and as explicit products (:func:`chunked_attention`) in inference mode and export;
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

__all__ = ["MulTEncoder", "MulTLayer", "chunked_attention", "fast_dropout", "future_mask", "matmul_narrow",
           "sinusoidal_positions", "stack_encoder_state", "tracing"]


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
    threshold = int(round(p * 32768))
    # compare each half first, then join the (1-byte) booleans: the same mask with a quarter of the copying
    return torch.cat([(bits & 0x7FFF) >= threshold, ((bits >> 15) & 0x7FFF) >= threshold])[:n].view(shape)


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
    values equal the plain expression's to float rounding, and so do gradients (tests/test_dmd_module.py).
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
        return matmul_narrow(probs * keep.to(probs.dtype) * ctx.scale, v)

    @staticmethod
    @torch.amp.custom_bwd(device_type="cpu")
    def backward(ctx, grad_out: Tensor):
        q, k, v, probs, keep = ctx.saved_tensors
        kept = keep.to(probs.dtype) * ctx.scale
        grad_v = matmul_narrow((probs * kept).transpose(-2, -1), grad_out)
        grad_scores = (grad_out @ v.transpose(-2, -1)).mul_(kept)
        grad_scores = probs * (grad_scores - (grad_scores * probs).sum(dim=-1, keepdim=True))
        grad_scores = grad_scores.mul_(q.shape[-1] ** -0.5)
        grad_q = matmul_narrow(grad_scores, k)
        grad_k = matmul_narrow(grad_scores.transpose(-2, -1), q)
        return grad_q.to(q.dtype), grad_k.to(k.dtype), grad_v.to(v.dtype), None, None


#: attention scores of at most this many bytes are processed at once in training (see _grouped_dropout_attention)
ATTENTION_CHUNK_BYTES = 4 << 20


def _grouped_dropout_attention(q: Tensor, k: Tensor, v: Tensor, allowed: Tensor | None,
                               rates: tuple[float, ...]) -> Tensor:
    """Attention with dropout for ``len(rates)`` groups stacked on dim 0 (equal blocks), group by group.

    Each group uses its own rate (0: the fused SDPA kernel; 1: zeros) and is cut into row chunks whose
    ``(rows, H, Lq, Lk)`` scores take at most :data:`ATTENTION_CHUNK_BYTES`: the ten or so elementwise passes
    over the scores then run in cache. One 8 MB score tensor for DMD's six cross-modal encoders made each
    pass about 10x slower per element than the six 1.35 MB ones (CPU, 2 cores).
    """
    rows = q.shape[0] // len(rates)
    per_row = q.shape[1] * q.shape[2] * k.shape[2] * q.element_size()
    step = max(1, min(rows, ATTENTION_CHUNK_BYTES // per_row))
    outs = []
    for g, p in enumerate(rates):
        for start in range(g * rows, (g + 1) * rows, step):
            c = slice(start, min(start + step, (g + 1) * rows))
            if p == 0.0:
                outs.append(F.scaled_dot_product_attention(q[c], k[c], v[c], attn_mask=allowed))
            elif p >= 1.0:
                outs.append(torch.zeros_like(q[c]))
            else:
                outs.append(_DropoutAttention.apply(q[c], k[c], v[c], allowed, p))
    return outs[0] if len(outs) == 1 else torch.cat(outs)


def chunked_attention(q: Tensor, k: Tensor, v: Tensor, allowed: Tensor | None = None,
                      scale: float | None = None) -> Tensor:
    """``softmax(scale * q k^T) v`` without dropout over the keys ``allowed (Lq, Lk)`` (bool, True = may attend;
    None = all), for ``q (B, H, Lq, d)``, ``k``/``v (B, H, Lk, d)``; ``scale`` defaults to ``d ** -0.5``.

    The inference kernel for narrow heads (d = 4-10): at these widths the fused SDPA kernel is the slowest
    option on CPU (a 256-sample batch of 10 heads of width 4 over 50 steps: ~20 ms, against ~5 ms here, 2
    cores). Samples run in chunks whose scores take at most :data:`ATTENTION_CHUNK_BYTES` so the softmax
    runs in cache; one chunk when traced for export (the graph must not depend on the example's batch size).
    """
    scale = q.shape[-1] ** -0.5 if scale is None else scale
    bias = None if allowed is None else torch.zeros(allowed.shape, dtype=q.dtype, device=q.device).masked_fill_(
        ~allowed, float("-inf"))
    B = q.shape[0]
    per_sample = q.shape[1] * q.shape[2] * k.shape[2] * q.element_size()
    step = B if tracing() else max(1, ATTENTION_CHUNK_BYTES // per_sample)
    outs = []
    for start in range(0, B, step):
        c = slice(start, start + step)
        scores = (q[c] * scale) @ k[c].transpose(-2, -1)
        if bias is not None:
            scores = scores + bias
        outs.append(matmul_narrow(scores.softmax(dim=-1), v[c]))
    return outs[0] if len(outs) == 1 else torch.cat(outs)


def tracing() -> bool:
    """Whether the running forward is being traced or scripted (for TorchScript or ONNX export)."""
    return torch.jit.is_tracing() or torch.jit.is_scripting() or torch.onnx.is_in_onnx_export()


def matmul_narrow(a: Tensor, b: Tensor) -> Tensor:
    """``a @ b`` for a narrow ``b (..., L, d)`` (a head width d = 5-10 at MulT's sizes), computed as
    ``(b^T a^T)^T``: the BLAS batched kernel is about 4x faster with the narrow operand on the left
    (CPU, ``(B*H, 46, 46) @ (B*H, 46, 5)``: 1.6 ms vs 0.4 ms); same products, another summation order."""
    return (b.transpose(-2, -1) @ a.transpose(-2, -1)).transpose(-2, -1)


def _linear(x: Tensor, w: Tensor, b: Tensor) -> Tensor:
    """Per-group affine map: ``x (G, L, B, i)``, ``w (G, o, i)``, ``b (G, o)`` -> ``(G, L, B, o)``: one kernel."""
    if x.shape[0] == 1:
        return F.linear(x[0], w[0], b[0])[None]
    G, L, B, i = x.shape
    return torch.baddbmm(b[:, None, :], x.reshape(G, L * B, i), w.transpose(1, 2)).view(G, L, B, -1)


def _layer_norm(x: Tensor, w: Tensor, b: Tensor) -> Tensor:
    """Per-group LayerNorm over the last dimension: ``x (G, ..., D)``, ``w``/``b (G, D)``."""
    if x.shape[0] == 1:
        return F.layer_norm(x[0], w.shape[-1:], w[0], b[0])[None]
    shape = (w.shape[0],) + (1,) * (x.dim() - 2) + (w.shape[1],)  # parameter sizes: static when traced for export
    return torch.addcmul(b.view(shape), F.layer_norm(x, (w.shape[1],)), w.view(shape))


def _group_param(groups: int, *shape: int, init: str) -> nn.Parameter:
    """``(groups, *shape)`` parameter; ``init``: ``xavier`` (each group's matrix on its own, as ``nn.Linear``
    initialised by the reference MulT), ``zeros`` or ``ones``."""
    t = torch.empty(groups, *shape)
    if init == "xavier":
        for g in range(groups):
            nn.init.xavier_uniform_(t[g])
    else:
        t.fill_(1.0 if init == "ones" else 0.0)
    return nn.Parameter(t)


class MulTLayer(nn.Module):
    """One pre-LayerNorm encoder layer: (self- or cross-) attention + ReLU FFN (4D), residual dropout, for
    ``groups`` independent encoders at once (every parameter has a leading group axis).

    In cross-attention the key/value sequence is normalised with the SAME LayerNorm as the query
    (as in the reference layer). ``attn_dropout`` may give one rate per group.
    """

    def __init__(self, embed_dim: int, num_heads: int, attn_dropout: float | tuple[float, ...] = 0.0,
                 relu_dropout: float = 0.0, res_dropout: float = 0.0, causal: bool = True, groups: int = 1) -> None:
        super().__init__()
        if embed_dim % num_heads:
            raise ValueError(f"embed_dim {embed_dim} must be divisible by num_heads {num_heads}")
        D, G = embed_dim, groups
        self.embed_dim, self.num_heads, self.groups = D, num_heads, G
        self.attn_dropout = _per_group(attn_dropout, G)
        self.relu_dropout, self.res_dropout, self.causal = relu_dropout, res_dropout, causal
        # q/k/v projection as one (3D, D) matrix per group, xavier-initialised as a whole like the reference
        self.in_proj_weight, self.in_proj_bias = _group_param(G, 3 * D, D, init="xavier"), _group_param(G, 3 * D, init="zeros")
        self.out_proj_weight, self.out_proj_bias = _group_param(G, D, D, init="xavier"), _group_param(G, D, init="zeros")
        self.fc1_weight, self.fc1_bias = _group_param(G, 4 * D, D, init="xavier"), _group_param(G, 4 * D, init="zeros")
        self.fc2_weight, self.fc2_bias = _group_param(G, D, 4 * D, init="xavier"), _group_param(G, D, init="zeros")
        self.norm_attn_weight, self.norm_attn_bias = _group_param(G, D, init="ones"), _group_param(G, D, init="zeros")
        self.norm_ffn_weight, self.norm_ffn_bias = _group_param(G, D, init="ones"), _group_param(G, D, init="zeros")

    def _heads(self, t: Tensor) -> Tensor:  # (G, L, B, D) -> (G*B, H, L, D/H)
        G, L, B, _ = t.shape
        return t.reshape(G, L, B, self.num_heads, -1).permute(0, 2, 3, 1, 4).reshape(G * B, self.num_heads, L, -1)

    def attention(self, x: Tensor, kv: Tensor | None, g: slice, query_len: int | None = None) -> Tensor:
        """``x (G', Lq, B, D)`` (and ``kv (G', Lk, B, D)``) with the parameters of groups ``g``.

        ``query_len``: ``x`` holds the LAST ``Lq`` queries of a sequence of that length (the future mask's rows
        are those of the full sequence); None: ``x`` is the whole sequence.
        """
        D = self.embed_dim
        w, b = self.in_proj_weight[g], self.in_proj_bias[g]
        if kv is None:
            q, k, v = _linear(x, w, b).chunk(3, dim=-1)
        else:
            q = _linear(x, w[:, :D], b[:, :D])
            k, v = _linear(kv, w[:, D:], b[:, D:]).chunk(2, dim=-1)
        G, len_q, B, _ = q.shape
        len_k = k.shape[1]
        q, k, v = self._heads(q), self._heads(k), self._heads(v)
        full_q = len_q if query_len is None else query_len
        allowed = future_mask(full_q, len_k, device=x.device)[full_q - len_q:] if self.causal else None
        rates = self.attn_dropout[g]
        if self.training and max(rates) > 0.0:
            # SDPA with dropout leaves the fused CPU kernel anyway; the explicit path uses the cheap mask
            out = _grouped_dropout_attention(q, k, v, allowed, rates)
        elif not self.training and (torch.is_inference_mode_enabled() or tracing()):
            out = chunked_attention(q, k, v, allowed)
        elif self.causal and len_q == len_k == full_q:  # offset 1: the lower-triangular mask, SDPA's causal kernel
            out = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        else:
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed)
        # out: (G*B, H, Lq, hd) -> (G, Lq, B, D)
        out = out.view(G, B, self.num_heads, len_q, -1).permute(0, 3, 1, 2, 4).reshape(G, len_q, B, D)
        return _linear(out, self.out_proj_weight[g], self.out_proj_bias[g])

    def forward(self, x: Tensor, kv: Tensor | None = None, g: slice = slice(None), last_only: bool = False) -> Tensor:
        """``x (G', Lq, B, D)``, optional ``kv (G', Lk, B, D)``; ``g`` selects the groups' parameters.

        ``last_only``: compute the output at the last query step only, ``(G', 1, B, D)`` (its keys and values
        still come from every step); equal to ``forward(x, kv, g)[:, -1:]``.
        """
        nw, nb = self.norm_attn_weight[g], self.norm_attn_bias[g]
        normed = _layer_norm(x, nw, nb)
        source = None if kv is None else _layer_norm(kv, nw, nb)
        if last_only:
            h = self.attention(normed[:, -1:], normed if source is None else source, g, query_len=x.shape[1])
            x = x[:, -1:]
        else:
            h = self.attention(normed, source, g)
        x = x + fast_dropout(h, self.res_dropout, self.training)
        h = F.relu(_linear(_layer_norm(x, self.norm_ffn_weight[g], self.norm_ffn_bias[g]),
                           self.fc1_weight[g], self.fc1_bias[g]))
        h = _linear(fast_dropout(h, self.relu_dropout, self.training), self.fc2_weight[g], self.fc2_bias[g])
        return x + fast_dropout(h, self.res_dropout, self.training)


class MulTEncoder(nn.Module):
    """Stack of :class:`MulTLayer` with MulT's input embedding and a final LayerNorm; ``groups`` encoders at once.

    Input embedding: ``x * sqrt(D) + sinusoid(1..L)``, then embedding dropout (the same for ``kv``).
    ``groups > 1`` holds G independent encoders of one width and depth (DMD's six cross-modal encoders, its
    three self-attention encoders, ...) with parameters stacked on a leading axis. When their inputs have one
    shape, the G encoders run as ONE batched encoder: each step is one kernel over G blocks instead of G
    small kernels. At MulT's widths (d = 30-100) on CPU the per-kernel overhead, not the arithmetic, dominated
    a DMD step (benchmarks/dmd_bench.py). Inputs of different lengths (unaligned data) run group by group on
    the same parameters.

    Args:
        embed_dim, num_heads, layers: width, heads, depth.
        attn_dropout: dropout on attention weights (training only); a tuple gives one rate per group.
        relu_dropout: dropout after the FFN's ReLU. res_dropout: dropout on each residual branch.
        embed_dropout: dropout on the embedded input(s).
        causal: reference ``attn_mask``: additive ``-inf`` above the diagonal offset ``1 + |Lk - Lq|``.
        groups: number of independent encoders.
    """

    def __init__(self, embed_dim: int, num_heads: int, layers: int, attn_dropout: float | tuple[float, ...] = 0.0,
                 relu_dropout: float = 0.0, res_dropout: float = 0.0, embed_dropout: float = 0.0,
                 causal: bool = True, groups: int = 1) -> None:
        super().__init__()
        self.embed_dim, self.groups = embed_dim, groups
        self.embed_scale = math.sqrt(embed_dim)
        self.embed_dropout = embed_dropout
        attn_dropout = _per_group(attn_dropout, groups)
        self.layers = nn.ModuleList(
            MulTLayer(embed_dim, num_heads, attn_dropout, relu_dropout, res_dropout, causal, groups)
            for _ in range(layers)
        )
        self.norm_weight, self.norm_bias = _group_param(groups, embed_dim, init="ones"), _group_param(groups, embed_dim, init="zeros")

    def embed(self, x: Tensor) -> Tensor:
        pos = sinusoidal_positions(x.shape[-3], self.embed_dim, device=x.device, dtype=x.dtype)
        return fast_dropout(self.embed_scale * x + pos[:, None, :], self.embed_dropout, self.training)

    def _run(self, x: Tensor, kv: Tensor | None, g: slice, last_only: bool = False) -> Tensor:
        x = self.embed(x)
        kv = None if kv is None else self.embed(kv)
        for i, layer in enumerate(self.layers):
            x = layer(x, kv, g, last_only=last_only and i == len(self.layers) - 1)
        return _layer_norm(x, self.norm_weight[g], self.norm_bias[g])

    def forward(self, x: Tensor, kv: Tensor | None = None, last_only: bool = False) -> Tensor:
        """One encoder (``groups=1``): ``x (Lq, B, D)``, optional ``kv (Lk, B, D)`` -> ``(Lq, B, D)``.
        A group: ``x (G, Lq, B, D)`` (and ``kv (G, Lk, B, D)``) -> ``(G, Lq, B, D)``.

        ``last_only``: the output at the last step only (length 1 instead of Lq), for readers of ``h[-1]``
        (DMD, the fusion baseline): the last layer then computes one query per sequence instead of Lq
        (attention row, out-projection, FFN), the earlier layers every step (the last step attends to them).
        Equal to ``forward(x, kv)[..., -1:, :, :]`` up to float rounding; in training the dropout masks differ.
        """
        if x.dim() == 3:
            if self.groups != 1:
                raise ValueError(f"a group of {self.groups} encoders takes (G, L, B, D) inputs; got {tuple(x.shape)}")
            return self._run(x[None], None if kv is None else kv[None], slice(None), last_only)[0]
        if x.shape[0] != self.groups:
            raise ValueError(f"expected {self.groups} groups on dim 0, got {tuple(x.shape)}")
        return self._run(x, kv, slice(None), last_only)

    def forward_each(self, xs: list[Tensor], kvs: list[Tensor] | None = None, last_only: bool = False) -> list[Tensor]:
        """Group ``i`` encodes ``xs[i] (Lq_i, B, D)`` (attending to ``kvs[i]``): batched when all shapes agree.
        ``last_only`` as in :meth:`forward` (each output ``(1, B, D)``)."""
        if len(xs) != self.groups or (kvs is not None and len(kvs) != self.groups):
            raise ValueError(f"expected {self.groups} inputs, got {len(xs)}")
        same = all(t.shape == xs[0].shape for t in xs) and (kvs is None or all(t.shape == kvs[0].shape for t in kvs))
        if same:
            return list(self(torch.stack(xs), None if kvs is None else torch.stack(kvs), last_only).unbind(0))
        return [self._run(x[None], None if kvs is None else kvs[i][None], slice(i, i + 1), last_only)[0]
                for i, x in enumerate(xs)]

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        own = {k[len(prefix):]: state_dict.pop(k) for k in list(state_dict) if k.startswith(prefix)}
        state_dict.update({prefix + k: v for k, v in _grouped_layout(own).items()})  # checkpoints before groups
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)


def _per_group(value: float | tuple[float, ...], groups: int) -> tuple[float, ...]:
    values = tuple(value) if isinstance(value, (tuple, list)) else (float(value),) * groups
    if len(values) != groups:
        raise ValueError(f"{len(values)} attention dropout rates for {groups} groups")
    return values


#: parameter names before groups (nn.Linear / nn.LayerNorm submodules) -> grouped names
_RENAMES = {f"{m}.{n}": f"{m}_{n}" for m in ("in_proj", "out_proj", "fc1", "fc2", "norm_attn", "norm_ffn", "norm")
            for n in ("weight", "bias")}


def _grouped_layout(state: dict[str, Tensor]) -> dict[str, Tensor]:
    """One encoder's state (keys relative to it) in the grouped layout: keys written before groups
    (``layers.0.in_proj.weight (3D, D)``, ``norm.weight (D,)``) become ``layers.0.in_proj_weight (1, 3D, D)``,
    ``norm_weight (1, D)``; grouped keys pass unchanged."""
    out = {}
    for key, value in state.items():
        head, _, leaf = key.rpartition(".")
        module, _, _ = head.rpartition(".")
        old = f"{head.rpartition('.')[2]}.{leaf}" if head else leaf  # "in_proj.weight" of "layers.0.in_proj.weight"
        if old in _RENAMES:
            out[f"{module}.{_RENAMES[old]}" if module else _RENAMES[old]] = value[None]
        else:
            out[key] = value
    return out


def stack_encoder_state(state_dict: dict, prefix: str, members: list[str]) -> None:
    """Merge the state of separate encoders ``prefix.member.*`` into one group's keys ``prefix.*``, members in
    order on the group axis: single encoders in the layout before groups (old checkpoints) or ``groups=1`` ones."""
    merged: dict[str, list[Tensor]] = {}
    for member in members:
        head = f"{prefix}.{member}."
        own = {k[len(head):]: state_dict.pop(k) for k in list(state_dict) if k.startswith(head)}
        for key, value in _grouped_layout(own).items():
            merged.setdefault(key, []).append(value)
    state_dict.update({f"{prefix}.{k}": torch.cat(parts) for k, parts in merged.items()})
