"""MT-PKDOT's multimodal fusion transformer and adapters (Aslam et al., arXiv 2408.09035, Sec. "teachers";
sizes from the released code, haseebaslam95/MT-PKDOT ``models/models.py``, ``models/transformation_network.py``).

:class:`FusionTransformer` takes a visual embedding ``v`` and a privileged (physiological / audio) embedding
``p`` (``(B, D)`` vectors, or ``(B, T, D)`` token sequences of the same length ``T``):

* a self-attention block per modality (post-norm attention + feed-forward, ``nn.TransformerEncoderLayer``);
* bidirectional cross-attention: ``c_v = Attn(q = p, k = v = v)``, ``c_p = Attn(q = v, k = v = p)`` (the
  released code's naming: ``c_v`` carries visual content);
* gated combination ``g = sigmoid(W [c_v; c_p])``, ``joint = g c_v + (1 - g) c_p`` (``W: 2D -> 1``, a scalar
  gate per token, as released; ``gate="vector"``: ``2D -> D``); tokens are averaged into one ``(B, D)`` joint;
* a Linear head ``D -> num_outputs``.

Released-code defect not copied: its attention layers are ``batch_first=False`` and get ``(B, 1, D)``, so each
modality's self-attention attends ACROSS THE BATCH (sequence = batch). Here attention is within a sample.

:class:`Adapter`: ``Linear(D, hidden) -> Linear(hidden, D)`` (512 -> 256 -> 512, no activation in between, as
released) with its own classifier head ``Linear(D, num_outputs)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, NamedTuple

import torch
from torch import Tensor, nn

from lightning_kd.checkpoint import ConfigError
from lightning_kd.options import options

__all__ = ["Adapter", "AdapterOptions", "FusionOutput", "FusionTransformer", "FusionTransformerOptions"]


@dataclass(frozen=True)
class FusionTransformerOptions:
    """Options of :class:`FusionTransformer` (defaults: the released sizes).

    Attributes:
        dim: embedding width of both modalities inside the block (512).
        heads: attention heads (2; must divide ``dim``).
        ff: feed-forward width of the self-attention blocks (512).
        dropout: dropout in the attention layers (0.0, as released).
        gate: ``"scalar"`` (``W: 2D -> 1``, released) or ``"vector"`` (``W: 2D -> D``, one gate per feature).
    """

    dim: int = 512
    heads: int = 2
    ff: int = 512
    dropout: float = 0.0
    gate: Literal["scalar", "vector"] = "scalar"


class FusionOutput(NamedTuple):
    """Output of :class:`FusionTransformer`: ``logits (B, num_outputs)``, ``joint (B, D)``, ``gate`` ``(B, T, 1)``
    or ``(B, T, D)``."""

    logits: Tensor
    joint: Tensor
    gate: Tensor


def _tokens(x: Tensor, name: str) -> Tensor:
    if x.ndim == 2:
        return x.unsqueeze(1)
    if x.ndim == 3:
        return x
    raise ValueError(f"fusion transformer: the {name} input must be (B, D) or (B, T, D), got {tuple(x.shape)}")


class FusionTransformer(nn.Module):
    """Gated cross-attention fusion of a visual and a privileged embedding (see the module docstring).

    Args:
        num_outputs: width of the head (2 classes for Biovid BL1 vs PA4; 2 for valence/arousal).
        visual_dim / privileged_dim: input widths; a Linear projects an input whose width is not ``dim``
            (None: ``dim``).
        opts: :class:`FusionTransformerOptions` (instance, mapping or None); ``overrides`` replace single fields.
    """

    def __init__(self, num_outputs: int, visual_dim: int | None = None, privileged_dim: int | None = None,
                 opts: FusionTransformerOptions | dict[str, Any] | None = None, **overrides: Any) -> None:
        super().__init__()
        o = self.options = options(FusionTransformerOptions, opts, **overrides)
        if o.dim % o.heads:
            raise ConfigError(f"fusion transformer: heads {o.heads} must divide dim {o.dim}")
        if o.gate not in ("scalar", "vector"):
            raise ConfigError(f"fusion transformer: gate must be 'scalar' or 'vector', got {o.gate!r}")
        d = o.dim
        vd, pd = visual_dim or d, privileged_dim or d
        self.project_v = nn.Linear(vd, d) if vd != d else nn.Identity()
        self.project_p = nn.Linear(pd, d) if pd != d else nn.Identity()
        self.self_v = nn.TransformerEncoderLayer(d, o.heads, o.ff, o.dropout, batch_first=True)
        self.self_p = nn.TransformerEncoderLayer(d, o.heads, o.ff, o.dropout, batch_first=True)
        self.cross_v = nn.MultiheadAttention(d, o.heads, dropout=o.dropout, batch_first=True)
        self.cross_p = nn.MultiheadAttention(d, o.heads, dropout=o.dropout, batch_first=True)
        self.gate = nn.Linear(2 * d, 1 if o.gate == "scalar" else d)
        self.head = nn.Linear(d, int(num_outputs))
        self.dim = d

    def forward(self, visual: Tensor, privileged: Tensor) -> FusionOutput:
        """``visual``, ``privileged``: ``(B, D)`` or ``(B, T, D)`` -> :class:`FusionOutput`."""
        v = self.self_v(self.project_v(_tokens(visual, "visual")))
        p = self.self_p(self.project_p(_tokens(privileged, "privileged")))
        if v.shape[:2] != p.shape[:2]:
            raise ValueError(f"fusion transformer: visual {tuple(v.shape[:2])} and privileged {tuple(p.shape[:2])} "
                             f"need the same (batch, tokens)")
        c_v, _ = self.cross_v(p, v, v, need_weights=False)
        c_p, _ = self.cross_p(v, p, p, need_weights=False)
        g = torch.sigmoid(self.gate(torch.cat([c_v, c_p], dim=-1)))
        joint = (g * c_v + (1 - g) * c_p).mean(dim=1)
        return FusionOutput(self.head(joint), joint, g)


@dataclass(frozen=True)
class AdapterOptions:
    """Options of :class:`Adapter` (defaults: released sizes).

    Attributes:
        dim: input = output width (512).
        hidden: bottleneck width (256).
        activation: a ReLU between the two Linear layers (False: released, purely linear).
    """

    dim: int = 512
    hidden: int = 256
    activation: bool = False


class Adapter(nn.Module):
    """``(B, dim)`` -> ``(logits (B, num_outputs), adapted (B, dim))``: ``Linear -> Linear`` plus its own head."""

    def __init__(self, num_outputs: int, opts: AdapterOptions | dict[str, Any] | None = None,
                 **overrides: Any) -> None:
        super().__init__()
        o = self.options = options(AdapterOptions, opts, **overrides)
        self.adapt = nn.Sequential(nn.Linear(o.dim, o.hidden), nn.ReLU() if o.activation else nn.Identity(),
                                   nn.Linear(o.hidden, o.dim))
        self.head = nn.Linear(o.dim, int(num_outputs))

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        adapted = self.adapt(x)
        return self.head(adapted), adapted
