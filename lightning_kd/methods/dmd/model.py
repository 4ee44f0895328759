"""DMD network (Li, Wang, Cui: "Decoupled Multimodal Distilling for Emotion Recognition", CVPR 2023).

Plain ``nn.Module``; the GD-Units and the objective live in :mod:`lightning_kd.methods.dmd.losses`.
Every stacked output uses the official vertex order ``[L, V, A]`` = ``[text, vision, audio]``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lightning_kd.checkpoint import ConfigError
from lightning_kd.nn.mult import MulTEncoder, fast_dropout, stack_encoder_state
from lightning_kd.options import options

__all__ = ["BackboneOptions", "DMDNet", "DMDNetOptions", "DMDOutput", "MODALITIES"]

#: vertex order of every stacked output: [L, V, A]
MODALITIES: tuple[str, str, str] = ("text", "vision", "audio")


@dataclass(frozen=True)
class BackboneOptions:
    """Options of the projection + MulT backbone shared by DMD and the late-fusion baseline (defaults: the
    official DMD MOSI values, mdswyz/DMD ``config.json``).

    Attributes:
        hidden: d, width of every projected stream (official MOSI 50, MOSEI 30).
        heads: attention heads (MOSI 10, MOSEI 6).
        layers: MulT encoder depth (4).
        kernel_sizes: Conv1d projection kernels (text, audio, vision) (MOSI 5/5/5, MOSEI 5/1/3).
        text_dropout: dropout on the text input (MOSI 0.5, MOSEI 0.3).
        attn_dropout: attention dropout (text / default rate) (MOSI 0.3, MOSEI 0.4).
        embed_dropout: MulT embedding dropout (MOSI 0.2, MOSEI 0.0).
        output_dropout: dropout in the residual output heads (0.5).
        text_encoder: local HuggingFace BERT directory; when set, the text input is ``text_bert`` token ids.
        finetune_text: train the BERT encoder (official ``use_finetune=True``).
    """

    hidden: int = 50
    heads: int = 10
    layers: int = 4
    kernel_sizes: tuple[int, int, int] = (5, 5, 5)
    text_dropout: float = 0.5
    attn_dropout: float = 0.3
    embed_dropout: float = 0.2
    output_dropout: float = 0.5
    text_encoder: str | None = None
    finetune_text: bool = True


@dataclass(frozen=True)
class DMDNetOptions(BackboneOptions):
    """Options of :class:`DMDNet`: the backbone's plus DMD's own (official MOSI defaults).

    Attributes:
        attn_dropout_a: attention dropout of encoders whose source is audio (MOSI 0.2, MOSEI 0.0).
        attn_dropout_v: attention dropout of encoders whose source is vision (0.0).
        relu_dropout: MulT feed-forward dropout (0.0).
        res_dropout: MulT residual dropout (0.0).
        causal: MulT future mask (official ``attn_mask=True``).
    """

    attn_dropout_a: float = 0.2
    attn_dropout_v: float = 0.0
    relu_dropout: float = 0.0
    res_dropout: float = 0.0
    causal: bool = True


class DMDOutput(NamedTuple):
    """Outputs of :class:`DMDNet` (B = batch, d = hidden, L' = L - k + 1 per modality; order [L, V, A]).

    Attributes:
        prediction: ``(B,)`` fused prediction. logits_c: ``(B,)`` head on the attended shared features.
        logits_homo / reprs_homo: ``(3, B)`` / ``(3, B, d)`` homogeneous-branch vertices (homo GD-Unit).
        logits_hetero / reprs_hetero: ``(3, B)`` / ``(3, B, 2d)`` heterogeneous-branch vertices.
        proj, private, shared, private_recon, recon: per modality ``(B, d, L')``: the projected input
            ``X~_m``, private ``s_m``, shared ``c_m``, ``s_m`` re-encoded from the reconstruction, and
            the reconstruction of ``X~_m`` from ``[s_m; c_m]``.
        shared_sim: ``(3, B, d)`` Linear(d*L' -> d) projection of ``c_m`` for the similarity loss.
    """

    prediction: Tensor
    logits_c: Tensor
    logits_homo: Tensor
    reprs_homo: Tensor
    logits_hetero: Tensor
    reprs_hetero: Tensor
    proj: tuple[Tensor, Tensor, Tensor]
    private: tuple[Tensor, Tensor, Tensor]
    shared: tuple[Tensor, Tensor, Tensor]
    private_recon: tuple[Tensor, Tensor, Tensor]
    recon: tuple[Tensor, Tensor, Tensor]
    shared_sim: Tensor


class ResidualHead(nn.Module):
    """``h = x + W2 dropout(relu(W1 x))`` -> ``(Linear(h), h)`` (the official proj1/proj2/out_layer trio)."""

    def __init__(self, dim: int, dropout: float, out_dim: int = 1) -> None:
        super().__init__()
        self.proj1, self.proj2, self.out = nn.Linear(dim, dim), nn.Linear(dim, dim), nn.Linear(dim, out_dim)
        self.dropout = dropout

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        h = x + self.proj2(fast_dropout(F.relu(self.proj1(x)), self.dropout, self.training))
        return self.out(h), h


class HomoHead(nn.Module):
    """Homogeneous vertex on a flattened ``c_m``: ``r = relu(W1 flat)`` (the repr), ``h = flat + W2 dropout(r)``.

    official code: ``F.relu(repr, inplace=True)`` rectifies the returned representation in place, so the
    homo GD-Unit sees ``relu(W1 flat)``; we keep that behaviour explicitly.
    """

    def __init__(self, flat_dim: int, dim: int, dropout: float) -> None:
        super().__init__()
        self.proj1, self.proj2, self.out = nn.Linear(flat_dim, dim), nn.Linear(dim, flat_dim), nn.Linear(flat_dim, 1)
        self.dropout = dropout

    def forward(self, flat: Tensor) -> tuple[Tensor, Tensor]:
        r = F.relu(self.proj1(flat))
        h = flat + self.proj2(fast_dropout(r, self.dropout, self.training))
        return self.out(h).squeeze(-1), r


class DMDNet(nn.Module):
    """Decoupling + homogeneous/heterogeneous branches + gated fusion (paper Sec. 3.2 and Fig. 2).

    1. Text dropout on the text input (BERT features or a local BERT on ``text_bert`` ids).
    2. Temporal projection per modality: ``Conv1d(D_m -> d, k_m)``, no padding/bias -> ``X~_m (B, d, L')``.
    3. Decoupling: private ``s_m = E_m^prt(X~_m)``, ONE shared ``c_m = E^com(X~_m)`` (1x1 convs).
    4. Self-regression: ``recon_m = D_m([s_m; c_m])``; ``s_m_r = E_m^prt(recon_m)``.
    5. Homogeneous branch on ``c_m``: flatten -> :class:`HomoHead` (logit + repr for the homo GD-Unit);
       a self-attention :class:`MulTEncoder` per modality, last steps concatenated (3d) -> residual head
       -> ``logits_c``.
    6. Heterogeneous branch on ``s_m``: 6 cross-modal MulT encoders (target attends to source); per target
       the two results concatenated (2d) -> self-attention MulT (``max(layers, 3)`` layers) -> last step
       -> residual head; the residual-projected 2d vector is the hetero repr (as in the official code).
    7. Fusion: ``sigmoid(Linear(.))`` of each 2d hetero last step and of the 3d shared vector,
       concatenated (9d) -> residual head -> prediction. official code: the sigmoid outputs REPLACE the
       vectors (they are not multiplied with them); we do the same.

    Padding masks are not used: like the official model, attention runs over padded steps and the
    prediction reads the last (possibly padded) step. The projection is always applied (the official
    code skips it when ``D_m == d``, which would break its own flatten sizes).

    Args:
        feature_dims: modality -> feature size (``text`` or ``text_bert``, ``audio``, ``vision``); for
            ``text_bert`` the text size comes from the BERT encoder instead.
        seq_lens: modality -> padded length; flatten sizes are ``d * (L - k + 1)``.
        net: the :class:`DMDNetOptions` (an instance, a mapping of its fields, or None for the defaults);
            ``overrides`` replace single fields (``DMDNet(dims, lens, hidden=8)``). The attention dropout of
            a cross-modal encoder is that of its SOURCE modality.
    """

    def __init__(self, feature_dims: dict[str, int], seq_lens: dict[str, int],
                 net: DMDNetOptions | dict[str, Any] | None = None, **overrides: Any) -> None:
        super().__init__()
        o = self.options = options(DMDNetOptions, net, **overrides)
        text_encoder, layers, heads, output_dropout = o.text_encoder, o.layers, o.heads, o.output_dropout
        d = o.hidden
        self.hidden, self.text_dropout, self.output_dropout = d, o.text_dropout, output_dropout
        self.text_model: nn.Module | None = None
        if text_encoder:
            from lightning_kd.nn.text import BertTextEncoder

            self.text_model = BertTextEncoder(text_encoder, finetune=o.finetune_text)
            self.text_key = "text_bert"
            text_dim = self.text_model.hidden_size
        else:
            if "text" not in feature_dims and "text_bert" in feature_dims:
                raise ConfigError("the data gives BERT token ids (text: bert_ids) but no text encoder is set: set "
                                  "--model.init_args.net.text_encoder to a local BERT directory, or use text: features")
            self.text_key = "text"
            text_dim = _lookup(feature_dims, "text", "feature_dims")
        dims = {"text": text_dim, "audio": _lookup(feature_dims, "audio", "feature_dims"),
                "vision": _lookup(feature_dims, "vision", "feature_dims")}
        k_t, k_a, k_v = o.kernel_sizes
        kernels = {"text": k_t, "audio": k_a, "vision": k_v}
        lens = {"text": _lookup(seq_lens, self.text_key, "seq_lens", fallback="text" if text_encoder else "text_bert"),
                "audio": _lookup(seq_lens, "audio", "seq_lens"), "vision": _lookup(seq_lens, "vision", "seq_lens")}
        self.out_lens = {m: lens[m] - kernels[m] + 1 for m in MODALITIES}
        for m, n in self.out_lens.items():
            if n < 1:
                raise ValueError(f"{m}: sequence length {lens[m]} is shorter than its kernel size {kernels[m]}")
        adrop = {"text": o.attn_dropout, "audio": o.attn_dropout_a, "vision": o.attn_dropout_v}

        def mult(dim: int, attn: tuple[float, ...], n_layers: int = layers) -> MulTEncoder:
            return MulTEncoder(dim, heads, n_layers, attn_dropout=attn, relu_dropout=o.relu_dropout,
                               res_dropout=o.res_dropout, embed_dropout=o.embed_dropout, causal=o.causal,
                               groups=len(attn))

        def conv(i: int, o: int, k: int = 1) -> nn.Conv1d:
            return nn.Conv1d(i, o, kernel_size=k, padding=0, bias=False)

        def md(make) -> nn.ModuleDict:  # one module per modality
            return nn.ModuleDict({m: make(m) for m in MODALITIES})

        # 2-4: projection, decoupling, self-regression
        self.proj = md(lambda m: conv(dims[m], d, kernels[m]))
        self.encoder_private = md(lambda m: conv(d, d))
        self.encoder_shared = conv(d, d)
        self.decoder = md(lambda m: conv(2 * d, d))
        self.align_shared = md(lambda m: nn.Linear(d * self.out_lens[m], d))  # c_m -> similarity space
        # 5: homogeneous branch
        self.homo_head = md(lambda m: HomoHead(d * self.out_lens[m], d, output_dropout))
        # the per-modality (and per-pair) MulT encoders are groups: one batched encoder each (MulTEncoder)
        self.shared_attention = mult(d, tuple(adrop[m] for m in MODALITIES))
        self.shared_head = ResidualHead(3 * d, output_dropout)
        # 6: heterogeneous branch; cross group i: target t attends to source s for CROSS_PAIRS[i] = (t, s)
        self.cross = mult(d, tuple(adrop[src] for _, src in CROSS_PAIRS))
        self.hetero_memory = mult(2 * d, (o.attn_dropout,) * len(MODALITIES), max(layers, 3))
        self.hetero_head = md(lambda m: ResidualHead(2 * d, output_dropout))
        # 7: gated fusion
        self.gate = md(lambda m: nn.Linear(2 * d, 2 * d))
        self.gate_shared = nn.Linear(3 * d, 3 * d)
        self.fusion_head = ResidualHead(9 * d, output_dropout)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # checkpoints written before grouped encoders held one MulTEncoder per modality / pair
        stack_encoder_state(state_dict, prefix + "shared_attention", list(MODALITIES))
        stack_encoder_state(state_dict, prefix + "cross", [f"{t}.{s}" for t, s in CROSS_PAIRS])
        stack_encoder_state(state_dict, prefix + "hetero_memory", list(MODALITIES))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def forward(self, inputs: dict[str, Tensor]) -> DMDOutput:
        """Batch-first ``inputs``: ``text (B, L, D)`` or ``text_bert (B, 3, L)``; ``audio``/``vision (B, L_m, D_m)``."""
        if self.text_key not in inputs:
            raise KeyError(f"DMDNet expects inputs['{self.text_key}'] (text_encoder is "
                           f"{'set' if self.text_model is not None else 'not set'}); got {sorted(inputs)}")
        text = inputs[self.text_key]
        if self.text_model is not None:
            text = self.text_model(text)
        x = {"text": fast_dropout(text, self.text_dropout, self.training), "audio": inputs["audio"],
             "vision": inputs["vision"]}
        B = text.shape[0]

        proj = {m: self.proj[m](x[m].transpose(1, 2)) for m in MODALITIES}  # (B, d, L')
        s = {m: self.encoder_private[m](proj[m]) for m in MODALITIES}
        c = {m: self.encoder_shared(proj[m]) for m in MODALITIES}
        recon = {m: self.decoder[m](torch.cat([s[m], c[m]], dim=1)) for m in MODALITIES}
        s_r = {m: self.encoder_private[m](recon[m]) for m in MODALITIES}
        shared_sim = torch.stack([self.align_shared[m](c[m].reshape(B, -1)) for m in MODALITIES])

        # homogeneous branch (sequence-first copies for the transformers)
        c_seq = {m: c[m].permute(2, 0, 1) for m in MODALITIES}  # (L', B, d)
        homo = [self.homo_head[m](c_seq[m].transpose(0, 1).reshape(B, -1)) for m in MODALITIES]
        c_last = torch.cat([h[-1] for h in self.shared_attention.forward_each([c_seq[m] for m in MODALITIES], last_only=True)],
                           dim=-1)  # (B, 3d)
        logits_c, _ = self.shared_head(c_last)

        # heterogeneous branch
        s_seq = {m: s[m].permute(2, 0, 1) for m in MODALITIES}
        crossed = self.cross.forward_each([s_seq[t] for t, _ in CROSS_PAIRS], [s_seq[src] for _, src in CROSS_PAIRS])
        pairs = [torch.cat(crossed[2 * i: 2 * i + 2], dim=-1) for i in range(len(MODALITIES))]  # per target (L', B, 2d)
        last = {t: h[-1] for t, h in zip(MODALITIES, self.hetero_memory.forward_each(pairs, last_only=True))}  # (B, 2d)
        hetero = [self.hetero_head[m](last[m]) for m in MODALITIES]

        # fusion
        fused = torch.cat([torch.sigmoid(self.gate[m](last[m])) for m in MODALITIES]
                          + [torch.sigmoid(self.gate_shared(c_last))], dim=-1)  # (B, 9d)
        prediction, _ = self.fusion_head(fused)

        def order(dct: dict[str, Tensor]) -> tuple[Tensor, Tensor, Tensor]:
            return tuple(dct[m] for m in MODALITIES)

        return DMDOutput(
            prediction=prediction.squeeze(-1),
            logits_c=logits_c.squeeze(-1),
            logits_homo=torch.stack([lg for lg, _ in homo]),
            reprs_homo=torch.stack([r for _, r in homo]),
            logits_hetero=torch.stack([lg.squeeze(-1) for lg, _ in hetero]),
            reprs_hetero=torch.stack([r for _, r in hetero]),
            proj=order(proj), private=order(s), shared=order(c), private_recon=order(s_r), recon=order(recon),
            shared_sim=shared_sim,
        )


def _others(target: str) -> tuple[str, str]:
    """Source modalities of a target in the official concatenation order (L: A, V; A: L, V; V: L, A)."""
    return {"text": ("audio", "vision"), "audio": ("text", "vision"), "vision": ("text", "audio")}[target]


#: (target, source) of each cross-modal encoder, grouped by target in MODALITIES order
CROSS_PAIRS: tuple[tuple[str, str], ...] = tuple((t, s) for t in MODALITIES for s in _others(t))


def _lookup(table: dict[str, int], key: str, name: str, fallback: str | None = None) -> int:
    if key in table:
        return int(table[key])
    if fallback is not None and fallback in table:
        return int(table[fallback])
    raise KeyError(f"DMDNet: {name} has no entry for '{key}' (got {sorted(table)})")
