"""MT-PKDOT networks (Aslam et al., arXiv 2408.09035): one class for every stage, chosen by ``role``.

Parts (state-dict names are the same in every role, so a stage copies its predecessors' parts by name):

* ``encoders.visual``: the visual backbone, per-frame features ``(B, F, D)`` -> ``(B, dim)``: a temporal
  convolution + Transformer encoder (:class:`~lightning_kd.nn.sequence.ConvTransformerEncoder`), mean over frames,
  Linear to ``dim`` (the paper's R3D-18 on 112 px clips -> 512; here on per-frame features, Sec. "teachers").
* ``encoders.privileged``: the privileged backbone -> ``(B, dim)``: biosignals ``(B, C, T)`` through
  :class:`~lightning_kd.nn.biosignal.BiosignalEncoder` (``privileged_encoder: biosignal``; the paper's 1-channel
  ResNet-18 on an EMG spectrogram is ``kind: spectrogram``) or a frame sequence such as Aff-Wild2's log-mel audio
  ``(B, F, D_a)`` through the visual encoder's architecture (``sequence``).
* ``heads.visual`` / ``heads.privileged``: Linear(dim, outputs), the unimodal teachers' classifiers.
* ``fusion``: :class:`~lightning_kd.nn.fusion_transformer.FusionTransformer` (gated cross-attention, joint
  embedding + head). The teacher's fuses ``(v, p)``; the student's fuses ``(v_S, h(v_S))``.
* ``adapters.visual`` / ``adapters.privileged``: :class:`~lightning_kd.nn.fusion_transformer.Adapter`
  (dim -> dim / 2 -> dim + own head): the adapted unimodal teachers ``A_v(v)``, ``A_p(p)``.
* ``hallucination``: MLP ``dim -> hidden... -> dim`` mapping a visual embedding to a stand-in for the privileged one
  (released ``TransformNet``: eight Linear layers without any activation, i.e. one linear map of rank <= 256;
  here ReLU between layers by default, ``hallucination_activation: false`` gives the linear map).

Roles and the parts they build (the parts in brackets are copied from the stage's teachers and frozen):

=================  ==========================================================================================
``visual``         encoders.visual, heads.visual (also the visual-only baseline)
``privileged``     encoders.privileged, heads.privileged
``fusion``         [encoders.visual, encoders.privileged], fusion
``align``          [encoders.*], fusion (initialised from the fusion teacher, trained on), adapters
``hallucination``  [encoders.*], hallucination
``student``        [encoders.visual], [hallucination], fusion (fresh); reads the visual input only
=================  ==========================================================================================
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, NamedTuple

import torch
from torch import Tensor, nn

from lightning_kd.checkpoint import ConfigError
from lightning_kd.nn.biosignal import BiosignalEncoder, BiosignalEncoderOptions
from lightning_kd.nn.fusion_transformer import Adapter, FusionTransformer, FusionTransformerOptions
from lightning_kd.nn.sequence import ConvTransformerEncoder, masked_mean
from lightning_kd.options import options

__all__ = ["ROLES", "SOURCES", "MTPKDOTNet", "MTPKDOTNetOptions", "MTPKDOTOutput", "SequenceEmbedding",
           "SequenceEmbeddingOptions", "net_options", "role_inputs"]

ROLES = ("visual", "privileged", "fusion", "align", "hallucination", "student")
#: the parts each role copies from its teachers: role -> {teacher role: part prefixes}; the first matching teacher
#: role of each entry is used (the student takes its visual encoder from an ``align`` or a ``fusion`` teacher)
SOURCES: dict[str, dict[tuple[str, ...], tuple[str, ...]]] = {
    "visual": {}, "privileged": {},
    "fusion": {("visual",): ("encoders.visual.",), ("privileged",): ("encoders.privileged.",)},
    "hallucination": {("visual",): ("encoders.visual.",), ("privileged",): ("encoders.privileged.",)},
    "align": {("fusion", "align"): ("encoders.", "fusion.")},
    "student": {("align", "fusion"): ("encoders.visual.",), ("hallucination",): ("hallucination.",)},
}
_PARTS = {"visual": ("visual",), "privileged": ("privileged",), "fusion": ("visual", "privileged"),
          "align": ("visual", "privileged"), "hallucination": ("visual", "privileged"), "student": ("visual",)}


def role_parts(role: str) -> tuple[str, ...]:
    """The encoders (``visual`` / ``privileged``) a role builds."""
    try:
        return _PARTS[role]
    except KeyError:
        raise ConfigError(f"MT-PKDOT role must be one of {', '.join(ROLES)}, got {role!r}") from None


def role_inputs(role: str, visual: str, privileged: str) -> tuple[str, ...]:
    """The data inputs a role reads (the student reads the visual input only)."""
    names = {"visual": visual, "privileged": privileged}
    return tuple(names[p] for p in role_parts(role))


@dataclass(frozen=True)
class SequenceEmbeddingOptions:
    """Options of :class:`SequenceEmbedding`.

    Attributes:
        width: model width of the temporal encoder (64).
        heads / layers / kernel_size / dropout: its attention heads, Transformer layers, temporal kernel, dropout.
    """

    width: int = 64
    heads: int = 4
    layers: int = 1
    kernel_size: int = 3
    dropout: float = 0.1


class SequenceEmbedding(nn.Module):
    """``(B, F, D)`` frame features (+ optional ``(B, F)`` mask) -> ``(B, out_dim)``: Conv1d + positions +
    Transformer (:class:`~lightning_kd.nn.sequence.ConvTransformerEncoder`), masked mean over frames, Linear."""

    def __init__(self, in_dim: int, out_dim: int, opts: SequenceEmbeddingOptions | dict[str, Any] | None = None
                 ) -> None:
        super().__init__()
        o = options(SequenceEmbeddingOptions, opts)
        self.encoder = ConvTransformerEncoder(in_dim, o.width, o.heads, o.layers, o.kernel_size, o.dropout)
        self.out = nn.Linear(o.width, out_dim)
        self.out_dim = out_dim

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        if mask is None:
            mask = torch.ones(x.shape[:2], dtype=torch.bool, device=x.device)
        return self.out(masked_mean([self.encoder(x, mask)], [mask]))


@dataclass(frozen=True)
class MTPKDOTNetOptions:
    """Sizes of :class:`MTPKDOTNet` (defaults: the paper's 512-d embeddings).

    Attributes:
        dim: embedding width of both backbones, the fusion transformer and the adapters (512).
        outputs: classes (2: BL1 vs PA4) or regression outputs (2: valence, arousal).
        visual_input / privileged_input: the data's input names (``video``; ``bio`` for BioVid, ``audio`` for
            Aff-Wild2).
        privileged_encoder: ``biosignal`` (``(B, C, T)`` signals) or ``sequence`` (``(B, F, D)`` frame features).
        visual: :class:`SequenceEmbeddingOptions` of the visual backbone (and of a ``sequence`` privileged one).
        biosignal: :class:`~lightning_kd.nn.biosignal.BiosignalEncoderOptions` (``out_dim`` is set to ``dim``).
        fusion: :class:`~lightning_kd.nn.fusion_transformer.FusionTransformerOptions` (``dim`` is set to ``dim``).
        adapter_hidden: adapter bottleneck (None: ``dim // 2``, the released 512 -> 256 -> 512).
        hallucination_hidden: hidden widths of the hallucination MLP (released: 2048, 1024, 512, 256, 512, 1024,
            2048); hallucination_activation: ReLU between its layers (released: none).
    """

    dim: int = 512
    outputs: int = 2
    visual_input: str = "video"
    privileged_input: str = "bio"
    privileged_encoder: Literal["biosignal", "sequence"] = "biosignal"
    visual: SequenceEmbeddingOptions = field(default_factory=SequenceEmbeddingOptions)
    biosignal: BiosignalEncoderOptions = field(default_factory=BiosignalEncoderOptions)
    fusion: FusionTransformerOptions = field(default_factory=FusionTransformerOptions)
    adapter_hidden: int | None = None
    hallucination_hidden: tuple[int, ...] = (1024, 512)
    hallucination_activation: bool = True


class MTPKDOTOutput(NamedTuple):
    """What a forward pass gives.

    Attributes:
        logits: ``(B, outputs)`` of the role's prediction (unimodal head, fusion head).
        embedding: ``(B, dim)`` the role's last embedding (the fusion joint embedding where there is one).
        embeddings: named ``(B, dim)`` embeddings: ``visual``, ``privileged``, ``joint``, ``hallucinated``,
            ``adapted_visual``, ``adapted_privileged`` (those the role computes).
        logits_by_name: named ``(B, outputs)``: ``joint``, ``adapted_visual``, ``adapted_privileged`` (align).
    """

    logits: Tensor
    embedding: Tensor
    embeddings: dict[str, Tensor]
    logits_by_name: dict[str, Tensor]


def _mlp(dims: list[int], activation: bool) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(dims[:-1], dims[1:])):
        layers.append(nn.Linear(a, b))
        if activation and i < len(dims) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


class MTPKDOTNet(nn.Module):
    """The parts of a role (module docstring) and its forward pass.

    Args:
        feature_dims: input name -> feature size (``bio``: channels), linked from the datamodule.
        seq_lens: input name -> steps (``bio``: samples; the biosignal ``envelope`` encoder needs it).
        role: one of :data:`ROLES`.
        net: :class:`MTPKDOTNetOptions` (instance, mapping or None).
    """

    def __init__(self, feature_dims: dict[str, int], role: str = "visual",
                 net: MTPKDOTNetOptions | dict[str, Any] | None = None, seq_lens: dict[str, int] | None = None
                 ) -> None:
        super().__init__()
        n = self.options = net_options(net)
        self.role = role
        self.parts = role_parts(role)
        self.inputs = role_inputs(role, n.visual_input, n.privileged_input)
        missing = [m for m in self.inputs if m not in feature_dims]
        if missing:
            raise ConfigError(f"MT-PKDOT role {role!r} reads {', '.join(self.inputs)}; the data lacks "
                              f"{', '.join(missing)} (set model.init_args.net.visual_input / privileged_input to the "
                              f"datamodule's input names: {', '.join(feature_dims)})")
        d = n.dim
        self.encoders = nn.ModuleDict()
        if "visual" in self.parts:
            self.encoders["visual"] = SequenceEmbedding(feature_dims[n.visual_input], d, n.visual)
        if "privileged" in self.parts:
            if n.privileged_encoder == "biosignal":
                samples = (seq_lens or {}).get(n.privileged_input)
                self.encoders["privileged"] = BiosignalEncoder(feature_dims[n.privileged_input], n.biosignal, samples,
                                                               out_dim=d)
            elif n.privileged_encoder == "sequence":
                self.encoders["privileged"] = SequenceEmbedding(feature_dims[n.privileged_input], d, n.visual)
            else:
                raise ConfigError(f"MT-PKDOT privileged_encoder must be 'biosignal' or 'sequence', got "
                                  f"{n.privileged_encoder!r}")
        self.heads = nn.ModuleDict()
        if role in ("visual", "privileged"):
            self.heads[role] = nn.Linear(d, n.outputs)
        self.fusion = FusionTransformer(n.outputs, d, d, n.fusion, dim=d) \
            if role in ("fusion", "align", "student") else None
        self.adapters = nn.ModuleDict()
        if role == "align":
            hidden = n.adapter_hidden or d // 2
            self.adapters.update({p: Adapter(n.outputs, dim=d, hidden=hidden) for p in ("visual", "privileged")})
        self.hallucination = _mlp([d, *n.hallucination_hidden, d], n.hallucination_activation) \
            if role in ("hallucination", "student") else None

    def encode(self, inputs: dict[str, Tensor], masks: dict[str, Tensor] | None = None) -> dict[str, Tensor]:
        """Named backbone embeddings ``visual`` / ``privileged`` ``(B, dim)`` of the role's encoders."""
        n, masks = self.options, masks or {}
        out = {}
        for part, name in (("visual", n.visual_input), ("privileged", n.privileged_input)):
            if part in self.encoders:
                enc = self.encoders[part]
                x = inputs[name]
                out[part] = enc(x, masks.get(name)) if isinstance(enc, SequenceEmbedding) else enc(x)
        return out

    def forward(self, inputs: dict[str, Tensor], masks: dict[str, Tensor] | None = None) -> MTPKDOTOutput:
        emb = self.encode(inputs, masks)
        logits_by_name: dict[str, Tensor] = {}
        if self.role in ("visual", "privileged"):
            logits = self.heads[self.role](emb[self.role])
            return MTPKDOTOutput(logits, emb[self.role], emb, logits_by_name)
        if self.role == "hallucination":
            emb["hallucinated"] = self.hallucination(emb["visual"])
            return MTPKDOTOutput(emb["hallucinated"], emb["hallucinated"], emb, logits_by_name)
        if self.role == "student":
            emb["hallucinated"] = self.hallucination(emb["visual"])
            fused = self.fusion(emb["visual"], emb["hallucinated"])
        else:
            fused = self.fusion(emb["visual"], emb["privileged"])
        emb["joint"] = fused.joint
        logits_by_name["joint"] = fused.logits
        if self.role == "align":
            for part in ("visual", "privileged"):
                logits_by_name[f"adapted_{part}"], emb[f"adapted_{part}"] = self.adapters[part](emb[part])
        return MTPKDOTOutput(fused.logits, fused.joint, emb, logits_by_name)


def net_options(net: MTPKDOTNetOptions | dict[str, Any] | None) -> MTPKDOTNetOptions:
    """The options with their nested groups as dataclasses (a config or checkpoint gives them as mappings)."""
    n = options(MTPKDOTNetOptions, net)
    return options(MTPKDOTNetOptions, n, visual=options(SequenceEmbeddingOptions, n.visual),
                   biosignal=options(BiosignalEncoderOptions, n.biosignal),
                   fusion=options(FusionTransformerOptions, n.fusion))
