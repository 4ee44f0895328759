"""Missing modalities: frame dropping within a modality and removal of whole modalities.

One protocol for every model, used as train-time augmentation and as the evaluation condition (CorrKD,
CVPR 2024, Sec. 4.1 "intra-modality" and "inter-modality" missingness; MMSA's ``generate_m`` has the same
frame rule):

* **Frame dropping** at rate ``p``: every *valid* step (``batch.masks`` True) of every available
  modality is dropped independently with probability ``p``. Feature frames become zeros; token ids
  (``text_bert``) become ``[UNK]`` (id 100), except ``[CLS]`` and ``[SEP]`` (the first and last valid
  token), as MMSA does. Padding is never touched. ``batch.masks`` is left as it is: the model is not
  told which frames were dropped (the realistic condition).
* **Modality removal**: a removed modality has all its valid steps dropped (zeros / ``[UNK]``) and an
  all-False mask (DESIGN.md data contract: "a whole missing modality is all-False"). At evaluation the
  condition names the available modalities; in training a sample loses one of the ``2**n - 2`` incomplete
  subsets of the data's n modalities (:meth:`ModalityLayout.subsets` order: for text / audio / vision the
  six CorrKD settings l, a, v, la, lv, av).

Modalities are names. A datamodule declares them as a :class:`ModalityLayout`
(:attr:`~lightning_kd.data.datamodule.InMemoryDataModule.modality_layout`): the modalities in order, the
modality each input carries (one modality may be backed by several inputs: ``text`` is ``text`` features or
``text_bert`` token ids) and the axis each input's steps run along:

* a *step* is what one frame drop removes: a time step of a sequence ``(B, L, D)`` (axis 1), a token of
  ``text_bert (B, 3, L)`` (axis 2), a sample of ``eeg`` / ``bio (B, C, T)`` across all channels (axis 2). A mask in
  ``batch.masks`` is ``(B, L)`` along that axis;
* an input without a mask in ``batch.masks`` is fully valid along its step axis; once missingness is
  applied it gets one (``(B, L)``, all-True, all-False where its modality is removed), so a removal is always
  visible in the masks;
* every input must belong to a declared modality (an undeclared one is an error, not silently kept).
  Without a layout (``apply(batch)``), the layout is :data:`TEXT_AUDIO_VISION`.

A *setting* (which modalities are available) is written with names joined by ``+`` (``eeg+face``,
``face``, ``text+vision``) or, for text / audio / vision, with the CorrKD letters ``l`` = text, ``a`` = audio,
``v`` = vision (``lav``, ``lv``, and within names: ``l+eeg``); ``all`` is every modality of the data. A
condition keeps the style it was written in (letters sorted to l, a, v order; names as written, without
repeats). Labels of settings on a data set (:meth:`ModalityLayout.settings`, ``lightning-kd robustness``) are
letters on text / audio / vision data (``l`` ... ``lav``, as CorrKD and the stored results write them) and
names joined by ``+`` in the layout's order on any other (``eeg``, ``face``, ``eeg+face``). A modality name
must not consist of the letters l, a, v only, nor be ``all`` or ``avg``.

Randomness is counter-based: the decision for (sample, modality, step) is a hash of
``(seed, sample index, modality stream, step)``, not a draw from a stateful generator. So an evaluation
condition gives the same mask for a sample whatever the batch size, the device, the number of DDP
ranks or the order of evaluation; the dropped set at rate ``p`` contains the dropped set at every
lower rate (common random numbers along the rate grid, which makes robustness curves smooth); and a
training run resumed from a checkpoint draws exactly the masks of an uninterrupted run (the training
key is ``(seed, epoch)``). Each modality has its own stream (:func:`modality_stream`): text / audio /
vision keep the streams of their letters (their masks are those of the letter-only protocol, bit for
bit), the other names the project's data sets use have fixed streams, any other name a CRC-32 of it (never
Python's per-process ``hash``), so the masks do not change between runs or processes. Inputs of one
modality share its stream.

Seeds: training masks follow the run (``MissingAugmentation.seed = None``: the datamodule's seed, which
is ``--seed_everything`` unless pinned), so a multi-seed table varies them like initialisation and batch
order. Evaluation conditions are pinned on purpose (``MissingCondition.seed = 0``): they are part of the
test protocol, and every training seed is scored on the very same masked test set; set ``seed: null``
to let them follow the run instead.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from itertools import combinations

import torch
from torch import Tensor

from lightning_kd.data.batch import Batch
from lightning_kd.data.seeding import run_seed

__all__ = [
    "ALL",
    "INCOMPLETE_SETTINGS",
    "LETTERS",
    "MODALITY_SETTINGS",
    "TEXT_AUDIO_VISION",
    "MissingAugmentation",
    "MissingCondition",
    "ModalityLayout",
    "apply_missing",
    "default_step_axis",
    "hash_uniform",
    "input_modality",
    "modality_letter",
    "modality_stream",
    "parse_setting",
    "setting_label",
]

#: the CorrKD letters and the modality each stands for
LETTERS: dict[str, str] = {"l": "text", "a": "audio", "v": "vision"}
#: every available-modality setting of text/audio/vision data, the complete input last (CorrKD Table 1 order)
MODALITY_SETTINGS: tuple[str, ...] = ("l", "a", "v", "la", "lv", "av", "lav")
#: the six settings with at least one of text/audio/vision missing
INCOMPLETE_SETTINGS: tuple[str, ...] = MODALITY_SETTINGS[:-1]
#: the setting "every modality of the data"
ALL = "all"
UNK_ID, PAD_ID = 100, 0  # BERT-base uncased vocabulary

#: inputs whose name is not the name of the modality they carry
_INPUT_MODALITY = {"text_bert": "text"}
#: token-id inputs (B, 3, L): dropped tokens become [UNK], [CLS]/[SEP] stay
_TOKEN_INPUTS = frozenset({"text_bert"})
#: step axes that differ from 1, as the data contract lays the inputs out (DESIGN.md)
_STEP_AXIS = {"text_bert": 2, "eeg": 2, "bio": 2}
_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]*\Z")
_RESERVED = frozenset({ALL, "avg"})

_STREAM = {"l": 1, "a": 2, "v": 3, "rate": 4, "subset": 5}
#: hash streams of modalities: text/audio/vision keep their letters' streams; fixed ones for the names of the
#: project's data sets (DESIGN.md data contract); any other name: CRC-32 with the top bit set (never one of these)
_MODALITY_STREAM = {"text": 1, "audio": 2, "vision": 3, "eeg": 16, "face": 17, "video": 18, "bio": 19, "physio": 20}
_M32 = 0xFFFFFFFF


def modality_letter(name: str) -> str:
    """``text``/``text_bert`` -> ``l``, ``audio`` -> ``a``, ``vision`` -> ``v`` (the CorrKD letters)."""
    letter = {m: c for c, m in LETTERS.items()}.get(input_modality(name))
    if letter is None:
        raise ValueError(f"no modality letter for input {name!r}; letters exist for text (text, text_bert), audio "
                         "and vision only")
    return letter


def input_modality(name: str) -> str:
    """The modality an input carries by default: ``text_bert`` -> ``text``, any other input its own name."""
    return _INPUT_MODALITY.get(name, name)


def default_step_axis(name: str) -> int:
    """The axis an input's steps run along by default: 2 for ``text_bert (B, 3, L)``, ``eeg (B, C, T)`` and
    ``bio (B, C, T)``, else 1."""
    return _STEP_AXIS.get(name, 1)


def modality_stream(name: str) -> int:
    """The hash stream of a modality's frame drops: fixed for known names, CRC-32 (top bit set) for others."""
    if name in _MODALITY_STREAM:
        return _MODALITY_STREAM[name]
    return zlib.crc32(name.encode()) | 0x80000000


