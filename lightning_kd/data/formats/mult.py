"""Reader of MulT-style pickles (``mosi_data.pkl``, ``mosei_senti_data.pkl``, ``iemocap_data.pkl`` and the
``*_data_noalign.pkl`` variants, as distributed with the Multimodal Transformer code).

Layout: a pickle of ``{"train", "valid", "test"}``, each a dict with ``text`` (N, L_t, 300) GloVe,
``audio`` (N, L_a, 74) COVAREP (may hold -inf), ``vision`` (N, L_v, 35) Facet (may be float64),
``labels`` and ``id``. Sequences are zero padded (MulT pads at the start) and there are no length keys.

* IEMOCAP: ``labels`` (N, 4, 2), one-hot per emotion in the order :data:`EMOTIONS`
  (``[1, 0]`` = absent, ``[0, 1]`` = present); aligned length 20, splits 2717 / 798 / 938. A sample may have
  no emotion present or several: the reader keeps them as they are (``target`` (N, 4) 0/1, never an argmax),
  counts them per split (:func:`emotion_label_counts`, :attr:`MulTDataModule.label_counts`) and logs one
  warning line per split that holds any.
* MOSI / MOSEI: ``labels`` (N, 1, 1) sentiment scores in [-3, 3].
* ``id``: rows of byte strings (video id, start, end) or plain strings; MulT's own loader treats the key
  as optional, so a split without it gets ids ``"<split>_<row>"``.

The file is unpickled by a restricted unpickler (numpy arrays, dtypes, scalars and plain containers only;
:mod:`lightning_kd.data.formats.safe_pickle`): a pickle that asks for anything else is refused, unrun.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from lightning_kd.checkpoint import DataFormatError
from lightning_kd.data.datamodule import SPLITS, InMemoryDataModule
from lightning_kd.data.formats.common import (
    check_label_range,
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

__all__ = ["EMOTIONS", "MulTDataModule", "emotion_label_counts", "read_mult"]

log = logging.getLogger(__name__)

#: IEMOCAP emotions in MulT's order of the labels' axis 1 (the columns of an emotion ``target``)
EMOTIONS: tuple[str, ...] = ("Neutral", "Happy", "Sad", "Angry")

Task = Literal["auto", "emotion", "sentiment"]
MODALITIES = ("text", "audio", "vision")

FIX_FORMAT = (
    "check that this is a MulT pickle (mosi_data.pkl, mosei_senti_data.pkl, iemocap_data.pkl or *_data_noalign.pkl), "
    "or regenerate it with `lightning-kd generate mult --dataset iemocap --out FILE`"
)
FIX_FILE = (
    "re-download or re-copy the file (it may be truncated), "
    "or regenerate it with `lightning-kd generate mult --dataset iemocap --out FILE`"
)
_FIX_TASK = (
    "set task to fit the file ('auto' decides from the labels' shape; every split must hold the same kind of "
    f"labels), or {FIX_FORMAT}"
)
_CHUNK = 256  # samples per chunk of the per-sample scans (bounds temporary memory)


def _err(path: Path, what: str, split: str | None = None, key: str | None = None, fix: str = FIX_FORMAT) -> DataFormatError:
    return format_error(path, what, split, key, fix)


def _load(path: Path) -> Any:
    return load_pickle(
        path,
        "MulT pickle not found ({hint}). Fix: set `path` to an existing mosi_data.pkl / mosei_senti_data.pkl / "
        "iemocap_data.pkl (or a *_data_noalign.pkl), or write a synthetic one with "
        "`lightning-kd generate mult --dataset iemocap --out {path}`.",
        FIX_FILE,
    )


def _features(path: Path, split: str, key: str, value: Any) -> np.ndarray:
    """(N, L, D) float32, C-contiguous, writable."""
    return float_array(path, split, key, value, 3, "(N, L, D)", FIX_FORMAT)


def _scan(arr: np.ndarray) -> tuple[np.ndarray, int | None]:
    """Per-step "any nonzero feature" mask (N, L) and the first sample holding NaN/inf (or None)."""
    mask = np.empty(arr.shape[:2], dtype=bool)
    bad: int | None = None
    for start in range(0, arr.shape[0], _CHUNK):
        chunk = arr[start : start + _CHUNK]
        np.any(chunk != 0, axis=-1, out=mask[start : start + _CHUNK])
        if bad is None:
            ok = np.isfinite(chunk).all(axis=(1, 2))
            if not ok.all():
                bad = start + int(np.argmin(ok))
    return mask, bad


def _ids(path: Path, split: str, value: Any) -> list[str]:
    """Sample ids: rows of (byte) strings joined with ``_``, or one (byte) string per sample."""

    def text(x: Any) -> str:
        return x.decode("utf-8", "replace") if isinstance(x, bytes) else str(x)

    try:
        rows = list(value)
    except TypeError as e:
        raise _err(path, f"is not a list of sample ids ({type(value).__name__})", split, "id") from e
    return ["_".join(text(x) for x in row) if isinstance(row, (list, tuple, np.ndarray)) else text(row) for row in rows]


def _labels(path: Path, split: str, value: Any, task: Task, label_range: float) -> tuple[np.ndarray, str]:
    """(target, task): emotion -> (N, 4) int64 in {0, 1}; sentiment -> (N,) float32."""
    try:
        y = np.asarray(value, dtype=np.float32)
    except (TypeError, ValueError) as e:
        raise _err(path, f"is not a numeric array ({type(e).__name__}: {e})", split, "labels") from e
    emotion_shape = y.ndim == 3 and y.shape[1:] == (len(EMOTIONS), 2)
    sentiment_shape = y.ndim == 1 or (y.ndim == 2 and y.shape[1] == 1) or (y.ndim == 3 and y.shape[1:] == (1, 1))
    if task == "auto":
        if not (emotion_shape or sentiment_shape):
            raise _err(path, f"shape {tuple(y.shape)} is neither (N, 4, 2) (IEMOCAP emotions) nor (N, 1, 1) / (N, 1) / "
                       "(N,) (sentiment scores)", split, "labels")
        task = "emotion" if emotion_shape else "sentiment"
    if task == "emotion":
        if not emotion_shape:
            raise _err(path, f"task 'emotion' needs shape (N, 4, 2) (one-hot per emotion {list(EMOTIONS)}), got "
                       f"{tuple(y.shape)}", split, "labels",
                       fix=_FIX_TASK)
        bad = ~((y == 0) | (y == 1)).all(axis=2) | (y.sum(axis=2) != 1)  # (N, 4)
        if bad.any():
            i, e = map(int, np.argwhere(bad)[0])
            raise _err(path, f"sample {i}, emotion {EMOTIONS[e]!r}: {y[i, e].tolist()} is not one-hot "
                       "([1, 0] = absent, [0, 1] = present)", split, "labels", fix=FIX_FILE)
        return np.ascontiguousarray(y.argmax(axis=2), dtype=np.int64), "emotion"
    if not sentiment_shape:
        raise _err(path, f"task 'sentiment' needs shape (N, 1, 1), (N, 1) or (N,), got {tuple(y.shape)}", split, "labels",
                   fix=_FIX_TASK)
    y = np.ascontiguousarray(y.reshape(-1))
    check_label_range(path, split, "labels", y, label_range, "set label_range to the data set's range (3.0 for "
                      f"MOSI/MOSEI); if it is right, the file is damaged: {FIX_FILE}")
    return y, "sentiment"


def _read_split(path: Path, split: str, d: Any, task: Task, label_range: float) -> tuple[SplitTensors, str]:
    d = split_dict(path, split, d, FIX_FORMAT)  # a shallow copy: keys are popped as they are converted
    hint = " (this looks like an MMSA pickle; read it with MMSADataModule)" if "regression_labels" in d else ""
    require_keys(path, split, d, (*MODALITIES, "labels"), FIX_FORMAT, hint)

    inputs = {m: _features(path, split, m, d.pop(m)) for m in MODALITIES}
    np.copyto(inputs["audio"], 0.0, where=np.isneginf(inputs["audio"]))  # COVAREP writes -inf
    target, task = _labels(path, split, d.pop("labels"), task, label_range)
    counts = {m: a.shape[0] for m, a in inputs.items()} | {"labels": target.shape[0]}
    ids = _ids(path, split, d.pop("id")) if "id" in d else None
    if ids is not None:
        counts["id"] = len(ids)
    same_sample_count(path, split, counts, FIX_FORMAT)

    check_mask_allocation(path, split, inputs)  # before the (N, L) masks: L comes from the file
    masks: dict[str, np.ndarray] = {}
    for m, arr in inputs.items():
        masks[m], bad = _scan(arr)
        if bad is not None:
            raise nonfinite_error(path, split, m, arr, bad, FIX_FILE)
    if len({a.shape[1] for a in inputs.values()}) == 1:  # aligned: steps are words, valid if any modality has data
        union = masks["text"] | masks["audio"] | masks["vision"]
        masks = {m: union.copy() for m in MODALITIES}  # own storage per modality
    split_tensors = SplitTensors(
        inputs={m: torch.from_numpy(a) for m, a in inputs.items()},
        masks={m: torch.from_numpy(a) for m, a in masks.items()},
        target=torch.from_numpy(target),
        ids=ids if ids is not None else [f"{split}_{i}" for i in range(len(target))],
    )
    return split_tensors, task


def emotion_label_counts(target: np.ndarray | torch.Tensor) -> dict[str, int]:
    """Samples of an emotion ``target`` (N, 4) 0/1 with no emotion present and with several present."""
    present = np.asarray(target).sum(axis=1)
    return {"no_emotion": int((present == 0).sum()), "several": int((present > 1).sum())}


def read_mult(path: str | Path, task: Task = "auto", label_range: float = 3.0) -> dict[str, SplitTensors]:
    """Read a MulT-style pickle into one :class:`SplitTensors` per split.

    Args:
        path: ``mosi_data.pkl``, ``mosei_senti_data.pkl``, ``iemocap_data.pkl``, a ``*_data_noalign.pkl``, or a
            file written by ``lightning-kd generate mult``.
        task: ``"emotion"`` (labels (N, 4, 2)), ``"sentiment"`` (labels (N, 1, 1), (N, 1) or (N,)) or ``"auto"``
            (decided from the labels' shape).
        label_range: sentiment labels must lie in ``[-label_range, label_range]``.

    Returns:
        ``{"train", "valid", "test"} -> SplitTensors`` with float32 ``text``/``audio``/``vision`` (N, L, D)
        (audio -inf set to 0), bool masks (N, L) per modality (a step is valid when it has a nonzero feature;
        when all modalities have the same L the union over modalities is used for each), ``target``
        (N, 4) int64 in {0, 1} (emotion present, order :data:`EMOTIONS`; a row may hold no 1 or several, and
        each split that has such rows is logged as ``"<file> <split>: A samples with no emotion, B with
        several"``) or (N,) float32 scores, and ``ids``.

    Raises:
        DataFileNotFoundError: no such file.
        DataFormatError: unreadable file or broken layout; the message names the file, split, key and fix.
    """
    if task not in ("auto", "emotion", "sentiment"):
        raise ValueError(f"task must be 'auto', 'emotion' or 'sentiment', got {task!r}")
    path = Path(path)
    data = split_dicts(path, _load(path), FIX_FORMAT)
    out: dict[str, SplitTensors] = {}
    for split in SPLITS:
        out[split], resolved = _read_split(path, split, data.pop(split), task, label_range)
        task = resolved  # every split must follow the task of the first one
        if task == "emotion":
            c = emotion_label_counts(out[split].target)
            if c["no_emotion"] or c["several"]:
                log.warning("%s %s: %d samples with no emotion, %d with several", path.name, split, c["no_emotion"],
                            c["several"])
    del data

    same_feature_sizes(path, out, FIX_FORMAT)
    return out


class MulTDataModule(InMemoryDataModule):
    """MOSI / MOSEI / IEMOCAP from a MulT-style pickle, read once by :func:`read_mult`.

    Batches hold ``text``/``audio``/``vision`` inputs and masks; ``target`` is (B, 4) int64 emotion presence for
    IEMOCAP files and (B,) float32 scores for MOSI/MOSEI files.

    Args:
        path: the pickle.
        task, label_range: see :func:`read_mult`.
        batch_size, seed, predict_split, eval_batch_size, train_missing, eval_missing, storage_dtype: see
            :class:`InMemoryDataModule` (``storage_dtype: float16`` halves the memory of the text features, the
            bulk of these files).
    """

    def __init__(
        self,
        path: str,
        task: Task = "auto",
        label_range: float = 3.0,
        batch_size: int = 32,
        seed: int | None = None,
        predict_split: str = "test",
        eval_batch_size: int | None = None,
        train_missing: MissingAugmentation | None = None,
        eval_missing: MissingCondition | None = None,
        storage_dtype: StorageDtype = "float32",
    ) -> None:
        super().__init__(
            batch_size=batch_size, seed=seed, predict_split=predict_split, eval_batch_size=eval_batch_size,
            train_missing=train_missing, eval_missing=eval_missing, storage_dtype=storage_dtype,
        )
        if task not in ("auto", "emotion", "sentiment"):
            raise ValueError(f"task must be 'auto', 'emotion' or 'sentiment', got {task!r}")
        self.path = path
        self.task = task
        self.label_range = label_range

    def load_splits(self) -> dict[str, SplitTensors]:
        return read_mult(self.path, task=self.task, label_range=self.label_range)

    @property
    def label_counts(self) -> dict[str, dict[str, int]] | None:
        """Per split, ``{"no_emotion": samples with no emotion present, "several": samples with more than one}``
        for emotion files (:func:`emotion_label_counts`); ``None`` for sentiment files."""
        if self.emotions is None:
            return None
        return {s: emotion_label_counts(self.splits[s].target) for s in SPLITS}

    @property
    def target_kind(self) -> str:
        """``"emotions"`` for emotion files (IEMOCAP), ``"score"`` for sentiment files (MOSI/MOSEI)."""
        return "emotions" if self.emotions else "score"

    @property
    def emotions(self) -> tuple[str, ...] | None:
        """:data:`EMOTIONS` (the columns of ``target``) for emotion files, ``None`` for sentiment files."""
        return EMOTIONS if self.splits["train"].target.ndim == 2 else None
