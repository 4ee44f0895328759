"""Plain late-fusion baseline: the DMD backbone without decoupling, cross-modal attention or distillation."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lightning_kd.nn.mult import MulTEncoder, fast_dropout
from lightning_kd.nn.text import BertTextEncoder

MODALITIES = ("text", "audio", "vision")


class FusionNet(nn.Module):
    """Per-modality Conv1d projection and self-attention encoder, last steps concatenated, residual MLP head.

    It sees exactly the inputs DMD sees and has the same projection and encoder sizes, so the
    difference to DMD measures what decoupling + graph distillation add (DMD paper, Table 3 ablations
    start from such a backbone).
    """

    def __init__(
        self,
        feature_dims: dict[str, int],
        seq_lens: dict[str, int],
        hidden: int = 50,
        heads: int = 10,
        layers: int = 4,
        kernel_sizes: tuple[int, int, int] = (5, 5, 5),
        text_dropout: float = 0.5,
        attn_dropout: float = 0.3,
        embed_dropout: float = 0.2,
        output_dropout: float = 0.5,
        text_encoder: str | None = None,
        finetune_text: bool = True,
    ) -> None:
        super().__init__()
        self.text_encoder = BertTextEncoder(text_encoder, finetune_text) if text_encoder else None
        text_dim = self.text_encoder.hidden_size if self.text_encoder else feature_dims["text"]
        dims = {"text": text_dim, "audio": feature_dims["audio"], "vision": feature_dims["vision"]}
        self.text_dropout, self.output_dropout = text_dropout, output_dropout
        self.proj = nn.ModuleDict({m: nn.Conv1d(dims[m], hidden, k, bias=False) for m, k in zip(MODALITIES, kernel_sizes)})
        self.encoders = nn.ModuleDict({
            m: MulTEncoder(hidden, heads, layers, attn_dropout=attn_dropout, embed_dropout=embed_dropout)
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
            last.append(self.encoders[m](h.permute(2, 0, 1))[-1])  # last step (B, d)
        z = torch.cat(last, dim=-1)
        z = z + self.fc2(fast_dropout(F.relu(self.fc1(z)), self.output_dropout, self.training))
        return self.out(z).squeeze(-1)
