"""Missing modalities: frame dropping within a modality and removal of whole modalities.

One protocol for every sentiment model, used as train-time augmentation and as the evaluation
condition (CorrKD, CVPR 2024, Sec. 4.1 "intra-modality" and "inter-modality" missingness; MMSA's
``generate_m`` has the same frame rule):

* **Frame dropping** at rate ``p``: every *valid* step (``batch.masks`` True) of every available
  modality is dropped independently with probability ``p``. Feature frames become zeros; token ids
  (``text_bert``) become ``[UNK]`` (id 100), except ``[CLS]`` and ``[SEP]`` (the first and last valid
  token), as MMSA does. Padding is never touched. ``batch.masks`` is left as it is: the model is not
  told which frames were dropped (the realistic condition).
* **Modality removal**: a removed modality has all its valid steps dropped (zeros / ``[UNK]``) and an
  all-False mask (DESIGN.md data contract: "a whole missing modality is all-False").

Randomness is counter-based: the decision for (sample, modality, step) is a hash of
``(seed, sample index, modality, step)``, not a draw from a stateful generator. So an evaluation
condition gives the same mask for a sample whatever the batch size, the device, the number of DDP
ranks or the order of evaluation; the dropped set at rate ``p`` contains the dropped set at every
lower rate (common random numbers along the rate grid, which makes robustness curves smooth); and a
training run resumed from a checkpoint draws exactly the masks of an uninterrupted run (the training
key is ``(seed, epoch)``).

Seeds: training masks follow the run (``MissingAugmentation.seed = None``: the datamodule's seed, which
is ``--seed_everything`` unless pinned), so a multi-seed table varies them like initialisation and batch
order. Evaluation conditions are pinned on purpose (``MissingCondition.seed = 0``): they are part of the
test protocol, and every training seed is scored on the very same masked test set; set ``seed: null``
to let them follow the run instead.

Modality letters: ``l`` = text (``text`` or ``text_bert``), ``a`` = audio, ``v`` = vision.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
from torch import Tensor

from lightning_kd.data.batch import Batch
from lightning_kd.data.seeding import run_seed

__all__ = [
    "INCOMPLETE_SETTINGS",
    "MODALITY_SETTINGS",
    "MissingAugmentation",
    "MissingCondition",
    "apply_missing",
    "hash_uniform",
    "modality_letter",
]

#: every available-modality setting, the complete input last (CorrKD Table 1 column order)
MODALITY_SETTINGS: tuple[str, ...] = ("l", "a", "v", "la", "lv", "av", "lav")
#: the six settings with at least one modality missing
INCOMPLETE_SETTINGS: tuple[str, ...] = MODALITY_SETTINGS[:-1]
UNK_ID, PAD_ID = 100, 0  # BERT-base uncased vocabulary

_LETTER = {"text": "l", "text_bert": "l", "audio": "a", "vision": "v"}
_STREAM = {"l": 1, "a": 2, "v": 3, "rate": 4, "subset": 5}
_M32 = 0xFFFFFFFF


def modality_letter(name: str) -> str:
    """``text``/``text_bert`` -> ``l``, ``audio`` -> ``a``, ``vision`` -> ``v``."""
    try:
        return _LETTER[name]
    except KeyError:
        raise ValueError(f"no modality letter for input {name!r}; known inputs: {sorted(_LETTER)}") from None


def _check_setting(available: str) -> str:
    s = "".join(sorted(set(available), key="lav".index)) if set(available) <= set("lav") else None
    if not s:
        raise ValueError(f"available modalities must be a non-empty combination of 'l', 'a', 'v', got {available!r}")
    return s


# -- counter-based uniform numbers (int64 arithmetic on 32-bit values: no overflow, any device) -------
def _mul32(x: Tensor, c: int) -> Tensor:
    """``(x * c) mod 2**32`` for ``0 <= x < 2**32`` without leaving the int64 range."""
    lo, hi = x & 0xFFFF, x >> 16
    return (lo * c + (((hi * c) & 0xFFFF) << 16)) & _M32


def _hash32(x: Tensor) -> Tensor:
    """``lowbias32`` integer hash (C. Wellons): a bijection of 32-bit values with good avalanche."""
    x = x ^ (x >> 16)
    x = _mul32(x, 0x7FEB352D)
    x = x ^ (x >> 15)
    x = _mul32(x, 0x846CA68B)
    return x ^ (x >> 16)


def _key(*parts: int) -> int:
    h = 0x9E3779B9
    for p in parts:
        h = int(_hash32(torch.tensor([(h ^ (int(p) & _M32)) & _M32]))[0])
    return h


def hash_uniform(key: int, stream: int, index: Tensor, steps: int = 1) -> Tensor:
    """Uniform numbers in [0, 1) as a pure function of ``(key, stream, index, step)``.

    Args:
        key: run-level key (seed, epoch, ...), see :func:`_key`.
        stream: what the numbers are for (a modality, the per-sample rate, ...).
        index: ``(B,)`` sample indices.
        steps: number of steps per sample.

    Returns:
        ``(B, steps)`` float32, 24-bit resolution.
    """
    base = _hash32((index.long() & _M32) ^ _key(key, stream))  # (B,)
    st = _hash32(torch.arange(steps, device=index.device, dtype=torch.long) + 0x51ED27)  # (steps,)
    h = _hash32(base[:, None] ^ st[None, :])
    return (h >> 8).float() * (1.0 / (1 << 24))


# -- conditions ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class MissingCondition:
    """An evaluation condition: frame-drop rate and the modalities that are available.

    Args:
        rate: probability of dropping each valid step of each available modality (0 = complete frames).
        available: letters of the available modalities (``"lav"`` = all, ``"l"`` = text only, ...).
        seed: key of the counter-based randomness; the same seed gives the same masks. Pinned to 0 by
            default ON PURPOSE: the evaluation condition is part of the test protocol, so runs with different
            training seeds are scored on identical masks (the spread over seeds is the spread of training).
            ``None`` = follow the run: the datamodule's seed (``--seed_everything`` unless pinned).
    """

    rate: float = 0.0
    available: str = "lav"
    seed: int | None = 0

    def __post_init__(self) -> None:
        if not 0.0 <= self.rate <= 1.0:
            raise ValueError(f"missing rate must lie in [0, 1], got {self.rate}")
        object.__setattr__(self, "available", _check_setting(self.available))

    @property
    def is_complete(self) -> bool:
        return self.rate == 0.0 and self.available == "lav"

    def seeded(self, seed: int) -> MissingCondition:
        """This condition with ``seed`` filled in when it follows the run (``self.seed is None``)."""
        return self if self.seed is not None else replace(self, seed=int(seed))

    def apply(self, batch: Batch) -> Batch:
        """The batch under this condition (a new :class:`Batch`; the input is not modified).

        A condition that follows the run (``seed=None``) and was not :meth:`seeded` uses :func:`run_seed`.
        """
        if self.is_complete:
            return batch
        b = len(batch)
        dev = next(iter(batch.inputs.values())).device
        rate = torch.full((b,), float(self.rate), device=dev)
        keep = {m: torch.full((b,), m in self.available, device=dev, dtype=torch.bool) for m in "lav"}
        seed = self.seed if self.seed is not None else run_seed()
        return apply_missing(batch, rate, keep, _key(seed, 0x0E7A1))


@dataclass(frozen=True)
class MissingAugmentation:
    """Train-time missingness, drawn per sample and per epoch.

    Each sample gets its own frame-drop rate ``p ~ U(min_rate, max_rate)`` and, with probability
    ``modality_prob``, one of the six incomplete modality settings (uniformly) instead of the complete
    set. Draws depend on ``(seed, epoch, sample index)`` only, so resumed runs repeat them exactly, and
    they do not depend on the batch order or composition.

    Args:
        min_rate, max_rate: range of the per-sample frame-drop rate.
        modality_prob: probability that a sample loses whole modalities.
        seed: key of the counter-based randomness (combined with the epoch). ``None`` (default) = follow
            the run: the datamodule passes its seed down (``--seed_everything`` unless the datamodule's
            ``seed`` pins it), so each training seed sees other masks. An int pins the masks across seeds.
    """

    min_rate: float = 0.0
    max_rate: float = 0.0
    modality_prob: float = 0.0
    seed: int | None = None

    def __post_init__(self) -> None:
        if not 0.0 <= self.min_rate <= self.max_rate <= 1.0:
            raise ValueError(f"need 0 <= min_rate <= max_rate <= 1, got {self.min_rate}, {self.max_rate}")
        if not 0.0 <= self.modality_prob <= 1.0:
            raise ValueError(f"modality_prob must lie in [0, 1], got {self.modality_prob}")

    @property
    def is_identity(self) -> bool:
        return self.max_rate == 0.0 and self.modality_prob == 0.0

    def seeded(self, seed: int) -> MissingAugmentation:
        """This augmentation with ``seed`` filled in when it follows the run (``self.seed is None``)."""
        return self if self.seed is not None else replace(self, seed=int(seed))

    def apply(self, batch: Batch, epoch: int) -> Batch:
        """The augmented batch; ``batch.complete()`` gives the unmodified batch (for a teacher).

        An augmentation that follows the run (``seed=None``) and was not :meth:`seeded` uses :func:`run_seed`.
        """
        if self.is_identity:
            return batch
        if batch.index is None:
            raise ValueError("missing-modality augmentation needs batch.index (sample indices)")
        key = _key(self.seed if self.seed is not None else run_seed(), epoch, 0xA06)
        u = hash_uniform(key, _STREAM["rate"], batch.index)[:, 0]
        rate = self.min_rate + (self.max_rate - self.min_rate) * u
        pick = hash_uniform(key, _STREAM["subset"], batch.index, 2)
        incomplete = pick[:, 0] < self.modality_prob
        which = (pick[:, 1] * len(INCOMPLETE_SETTINGS)).long().clamp_max(len(INCOMPLETE_SETTINGS) - 1)
        table = torch.tensor([[m in s for m in "lav"] for s in INCOMPLETE_SETTINGS], device=which.device)
        chosen = table[which]  # (B, 3)
        keep = {m: torch.where(incomplete, chosen[:, j], torch.ones_like(incomplete)) for j, m in enumerate("lav")}
        return apply_missing(batch, rate, keep, key)


def apply_missing(batch: Batch, rate: Tensor, keep: dict[str, Tensor], key: int) -> Batch:
    """Drop frames at per-sample ``rate (B,)`` and remove modalities where ``keep[letter] (B,)`` is False.

    Returns a new :class:`Batch` whose ``complete_inputs`` / ``complete_masks`` are the original ones
    (``batch.complete()`` gives them back); masks of removed modalities are all-False. See the module docstring for the rules.
    """
    if batch.index is None:
        raise ValueError("missing-modality conditions need batch.index (sample indices): the drop masks are keyed "
                         "by sample, so that they do not depend on the batch composition")
    inputs: dict[str, Tensor] = {}
    masks = dict(batch.masks)
    for name, x in batch.inputs.items():
        letter = modality_letter(name)
        kept = keep[letter]
        valid = batch.masks.get(name)
        steps = x.shape[-1] if name == "text_bert" else x.shape[1]
        if valid is None:
            valid = torch.ones(x.shape[0], steps, dtype=torch.bool, device=x.device)
        u = hash_uniform(key, _STREAM[letter], batch.index, steps)
        drop = valid & ((u < rate[:, None]) | ~kept[:, None])
        if name == "text_bert":
            ids = x[:, 0]
            n_valid = valid.sum(1)
            pos = torch.arange(steps, device=x.device)[None, :]
            first = valid.long().argmax(1, keepdim=True)
            last = (first[:, 0] + n_valid - 1).clamp_min(0)[:, None]
            special = (pos == first) | (pos == last)  # [CLS] and [SEP] stay
            drop = drop & ~special
            x = torch.stack([torch.where(drop, torch.full_like(ids, UNK_ID), ids), x[:, 1], x[:, 2]], 1)
        else:
            x = x * (~drop).unsqueeze(-1).to(x.dtype)
        inputs[name] = x
        if name in masks:
            masks[name] = masks[name] & kept[:, None]
    orig = batch.complete()
    return replace(batch, inputs=inputs, masks=masks, complete_inputs=orig.inputs, complete_masks=orig.masks)
