"""Plain late-fusion baseline: the DMD backbone without decoupling, cross-modal attention or distillation."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lightning_kd.methods.dmd.model import BackboneOptions
from lightning_kd.nn.mult import MulTEncoder, fast_dropout
from lightning_kd.nn.text import BertTextEncoder
from lightning_kd.options import options

MODALITIES = ("text", "audio", "vision")


class FusionNet(nn.Module):
    """Per-modality Conv1d projection and self-attention encoder, last steps concatenated, residual MLP head.

    It sees exactly the inputs DMD sees and has the same projection and encoder sizes, so the
    difference to DMD measures what decoupling + graph distillation add (DMD paper, Table 3 ablations
    start from such a backbone). Its options are DMD's :class:`BackboneOptions` (same fields, same defaults);
    ``overrides`` replace single fields (``FusionNet(dims, lens, hidden=8)``).
    """

    def __init__(self, feature_dims: dict[str, int], seq_lens: dict[str, int],
                 net: BackboneOptions | dict[str, Any] | None = None, **overrides: Any) -> None:
        super().__init__()
        o = self.options = options(BackboneOptions, net, **overrides)
        self.text_encoder = BertTextEncoder(o.text_encoder, o.finetune_text) if o.text_encoder else None
        text_dim = self.text_encoder.hidden_size if self.text_encoder else feature_dims["text"]
        dims = {"text": text_dim, "audio": feature_dims["audio"], "vision": feature_dims["vision"]}
        self.text_dropout, self.output_dropout = o.text_dropout, o.output_dropout
        hidden = o.hidden
        self.proj = nn.ModuleDict({m: nn.Conv1d(dims[m], hidden, k, bias=False)
                                   for m, k in zip(MODALITIES, o.kernel_sizes)})
        self.encoders = nn.ModuleDict({
            m: MulTEncoder(hidden, o.heads, o.layers, attn_dropout=o.attn_dropout, embed_dropout=o.embed_dropout)
            for m in MODALITIES
        })
        fused = 3 * hidden
        self.fc1, self.fc2, self.out = nn.Linear(fused, fused), nn.Linear(fused, fused), nn.Linear(fused, 1)

    def forward(self, inputs: dict[str, Tensor]) -> Tensor:
        text = self.text_encoder(inputs["text_bert"]) if self.text_encoder else inputs["text"]
        x = {"text": fast_dropout(text, self.text_dropout, self.training), "audio": inputs["audio"], "vision": inputs["vision"]}
        last = []
        for m in MODALITIES:
            h = self.proj[m](x[m].transpose(1, 2))  # (B, d, L')
            last.append(self.encoders[m](h.permute(2, 0, 1), last_only=True)[-1])  # last step (B, d)
        z = torch.cat(last, dim=-1)
        z = z + self.fc2(fast_dropout(F.relu(self.fc1(z)), self.output_dropout, self.training))
        return self.out(z).squeeze(-1)