def _is_letters(token: str) -> bool:
    return bool(token) and set(token) <= set(LETTERS)


def parse_setting(setting: str) -> tuple[str, ...]:
    """Modality names of a setting, in the order written: ``"eeg+face"`` -> ``("eeg", "face")``,
    ``"lv"`` -> ``("text", "vision")``, ``"l+eeg"`` -> ``("text", "eeg")``; :data:`ALL` -> ``("all",)``."""
    if not isinstance(setting, str) or not setting.strip():
        raise ValueError(f"a modality setting must be a non-empty string such as 'lav', 'lv' or 'eeg+face', "
                         f"got {setting!r}")
    if setting.strip() == ALL:
        return (ALL,)
    names: list[str] = []
    for token in (t.strip() for t in setting.split("+")):
        if _is_letters(token) and token not in _RESERVED:
            names += [LETTERS[c] for c in token]
        elif _NAME.match(token) and token not in _RESERVED:
            names.append(token)
        else:
            raise ValueError(f"bad modality setting {setting!r}: {token!r} is not a modality name; write names "
                             "joined by '+' (e.g. 'eeg+face') or the letters l, a, v of text, audio, vision")
    return tuple(dict.fromkeys(names))


def setting_label(names: Iterable[str], order: Sequence[str] = ("text", "audio", "vision")) -> str:
    """How a setting of data with modalities ``order`` is written: in letters (l, a, v order) on text / audio /
    vision data, else the names joined by ``+`` in ``order`` (names not in ``order`` after, as given)."""
    names = tuple(dict.fromkeys(names))
    if not names:
        raise ValueError("a modality setting needs at least one available modality")
    if set(names) | set(order) <= set(LETTERS.values()):
        return "".join(c for c, m in LETTERS.items() if m in names)
    rank = {m: i for i, m in enumerate(order)}
    return "+".join(sorted(names, key=lambda m: rank.get(m, len(rank))))


