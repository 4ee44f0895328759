"""HuggingFace BERT text encoder over MMSA ``text_bert`` token ids, loaded from a local directory only."""

from __future__ import annotations

import contextlib
from pathlib import Path

import torch
from torch import Tensor, nn

__all__ = ["BertTextEncoder"]

_OPTION = "--model.init_args.net.text_encoder"


class BertTextEncoder(nn.Module):
    """BERT (or any ``AutoModel`` encoder) run on ``(B, 3, L)`` = (input ids, attention mask, token types).

    Weights come from ``path``, a local directory written by ``save_pretrained`` (``config.json`` +
    weights); nothing is ever downloaded.

    Args:
        path: local model directory.
        finetune: train the encoder (official DMD: ``use_finetune=True``). ``False`` freezes it and
            runs it under ``torch.no_grad``.
    """

    def __init__(self, path: str, finetune: bool = True) -> None:
        super().__init__()
        self.path = str(path)
        self.finetune = finetune
        p = Path(self.path).expanduser()
        hint = (f"set {_OPTION} to a local HuggingFace model directory (config.json + weights, e.g. written by "
                f"save_pretrained); weights are never downloaded")
        if not p.is_dir():
            raise FileNotFoundError(f"text encoder directory not found: '{self.path}'; {hint}")
        from transformers import AutoModel  # lazy: importing transformers is slow

        try:
            try:  # the pooler is never used: leave it out so every parameter gets a gradient (DDP)
                self.model = AutoModel.from_pretrained(str(p), local_files_only=True, add_pooling_layer=False)
            except TypeError:  # an encoder class without a pooler option
                self.model = AutoModel.from_pretrained(str(p), local_files_only=True)
        except (OSError, ValueError) as err:
            raise FileNotFoundError(f"cannot load a text encoder from '{self.path}' ({err}); {hint}") from err
        self.hidden_size: int = int(self.model.config.hidden_size)
        if not finetune:
            self.model.requires_grad_(False)

    def forward(self, text_bert: Tensor) -> Tensor:
        """``text_bert (B, 3, L)`` -> last hidden states ``(B, L, hidden_size)``."""
        ids, mask, types = text_bert[:, 0].long(), text_bert[:, 1].long(), text_bert[:, 2].long()
        ctx = contextlib.nullcontext() if self.finetune else torch.no_grad()
        with ctx:
            return self.model(input_ids=ids, attention_mask=mask, token_type_ids=types).last_hidden_state
