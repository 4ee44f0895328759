"""The one batch type every datamodule yields and every method reads (DESIGN.md, data contract)."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor


@dataclass
class Batch:
    """A mini-batch of multimodal samples.

    Attributes:
        inputs: modality name -> tensor, e.g. ``text (B, L_t, D_t)``, ``audio (B, L_a, D_a)``,
            ``vision (B, L_v, D_v)``; token ids as ``text_bert (B, 3, L)`` (ids, mask, segment ids).
        masks: modality name -> bool ``(B, L)``, True on valid steps; a missing modality is all-False.
        target: regression score ``(B,)``, class index ``(B,)`` or several targets ``(B, K)``.
        index: ``(B,)`` row numbers into the split; the datamodule maps them back to sample ids.
        complete_inputs / complete_masks: inputs and masks before missing-modality augmentation
            (``lightning_kd.data.missing``), for a teacher that must see complete data; ``None`` when
            nothing was dropped.
    """

    inputs: dict[str, Tensor]
    masks: dict[str, Tensor] = field(default_factory=dict)
    target: Tensor | None = None
    index: Tensor | None = None
    complete_inputs: dict[str, Tensor] | None = None
    complete_masks: dict[str, Tensor] | None = None

    def complete(self) -> Batch:
        """The batch as it was before missing-modality augmentation (itself when nothing was dropped)."""
        if self.complete_inputs is None:
            return self
        masks = self.masks if self.complete_masks is None else self.complete_masks
        return Batch(inputs=self.complete_inputs, masks=masks, target=self.target, index=self.index)

    def __len__(self) -> int:
        return next(iter(self.inputs.values())).shape[0]

    def to(self, device: torch.device | str) -> Batch:
        """Move every tensor to ``device`` (Lightning does this itself through ``transfer_batch_to_device``)."""
        return Batch(
            inputs={k: v.to(device) for k, v in self.inputs.items()},
            masks={k: v.to(device) for k, v in self.masks.items()},
            target=None if self.target is None else self.target.to(device),
            index=None if self.index is None else self.index.to(device),
            complete_inputs=None if self.complete_inputs is None
            else {k: v.to(device) for k, v in self.complete_inputs.items()},
            complete_masks=None if self.complete_masks is None
            else {k: v.to(device) for k, v in self.complete_masks.items()},
        )