@dataclass(frozen=True)
class ModalityLayout:
    """The modalities of a data set and how its inputs carry them.

    Args:
        modalities: modality names, in order (the order of settings and labels).
        inputs: input name -> the modality it carries; several inputs may carry one modality.
        step_axes: input name -> the axis its steps run along (masks are ``(B, L)`` along it); inputs not listed
            use :func:`default_step_axis`.
    """

    modalities: tuple[str, ...]
    inputs: Mapping[str, str]
    step_axes: Mapping[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "modalities", tuple(self.modalities))
        object.__setattr__(self, "inputs", dict(self.inputs))
        object.__setattr__(self, "step_axes", {k: default_step_axis(k) for k in self.inputs} | dict(self.step_axes))
        if not self.modalities or len(set(self.modalities)) != len(self.modalities):
            raise ValueError(f"modalities must be distinct names, got {self.modalities}")
        for m in self.modalities:
            if m not in LETTERS.values() and (not _NAME.match(m) or _is_letters(m) or m in _RESERVED):
                raise ValueError(f"bad modality name {m!r}: use a name such as 'eeg' (letters, digits, '_'; not "
                                 f"made of the letters l, a, v only, not {sorted(_RESERVED)})")
        unknown = {k: m for k, m in self.inputs.items() if m not in self.modalities}
        if unknown:
            raise ValueError(f"inputs {unknown} carry modalities that are not among {self.modalities}")
        bad = {k: a for k, a in self.step_axes.items() if not isinstance(a, int) or a < 1}
        if bad:
            raise ValueError(f"step axes must be >= 1 (axis 0 is the batch), got {bad}")

    @classmethod
    def of_inputs(cls, inputs: Iterable[str], step_axes: Mapping[str, int] | None = None) -> ModalityLayout:
        """The layout of inputs named by the data contract: modalities by :func:`input_modality`, in input order."""
        inputs = {k: input_modality(k) for k in inputs}
        return cls(tuple(dict.fromkeys(inputs.values())), inputs, step_axes or {})

    def modality(self, name: str) -> str:
        """The modality input ``name`` carries."""
        try:
            return self.inputs[name]
        except KeyError:
            raise ValueError(f"input {name!r} has no declared modality (declared inputs: {sorted(self.inputs)}). "
                             "Fix: declare it in the datamodule's `input_modalities`") from None

    def resolve(self, setting: str) -> frozenset[str]:
        """The available modalities of ``setting`` (names, letters or :data:`ALL`), checked against this layout."""
        names = parse_setting(setting)
        if names == (ALL,):
            return frozenset(self.modalities)
        unknown = [m for m in names if m not in self.modalities]
        if unknown:
            raise ValueError(f"modality setting {setting!r} names {', '.join(unknown)}, which the data does not have "
                             f"(modalities: {', '.join(self.modalities)})")
        return frozenset(names)

    def label(self, setting: str | Iterable[str]) -> str:
        """The canonical label of a setting on this data (``face+eeg`` -> ``eeg+face``, ``all`` -> ``lav``)."""
        names = self.resolve(setting) if isinstance(setting, str) else setting
        return setting_label([m for m in self.modalities if m in names], self.modalities)

    def subsets(self) -> tuple[tuple[str, ...], ...]:
        """Every non-empty subset of the modalities: by size, then in modality order; the complete set last."""
        ms = self.modalities
        return tuple(c for k in range(1, len(ms) + 1) for c in combinations(ms, k))

    def settings(self) -> tuple[str, ...]:
        """Labels of :meth:`subsets` (``MODALITY_SETTINGS`` for text / audio / vision)."""
        return tuple(setting_label(s, self.modalities) for s in self.subsets())

    def incomplete_settings(self) -> tuple[str, ...]:
        """The settings with at least one modality missing."""
        return self.settings()[:-1]

    def step_axis(self, name: str, x: Tensor) -> int:
        axis = self.step_axes.get(name, default_step_axis(name))
        if axis >= x.dim():
            raise ValueError(f"input {name!r} {tuple(x.shape)} has no step axis {axis}; declare its step axis in the "
                             "datamodule's `step_axes`")
        return axis


