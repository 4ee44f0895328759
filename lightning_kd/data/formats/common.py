"""Helpers shared by the pickle readers: one error style, one unpickling path, one array check."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import numpy as np

from lightning_kd.data.errors import DataFileNotFoundError, DataFormatError

__all__ = ["float_array", "format_error", "load_pickle"]


def format_error(path: Path, what: str, split: str | None, key: str | None, fix: str) -> DataFormatError:
    """``<file>, split 's', key 'k': <what>. Fix: <fix>.``"""
    where = (f", split {split!r}" if split is not None else "") + (f", key {key!r}" if key is not None else "")
    return DataFormatError(f"{path}{where}: {what}. Fix: {fix}.")


def load_pickle(path: Path, not_found: str, fix_file: str) -> Any:
    """Unpickle the whole file once; Python-2 pickles (numpy arrays) are retried with latin1.

    Args:
        path: the file.
        not_found: the message of the error raised when ``path`` is not a file (after ``"{path}: "``
            and a hint); name what was expected and how to get it.
        fix_file: the fix named when the file exists but cannot be unpickled.
    """
    if not path.is_file():
        hint = "it is a directory, not a file" if path.is_dir() else "no such file"
        raise DataFileNotFoundError(f"{path}: {not_found.format(hint=hint, path=path)}")
    for encoding in ("ASCII", "latin1"):
        try:
            with path.open("rb") as f:
                return pickle.load(f, encoding=encoding)
        except UnicodeDecodeError:
            continue
        except MemoryError:
            raise
        except Exception as e:  # noqa: BLE001 - truncated / not-a-pickle files raise many types
            raise format_error(path, f"is not a readable pickle ({type(e).__name__}: {e})", None, None, fix_file) from e
    raise format_error(path, "cannot be unpickled (text encoding)", None, None, fix_file)


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
