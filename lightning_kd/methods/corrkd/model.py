"""CorrKD network (Li et al., CVPR 2024, Sec. 3.1): teacher and student share this architecture."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

import torch
from torch import Tensor, nn

from lightning_kd.nn.sequence import ConvTransformerEncoder, masked_mean
from lightning_kd.nn.text import BertTextEncoder
from lightning_kd.options import options

__all__ = ["CorrKDNet", "CorrKDNetOptions", "CorrKDOutput"]


class CorrKDOutput(NamedTuple):
    representation: Tensor  # (B, dim) joint representation h (input of SCD and CPD)
    logits: Tensor  # (B, tasks, classes) responses (input of the task loss and RCD)


@dataclass(frozen=True)
class CorrKDNetOptions:
    """Options of :class:`CorrKDNet` (teacher and student share them).

    Attributes:
        dim: width of every stream and of the joint representation (40 in the paper).
        heads: attention heads (10 / 8 / 10 for MOSI / MOSEI / IEMOCAP in HRLF).
        layers: Transformer layers per modality (not stated in the paper; our default 2).
        kernel_size: temporal convolution width (3).
        dropout: dropout in the encoders.
        head_dropout: dropout before the classifier.
        text_encoder: local BERT directory when the text input is ``text_bert`` token ids.
        finetune_text: train that BERT encoder.
    """

    dim: int = 40
    heads: int = 10
    layers: int = 2
    kernel_size: int = 3
    dropout: float = 0.1
    head_dropout: float = 0.1
    text_encoder: str | None = None
    finetune_text: bool = True


class CorrKDNet(nn.Module):
    """Per-modality Conv1d + positions + Transformer; streams concatenated and average-pooled; MLP head.

    Args:
        feature_dims: input name -> feature size (``text``/``text_bert``, ``audio``, ``vision``), linked
            from the datamodule.
        net: the :class:`CorrKDNetOptions` (instance, mapping or None); ``overrides`` replace single fields.
        tasks / classes: output shape; binary sentiment is 1 x 2, IEMOCAP is 4 emotions x 2 (set by the
            module from its ``task``).
    """

    def __init__(self, feature_dims: dict[str, int], net: CorrKDNetOptions | dict[str, Any] | None = None, *,
                 tasks: int = 1, classes: int = 2, **overrides: Any) -> None:
        super().__init__()
        o = self.options = options(CorrKDNetOptions, net, **overrides)
        dim = o.dim
        dims = dict(feature_dims)
        self.text_encoder = None
        if "text_bert" in dims:
            if o.text_encoder is None:
                raise ValueError("the data gives token ids (`text_bert`): set model.init_args.net.text_encoder to "
                                 "a local BERT directory, or read text features (`--data.init_args.text features`)")
            self.text_encoder = BertTextEncoder(o.text_encoder, o.finetune_text)
            dims["text_bert"] = self.text_encoder.hidden_size
        self.inputs = tuple(sorted(dims))
        self.encoders = nn.ModuleDict({m: ConvTransformerEncoder(dims[m], dim, o.heads, o.layers, o.kernel_size,
                                                                 o.dropout) for m in self.inputs})
        self.tasks, self.classes = tasks, classes
        self.head = nn.Sequential(nn.Linear(dim, dim), nn.ReLU(), nn.Dropout(o.head_dropout),
                                  nn.Linear(dim, tasks * classes))

    def forward(self, inputs: dict[str, Tensor], masks: dict[str, Tensor]) -> CorrKDOutput:
        states, valid = [], []
        for m in self.inputs:
            x = inputs[m]
            if m == "text_bert":
                x = self.text_encoder(x)
            mask = masks.get(m)
            if mask is None:
                mask = torch.ones(x.shape[:2], dtype=torch.bool, device=x.device)
            states.append(self.encoders[m](x, mask))
            valid.append(mask)
        h = masked_mean(states, valid)
        return CorrKDOutput(h, self.head(h).view(h.shape[0], self.tasks, self.classes))