#: the layout of text / audio / vision data (MMSA, MulT-style, synthetic): inputs text or text_bert, audio, vision
TEXT_AUDIO_VISION = ModalityLayout(("text", "audio", "vision"),
                                   {"text": "text", "text_bert": "text", "audio": "audio", "vision": "vision"})


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
        stream: what the numbers are for (a modality, :func:`modality_stream`; the per-sample rate, ...).
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
        available: the available modalities, a setting (module docstring): ``"all"`` (default), names
            (``"eeg+face"``, ``"face"``) or text/audio/vision letters (``"lav"`` = all, ``"l"`` = text only, ...).
        seed: key of the counter-based randomness; the same seed gives the same masks. Pinned to 0 by
            default ON PURPOSE: the evaluation condition is part of the test protocol, so runs with different
            training seeds are scored on identical masks (the spread over seeds is the spread of training).
            ``None`` = follow the run: the datamodule's seed (``--seed_everything`` unless pinned).
    """

    rate: float = 0.0
    available: str = ALL
    seed: int | None = 0

    def __post_init__(self) -> None:
        if not 0.0 <= self.rate <= 1.0:
            raise ValueError(f"missing rate must lie in [0, 1], got {self.rate}")
        names = parse_setting(self.available)
        letters = _is_letters(self.available.strip()) and names != (ALL,)
        object.__setattr__(self, "available", setting_label(names) if letters else "+".join(names))

    @property
    def is_complete(self) -> bool:
        """Complete data on any layout (rate 0, ``all``; ``lav`` on text/audio/vision data)."""
        return self.rate == 0.0 and self.available in (ALL, MODALITY_SETTINGS[-1])

    def seeded(self, seed: int) -> MissingCondition:
        """This condition with ``seed`` filled in when it follows the run (``self.seed is None``)."""
        return self if self.seed is not None else replace(self, seed=int(seed))

    def apply(self, batch: Batch, layout: ModalityLayout | None = None) -> Batch:
        """The batch under this condition (a new :class:`Batch`; the input is not modified).

        ``layout``: the data's modalities (default :data:`TEXT_AUDIO_VISION`). A condition that follows the run
        (``seed=None``) and was not :meth:`seeded` uses :func:`run_seed`.
        """
        layout = layout or TEXT_AUDIO_VISION
        available = layout.resolve(self.available)
        if self.rate == 0.0 and available == set(layout.modalities):
            return batch
        b = len(batch)
        dev = next(iter(batch.inputs.values())).device
        rate = torch.full((b,), float(self.rate), device=dev)
        keep = {m: torch.full((b,), m in available, device=dev, dtype=torch.bool) for m in layout.modalities}
        seed = self.seed if self.seed is not None else run_seed()
        return apply_missing(batch, rate, keep, _key(seed, 0x0E7A1), layout)


@dataclass(frozen=True)
class MissingAugmentation:
    """Train-time missingness, drawn per sample and per epoch.

    Each sample gets its own frame-drop rate ``p ~ U(min_rate, max_rate)`` and, with probability
    ``modality_prob``, one of the incomplete modality settings (uniformly; the six of text / audio / vision,
    ``2**n - 2`` for n modalities, in :meth:`ModalityLayout.incomplete_settings` order) instead of the complete
    set. Draws depend on ``(seed, epoch, sample index)`` only, so resumed runs repeat them exactly, and
    they do not depend on the batch order or composition.

    Args:
        min_rate, max_rate: range of the per-sample frame-drop rate.
        modality_prob: probability that a sample loses whole modalities (needs two modalities or more).
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

    def apply(self, batch: Batch, epoch: int, layout: ModalityLayout | None = None) -> Batch:
        """The augmented batch; ``batch.complete()`` gives the unmodified batch (for a teacher).

        ``layout``: the data's modalities (default :data:`TEXT_AUDIO_VISION`). An augmentation that follows the
        run (``seed=None``) and was not :meth:`seeded` uses :func:`run_seed`.
        """
        if self.is_identity:
            return batch
        if batch.index is None:
            raise ValueError("missing-modality augmentation needs batch.index (sample indices)")
        layout = layout or TEXT_AUDIO_VISION
        subsets = layout.subsets()[:-1]
        if self.modality_prob > 0 and not subsets:
            raise ValueError(f"modality_prob {self.modality_prob} removes whole modalities, but the data has one "
                             f"modality ({layout.modalities[0]}). Fix: set train_missing.modality_prob to 0")
        key = _key(self.seed if self.seed is not None else run_seed(), epoch, 0xA06)
        u = hash_uniform(key, _STREAM["rate"], batch.index)[:, 0]
        rate = self.min_rate + (self.max_rate - self.min_rate) * u
        pick = hash_uniform(key, _STREAM["subset"], batch.index, 2)
        incomplete = pick[:, 0] < self.modality_prob
        which = (pick[:, 1] * max(len(subsets), 1)).long().clamp_max(max(len(subsets) - 1, 0))
        table = torch.tensor([[m in s for m in layout.modalities] for s in subsets] or [[True] * len(layout.modalities)],
                             device=which.device)
        chosen = table[which]  # (B, n modalities)
        keep = {m: torch.where(incomplete, chosen[:, j], torch.ones_like(incomplete))
                for j, m in enumerate(layout.modalities)}
        return apply_missing(batch, rate, keep, key, layout)


