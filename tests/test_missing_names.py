"""Missing-modality protocol over modalities by name (lightning_kd.data.missing, issue 9).

Pinned first: the text/audio/vision masks of today's protocol, bit for bit (the stored CorrKD results depend
on them); the values below were computed with the letter-only code before modalities became names.
"""

from __future__ import annotations

import pytest
import torch

from lightning_kd.data.batch import Batch
from lightning_kd.data.missing import MissingAugmentation, MissingCondition

pytestmark = pytest.mark.usefixtures("single_thread")

# -- l/a/v masks are bit-identical to the letter-only protocol ------------------------------------------------
PIN_INDEX = torch.tensor([0, 1, 7, 42, 1000, 123456])
PIN_STEPS = 16


def pin_batch(bert: bool) -> Batch:
    """Ones on every step; text / vision right padded, audio left padded, lengths per sample."""
    n, steps = len(PIN_INDEX), PIN_STEPS
    pos = torch.arange(steps)[None, :]
    lens = torch.tensor([16, 12, 9, 16, 5, 14])
    right, left = pos < lens[:, None], pos >= (steps - lens)[:, None]
    inputs = {"audio": torch.ones(n, steps, 2), "vision": torch.ones(n, steps, 3)}
    masks = {"audio": left, "vision": right.clone()}
    if bert:
        ids = torch.where(right, torch.full((n, steps), 2000), torch.zeros(n, steps, dtype=torch.long))
        ids[:, 0] = 101
        ids[torch.arange(n), lens - 1] = 102
        inputs = {"text_bert": torch.stack([ids, right.long(), torch.zeros_like(ids)], 1), **inputs}
        masks = {"text_bert": right.clone(), **masks}
    else:
        inputs = {"text": torch.ones(n, steps, 4), **inputs}
        masks = {"text": right.clone(), **masks}
    return Batch(inputs=inputs, masks=masks, target=torch.zeros(n), index=PIN_INDEX)


def bits(rows: torch.Tensor) -> list[int]:
    """(B, L) bool -> one int per row, bit i = step i."""
    return [sum(int(b) << i for i, b in enumerate(r)) for r in rows.tolist()]


def summary(out: Batch) -> dict[str, tuple[list[int], list[int]]]:
    """input -> (dropped steps, mask) as bit rows."""
    res = {}
    for k, x in out.inputs.items():
        dropped = (x[:, 0] == 100) if k == "text_bert" else (x == 0).all(-1)
        res[k] = (bits(dropped), bits(out.masks[k]))
    return res


PINNED = {
    "cond_0.5_lav_s0": {
        "text": ([10804, 2718, 204, 55556, 1, 6177], [65535, 4095, 511, 65535, 31, 16383]),
        "audio": ([53869, 34160, 20992, 4394, 12288, 10932], [65535, 65520, 65408, 65535, 63488, 65532]),
        "vision": ([38888, 940, 128, 22408, 30, 6017], [65535, 4095, 511, 65535, 31, 16383])},
    "cond_0.3_lv_s7": {
        "text": ([7104, 2896, 216, 10823, 17, 1040], [65535, 4095, 511, 65535, 31, 16383]),
        "audio": ([65535, 65520, 65408, 65535, 63488, 65532], [0, 0, 0, 0, 0, 0]),
        "vision": ([8448, 136, 320, 48642, 16, 1376], [65535, 4095, 511, 65535, 31, 16383])},
    "cond_0.6_a_s2_bert": {
        "text_bert": ([32766, 2046, 254, 32766, 14, 8190], [0, 0, 0, 0, 0, 0]),
        "audio": ([37526, 13968, 34176, 21203, 55296, 21680], [65535, 65520, 65408, 65535, 63488, 65532]),
        "vision": ([65535, 4095, 511, 65535, 31, 16383], [0, 0, 0, 0, 0, 0])},
    "aug_0.2_0.9_0.5_s4_e3": {
        "text": ([28109, 4095, 30, 65535, 16, 9547], [65535, 0, 511, 0, 31, 16383]),
        "audio": ([42732, 24304, 65408, 28671, 63488, 55020], [65535, 65520, 0, 65535, 0, 65532]),
        "vision": ([44031, 4095, 511, 65533, 31, 13293], [65535, 0, 0, 65535, 0, 16383])},
    "aug_0.0_1.0_0.9_s1_e0_bert": {
        "text_bert": ([32766, 154, 254, 6800, 14, 8190], [0, 4095, 0, 65535, 0, 0]),
        "audio": ([57728, 65520, 65408, 65535, 49152, 64], [65535, 0, 0, 0, 63488, 65532]),
        "vision": ([65535, 4095, 59, 42151, 31, 16383], [0, 0, 511, 65535, 0, 0])},
}


def pinned_cases() -> dict[str, Batch]:
    return {
        "cond_0.5_lav_s0": MissingCondition(0.5, "lav", seed=0).apply(pin_batch(False)),
        "cond_0.3_lv_s7": MissingCondition(0.3, "lv", seed=7).apply(pin_batch(False)),
        "cond_0.6_a_s2_bert": MissingCondition(0.6, "a", seed=2).apply(pin_batch(True)),
        "aug_0.2_0.9_0.5_s4_e3": MissingAugmentation(0.2, 0.9, 0.5, seed=4).apply(pin_batch(False), epoch=3),
        "aug_0.0_1.0_0.9_s1_e0_bert": MissingAugmentation(0.0, 1.0, 0.9, seed=1).apply(pin_batch(True), epoch=0),
    }


def test_text_audio_vision_masks_are_pinned() -> None:
    for name, out in pinned_cases().items():
        assert summary(out) == PINNED[name], name
