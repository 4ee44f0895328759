"""Reader of MMSA feature pickles (MOSI, MOSEI, CH-SIMS ``aligned_50.pkl`` / ``unaligned_50.pkl``).

Layout (DESIGN.md, data contract): a pickle of ``{"train", "valid", "test"}``, each a dict with
``text`` (N, L_t, 768) BERT features, ``text_bert`` (N, 3, L_t) token ids / attention mask / segment
ids (stored as floats), ``audio`` (N, L_a, D_a) (may hold -inf), ``vision`` (N, L_v, D_v),
``audio_lengths`` / ``vision_lengths`` (unaligned files only; lists or arrays of ints),
``regression_labels`` (N,), ``classification_labels``, ``annotations``, ``id``, ``raw_text``.
Arrays may be float64 and per-sample fields may be Python lists.

The file is unpickled by a restricted unpickler (numpy arrays, dtypes, scalars and plain containers only;
:mod:`lightning_kd.data.formats.safe_pickle`): a pickle that asks for anything else is refused, unrun.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from lightning_kd.checkpoint import DataFormatError
from lightning_kd.data.datamodule import SPLITS, InMemoryDataModule
from lightning_kd.data.formats.common import (
    check_label_range,
    first_nonfinite,
    float_array,
    format_error,
    load_pickle,
    nonfinite_error,
    require_keys,
    same_feature_sizes,
    same_sample_count,
    split_dict,
    split_dicts,
)
from lightning_kd.data.missing import MissingAugmentation, MissingCondition
from lightning_kd.data.split import SplitTensors, StorageDtype, check_mask_allocation

__all__ = ["MMSADataModule", "read_mmsa"]

FIX_FORMAT = (
    "check that this is an MMSA feature pickle (aligned_50.pkl / unaligned_50.pkl), "
    "or regenerate it with `lightning-kd generate mmsa --out FILE`"
)
FIX_FILE = (
    "re-download or re-copy the file (it may be truncated), "
    "or regenerate it with `lightning-kd generate mmsa --out FILE`"
)


def _err(path: Path, what: str, split: str | None = None, key: str | None = None, fix: str = FIX_FORMAT) -> DataFormatError:
    return format_error(path, what, split, key, fix)


def _load_pickle(path: Path) -> Any:
    return load_pickle(
        path,
        "MMSA feature pickle not found ({hint}). Fix: set `path` to an existing aligned_50.pkl / unaligned_50.pkl, "
        "or write a synthetic one with `lightning-kd generate mmsa --out {path}`.",
        FIX_FILE,
    )


def _float_array(path: Path, split: str, key: str, value: Any, ndim: int, shape: str) -> np.ndarray:
    return float_array(path, split, key, value, ndim, shape, FIX_FORMAT)


def _check_finite(path: Path, split: str, key: str, arr: np.ndarray) -> None:
    i = first_nonfinite(arr)
    if i is not None:
        raise nonfinite_error(path, split, key, arr, i, FIX_FILE)


def _lengths(path: Path, split: str, key: str, value: Any, max_len: int) -> np.ndarray:
    try:
        raw = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as e:
        raise _err(path, f"is not a list of integers ({type(e).__name__}: {e})", split, key) from e
    if raw.ndim != 1:
        raise _err(path, f"expected a 1-D list of lengths (N,), got shape {tuple(raw.shape)}", split, key)
    bad = ~np.isfinite(raw) | (raw != np.round(raw)) | (raw < 0)
    if bad.any():
        i = int(np.argmax(bad))
        raise _err(path, f"length {raw[i]:g} of sample {i} is not a non-negative integer", split, key)
    # MMSA's preprocessing stores the untruncated length while cutting features to the padded length,
    # so lengths above it are real (CH-SIMS): they mean "valid up to the end". 0 = modality absent.
    raw = np.minimum(raw, max_len)
    return raw.astype(np.int64)


def _ids(path: Path, split: str, value: Any) -> list[str]:
    try:
        items = list(np.asarray(value, dtype=object).ravel()) if not isinstance(value, list) else value
    except Exception as e:  # noqa: BLE001
        raise _err(path, f"is not a list of sample ids ({e})", split, "id") from e
    return [x.decode() if isinstance(x, bytes) else str(x) for x in items]


def _read_split(
    path: Path, split: str, d: Any, text: str, label_range: float
) -> SplitTensors:
    d = split_dict(path, split, d, FIX_FORMAT)  # keys are popped as they are converted, freeing float64 originals
    text_key = "text" if text == "features" else "text_bert"
    hint = " (this looks like a MulT-style pickle with `labels`, not an MMSA one)" if "labels" in d else ""
    require_keys(path, split, d, [text_key, "audio", "vision", "regression_labels", "id"], FIX_FORMAT, hint)

    inputs: dict[str, np.ndarray] = {}
    tb_mask: np.ndarray | None = None
    if "text_bert" in d:
        tb = _float_array(path, split, "text_bert", d.pop("text_bert"), 3, "(N, 3, L): ids, mask, segment ids")
        if tb.shape[1] != 3:
            raise _err(path, f"expected shape (N, 3, L) (ids, mask, segment ids), got {tuple(tb.shape)}", split, "text_bert")
        _check_finite(path, split, "text_bert", tb)
        tb_mask = tb[:, 1, :] != 0
        if text == "bert_ids":
            inputs["text_bert"] = tb
        del tb
    if text == "features":
        inputs["text"] = _float_array(path, split, "text", d.pop("text"), 3, "(N, L, 768)")
    d.pop("text", None)
    for key in ("audio", "vision"):
        inputs[key] = _float_array(path, split, key, d.pop(key), 3, f"(N, L_{key[0]}, D_{key[0]})")
    np.copyto(inputs["audio"], 0.0, where=np.isneginf(inputs["audio"]))  # COVAREP writes -inf

    try:
        target = np.asarray(d.pop("regression_labels"), dtype=np.float32)
    except (TypeError, ValueError) as e:
        raise _err(path, f"is not a numeric array ({e})", split, "regression_labels") from e
    if target.ndim == 2 and target.shape[1] == 1:
        target = target[:, 0]
    if target.ndim != 1:
        raise _err(path, f"expected shape (N,), got {tuple(target.shape)}", split, "regression_labels")
    ids = _ids(path, split, d.pop("id"))

    # one sample count for every key
    counts = {k: v.shape[0] for k, v in inputs.items()}
    counts.update({"regression_labels": target.shape[0], "id": len(ids)})
    if tb_mask is not None:
        counts["text_bert"] = tb_mask.shape[0]
    for key in ("audio_lengths", "vision_lengths"):
        if key in d:
            try:
                counts[key] = len(d[key])
            except TypeError as e:
                raise _err(path, "is not a list of lengths", split, key) from e
    same_sample_count(path, split, counts, FIX_FORMAT)

    check_mask_allocation(path, split, inputs)  # before the (N, L) masks: L comes from the file
    # masks
    text_len = inputs[text_key].shape[2] if text == "bert_ids" else inputs["text"].shape[1]
    if tb_mask is not None and tb_mask.shape[1] != text_len:
        raise _err(path, f"has {tb_mask.shape[1]} token steps but 'text' has {text_len}", split, "text_bert")
    if tb_mask is None:  # text features without token ids: valid = not all-zero
        tb_mask = np.any(inputs["text"] != 0, axis=-1)
    masks = {text_key: tb_mask}
    for key in ("audio", "vision"):
        steps = inputs[key].shape[1]
        lk = f"{key}_lengths"
        if lk in d:
            lens = _lengths(path, split, lk, d.pop(lk), steps)
            masks[key] = np.arange(steps)[None, :] < lens[:, None]
        elif steps == text_len:  # aligned file: word-aligned features share the text mask
            masks[key] = tb_mask.copy()  # own storage, so an in-place edit of one mask leaves the others
        else:
            raise _err(path, f"has {steps} steps but text has {text_len} and there is no {lk!r} "
                       "(aligned files need equal lengths, unaligned files need the *_lengths keys)", split, key)

    # values
    check_label_range(path, split, "regression_labels", target, label_range,
                      "set label_range to the data set's range (3.0 for MOSI/MOSEI, 1.0 for CH-SIMS); if it is "
                      f"right, the file is damaged: {FIX_FILE}")
    for key, arr in inputs.items():
        _check_finite(path, split, key, arr)

    tensors = {k: torch.from_numpy(v) for k, v in inputs.items()}
    if "text_bert" in tensors:
        tensors["text_bert"] = tensors["text_bert"].round().long()
    return SplitTensors(
        inputs=tensors,
        masks={k: torch.from_numpy(np.ascontiguousarray(v, dtype=bool)) for k, v in masks.items()},
        target=torch.from_numpy(np.ascontiguousarray(target)),
        ids=ids,
    )


def read_mmsa(
    path: str | Path,
    text: Literal["features", "bert_ids"] = "features",
    label_range: float = 3.0,
) -> dict[str, SplitTensors]:
    """Read an MMSA feature pickle into one :class:`SplitTensors` per split.

    Args:
        path: ``aligned_50.pkl`` / ``unaligned_50.pkl`` of MOSI, MOSEI or CH-SIMS (or a synthetic file).
        text: ``"features"`` gives ``inputs["text"]`` (N, L, 768) float32 BERT features; ``"bert_ids"``
            gives ``inputs["text_bert"]`` (N, 3, L) int64 (ids, attention mask, segment ids).
        label_range: labels must lie in ``[-label_range, label_range]`` (3 for MOSI/MOSEI, 1 for CH-SIMS).

    Returns:
        ``{"train", "valid", "test"} -> SplitTensors`` with float32 ``audio``/``vision`` (N, L, D)
        (audio -inf set to 0), bool masks (N, L) per input (text: attention mask of ``text_bert``;
        unaligned audio/vision: first ``*_lengths`` steps; aligned audio/vision: the text mask),
        ``target`` = ``regression_labels`` float32 (N,) and ``ids``.

    Raises:
        DataFormatError: the file is missing, unreadable or breaks the layout; the message names the
            file, split and key, and the fix.
    """
    if text not in ("features", "bert_ids"):
        raise ValueError(f"text must be 'features' or 'bert_ids', got {text!r}")
    path = Path(path)
    data = split_dicts(path, _load_pickle(path), FIX_FORMAT)  # the whole file, once
    out: dict[str, SplitTensors] = {}
    for split in SPLITS:
        out[split] = _read_split(path, split, data.pop(split), text, label_range)  # frees numpy as it goes
    del data

    # text_bert (N, 3, L): its feature axis is the 3 rows (ids, mask, segments)
    same_feature_sizes(path, out, FIX_FORMAT, lambda k, t: int(t.shape[1] if k == "text_bert" else t.shape[-1]))
    return out


class MMSADataModule(InMemoryDataModule):
    """MOSI / MOSEI / CH-SIMS from an MMSA feature pickle (``aligned_50.pkl`` / ``unaligned_50.pkl``).

    The whole file is read once by :func:`read_mmsa`. For CH-SIMS set ``label_range=1.0``.

    Args:
        path: the pickle.
        text: ``"features"`` (BERT features, input ``text``) or ``"bert_ids"`` (token ids, input ``text_bert``).
        label_range: allowed absolute label value.
        batch_size, seed, predict_split, eval_batch_size, train_missing, eval_missing, storage_dtype: see
            :class:`InMemoryDataModule` (``storage_dtype: float16`` halves the memory of the text features, the
            bulk of these files).
    """

    def __init__(
        self,
        path: str,
        text: Literal["features", "bert_ids"] = "features",
        label_range: float = 3.0,
        batch_size: int = 16,
        seed: int | None = None,
        predict_split: str = "test",
        eval_batch_size: int | None = None,
        train_missing: MissingAugmentation | None = None,
        eval_missing: MissingCondition | None = None,
        storage_dtype: StorageDtype = "float32",
    ) -> None:
        super().__init__(batch_size=batch_size, seed=seed, predict_split=predict_split, eval_batch_size=eval_batch_size,
                         train_missing=train_missing, eval_missing=eval_missing, storage_dtype=storage_dtype)
        self.path = path
        self.text = text
        self.label_range = label_range

    @property
    def target_kind(self) -> str:
        """``"score"``: ``regression_labels`` sentiment scores."""
        return "score"

    def load_splits(self) -> dict[str, SplitTensors]:
        return read_mmsa(self.path, text=self.text, label_range=self.label_range)