def apply_missing(batch: Batch, rate: Tensor, keep: Mapping[str, Tensor], key: int,
                  layout: ModalityLayout | None = None) -> Batch:
    """Drop frames at per-sample ``rate (B,)`` and remove modalities where ``keep[modality] (B,)`` is False.

    ``keep`` is keyed by modality name (the letters l, a, v stand for text, audio, vision); ``layout`` gives each
    input's modality and step axis (default :data:`TEXT_AUDIO_VISION`). Returns a new :class:`Batch` whose
    ``complete_inputs`` / ``complete_masks`` are the original ones (``batch.complete()`` gives them back); masks
    of removed modalities are all-False. See the module docstring for the rules.
    """
    if batch.index is None:
        raise ValueError("missing-modality conditions need batch.index (sample indices): the drop masks are keyed "
                         "by sample, so that they do not depend on the batch composition")
    layout = layout or TEXT_AUDIO_VISION
    keep = {LETTERS.get(k, k): v for k, v in keep.items()}
    inputs: dict[str, Tensor] = {}
    masks = dict(batch.masks)
    for name, x in batch.inputs.items():
        modality = layout.modality(name)
        if modality not in keep:
            raise ValueError(f"apply_missing: no keep flags for modality {modality!r} (input {name!r})")
        kept = keep[modality]
        axis = layout.step_axis(name, x)
        steps = x.shape[axis]
        valid = batch.masks.get(name)
        if valid is None:
            valid = torch.ones(x.shape[0], steps, dtype=torch.bool, device=x.device)
        elif valid.shape != (x.shape[0], steps):
            raise ValueError(f"mask of input {name!r} is {tuple(valid.shape)}, but its steps (axis {axis} of "
                             f"{tuple(x.shape)}) need ({x.shape[0]}, {steps}); declare its step axis in the "
                             "datamodule's `step_axes`")
        u = hash_uniform(key, modality_stream(modality), batch.index, steps)
        drop = valid & ((u < rate[:, None]) | ~kept[:, None])
        if name in _TOKEN_INPUTS:
            ids = x[:, 0]
            n_valid = valid.sum(1)
            pos = torch.arange(steps, device=x.device)[None, :]
            first = valid.long().argmax(1, keepdim=True)
            last = (first[:, 0] + n_valid - 1).clamp_min(0)[:, None]
            special = (pos == first) | (pos == last)  # [CLS] and [SEP] stay
            drop = drop & ~special
            x = torch.stack([torch.where(drop, torch.full_like(ids, UNK_ID), ids), x[:, 1], x[:, 2]], 1)
        else:
            shape = [x.shape[0]] + [1] * (x.dim() - 1)
            shape[axis] = steps
            x = x * (~drop).view(shape).to(x.dtype)
        inputs[name] = x
        masks[name] = valid & kept[:, None]
    orig = batch.complete()
    return replace(batch, inputs=inputs, masks=masks, complete_inputs=orig.inputs, complete_masks=orig.masks)
