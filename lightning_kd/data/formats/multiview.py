"""Reader of multi-view clustering ``.mat`` files (the layouts the usual benchmarks are downloaded in:
Caltech101-7/20, HandWritten, Scene-15, BBCSport, MSRC-v1, ...), read with :func:`scipy.io.loadmat`.

Layouts:

* ``X``: a cell array of views (``loadmat`` gives an object array of shape (1, V) or (V, 1));
* ``X1``, ``X2``, ..., ``Xv`` (or ``x1``, ...): one matrix per view;

with the labels in ``Y`` (or ``y``, ``gt``, ``truth``, ``labels``, ``label``, ``gnd``) stored as (N, 1), (1, N)
or (N,), 0- or 1-based (labels whose minimum is 1 are shifted to start at 0). A view is N x D or D x N: its
orientation is decided from the number of labels N (N x D is kept when both axes equal N). Sparse views are
densified. MATLAB v7.3 files are HDF5 and need ``h5py``, which is not a dependency: re-save them in MATLAB with
``save(FILE, '-v7')``.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lightning_kd.checkpoint import DataFileNotFoundError, DataFormatError
from lightning_kd.data.datamodule import SPLITS, InMemoryDataModule
from lightning_kd.data.formats.common import check_min_classes, format_error
from lightning_kd.data.semantic_graph import NEIGHBOURS_KEY, SemanticGraph
from lightning_kd.data.split import SplitTensors, StorageDtype

__all__ = ["LABEL_KEYS", "MultiViewDataModule", "read_multiview_mat"]

#: keys searched for the labels, in this order
LABEL_KEYS = ("Y", "y", "gt", "truth", "labels", "label", "gnd")

FIX_FORMAT = (
    "check that this is a multi-view .mat file with X (cell of views) or X1..Xv and labels Y / gt, "
    "or regenerate it with `lightning-kd generate multiview --out FILE`"
)
_FIX_V73 = (
    "MATLAB v7.3 files are HDF5 and need h5py, which is not installed; re-save the file in MATLAB with "
    "`save(FILE, '-v7')` (or `-v6`), or regenerate it with `lightning-kd generate multiview --out FILE`"
)
_NUMBERED = re.compile(r"^[Xx](\d+)$")


def _err(path: Path, what: str, key: str | None = None, fix: str = FIX_FORMAT) -> DataFormatError:
    return format_error(path, what, None, key, fix)


def _load(path: Path) -> dict[str, Any]:
    if not path.is_file():
        hint = "it is a directory, not a file" if path.is_dir() else "no such file"
        raise DataFileNotFoundError(
            f"{path}: multi-view .mat file not found ({hint}). Fix: set `path` to an existing .mat file, or write a "
            f"synthetic one with `lightning-kd generate multiview --out {path}`."
        )
    import scipy.io

    with path.open("rb") as f:
        head = f.read(128)
    if head.startswith(b"MATLAB 7.3"):
        raise _err(path, "is a MATLAB v7.3 (HDF5) file, which scipy cannot read", fix=_FIX_V73)
    try:
        return scipy.io.loadmat(str(path), appendmat=False)
    except NotImplementedError as e:  # scipy's answer to v7.3 files
        raise _err(path, f"is a MATLAB v7.3 (HDF5) file, which scipy cannot read ({e})", fix=_FIX_V73) from e
    except MemoryError:
        raise
    except Exception as e:  # noqa: BLE001 - truncated / not-a-mat files raise many types
        raise _err(path, f"is not a readable .mat file ({type(e).__name__}: {e})") from e


def _user_keys(d: dict[str, Any]) -> list[str]:
    return sorted(k for k in d if not k.startswith("__"))


def _labels(path: Path, d: dict[str, Any]) -> tuple[np.ndarray, str]:
    key = next((k for k in LABEL_KEYS if k in d), None)
    if key is None:
        raise _err(path, f"no labels: none of the keys {list(LABEL_KEYS)} is present; present: {_user_keys(d)}",
                   LABEL_KEYS[0])
    value = d[key]
    try:
        y = np.asarray(value.toarray() if hasattr(value, "toarray") else value, dtype=np.float64)
    except (TypeError, ValueError) as e:
        raise _err(path, f"labels are not a numeric array ({type(e).__name__}: {e})", key) from e
    if y.ndim > 2 or (y.ndim == 2 and min(y.shape) != 1 and y.size > 0) or y.size == 0:
        raise _err(path, f"labels must have shape (N, 1), (1, N) or (N,) with N >= 1, got {tuple(y.shape)}", key)
    y = y.reshape(-1)
    bad = ~np.isfinite(y) | (y != np.round(y))
    if bad.any():
        i = int(np.argmax(bad))
        raise _err(path, f"labels must be integers (class ids), label {i} is {y[i]!r}", key)
    if y.min() < 0:
        raise _err(path, f"labels must be >= 0 (0-based) or >= 1 (1-based), found {int(y.min())}", key)
    y = y.astype(np.int64)
    if y.min() == 1:
        y -= 1
    return y, key


def _view_values(path: Path, d: dict[str, Any]) -> list[tuple[str, Any]]:
    """``[(key shown in errors, stored value)]``, one per view."""
    if "X" in d and isinstance(d["X"], np.ndarray) and d["X"].dtype == object:
        cell = d["X"]
        if cell.ndim != 2 or min(cell.shape) != 1 or cell.size == 0:
            raise _err(path, f"the cell array of views must have shape (1, V) or (V, 1), got {tuple(cell.shape)}", "X")
        return [(f"X{{{v + 1}}}", value) for v, value in enumerate(cell.reshape(-1))]
    numbered = sorted((int(m.group(1)), k) for k in d if (m := _NUMBERED.match(k)))
    if numbered:
        nums = [n for n, _ in numbered]
        if len(set(nums)) != len(nums):
            dup = next(n for n in nums if nums.count(n) > 1)
            raise _err(path, f"both X{dup} and x{dup} are present; keep one", f"X{dup}")
        return [(k, d[k]) for _, k in numbered]
    if "X" in d:  # a single numeric matrix: one view
        return [("X", d["X"])]
    raise _err(path, f"no views: neither X (cell of views) nor X1..Xv is present; present: {_user_keys(d)}", "X")


def _view(path: Path, key: str, value: Any, n: int) -> np.ndarray:
    """(N, D) float32, C-contiguous, writable, finite."""
    if hasattr(value, "toarray"):  # scipy.sparse matrix / array
        value = value.toarray()
    try:
        arr = np.asarray(value, dtype=np.float32)
    except (TypeError, ValueError) as e:
        raise _err(path, f"view is not a numeric matrix ({type(e).__name__}: {e})", key) from e
    if arr.ndim != 2:
        raise _err(path, f"view must be a 2-D matrix (N x D or D x N), got shape {tuple(arr.shape)}", key)
    if arr.shape[0] != n:
        if arr.shape[1] != n:
            raise _err(path, f"view has shape {tuple(arr.shape)}, neither axis matches the {n} labels", key)
        arr = arr.T
    arr = np.ascontiguousarray(arr)
    if not arr.flags.writeable:
        arr = arr.copy()
    finite = np.isfinite(arr)
    if not finite.all():
        i, j = map(int, np.argwhere(~finite)[0])
        raise _err(path, f"view holds a non-finite value ({arr[i, j]}) at sample {i}, feature {j}", key)
    return arr


def read_multiview_mat(path: str | Path) -> tuple[list[np.ndarray], np.ndarray]:
    """Read a multi-view ``.mat`` file (layouts: see the module docstring).

    Args:
        path: the ``.mat`` file (MATLAB v4 to v7; v7.3 files must be re-saved with ``-v7``).

    Returns:
        ``(views, labels)``: one float32 (N, D_v) C-contiguous array per view, in file order (cell order, or
        X1, X2, ...), and int64 (N,) labels (shifted to 0-based when their minimum is 1).

    Raises:
        DataFileNotFoundError: no such file.
        DataFormatError: unreadable / v7.3 file, broken layout, or labels of a single class (clustering needs
            two or more); the message names the file, key and fix.
    """
    path = Path(path)
    d = _load(path)
    labels, label_key = _labels(path, d)
    views = [_view(path, key, value, len(labels)) for key, value in _view_values(path, d)]
    check_min_classes(path, label_key, labels, "give a file whose labels hold two or more classes (they set the "
                      "number of clusters and score them)")
    return views, labels


class MultiViewDataModule(InMemoryDataModule):
    """Multi-view clustering data from a ``.mat`` file, read once by :func:`read_multiview_mat`.

    Clustering is transductive: the train, valid and test splits all hold ALL N samples (the same tensors),
    labels are used only for evaluation. Batches hold inputs ``view_0`` .. ``view_{V-1}`` (B, D_v) float32
    (plus ``semantic_neighbours`` (B, G k) int64 with a ``semantic_graph``), no masks, ``target`` (B,) int64
    labels; ``index`` is the row number, and ids are ``"0"`` .. ``"N-1"``.

    Args:
        path: the ``.mat`` file (required; ``None`` stops with a message naming the option).
        batch_size, seed, predict_split, eval_batch_size: see :class:`InMemoryDataModule`.
        standardize: standardise every feature to zero mean and unit variance over the training split (= all
            samples); constant features are only centred.
        semantic_graph: build kNN semantic graphs over all samples once at setup, low-pass filter the views
            on them and attach each sample's graph neighbours to its batches as ``inputs["semantic_neighbours"]``
            (:class:`~lightning_kd.data.semantic_graph.SemanticGraph`); ``None`` = raw (standardised) views.
        storage_dtype: see :class:`InMemoryDataModule`: the (standardised, filtered) views held in float16 /
            bfloat16 after the graph is built from them in float32; the neighbour table stays int64.
    """

    def __init__(
        self,
        path: str | None = None,
        batch_size: int = 256,
        seed: int | None = None,
        predict_split: str = "test",
        eval_batch_size: int | None = None,
        standardize: bool = True,
        semantic_graph: SemanticGraph | None = None,
        storage_dtype: StorageDtype = "float32",
    ) -> None:
        super().__init__(batch_size=batch_size, seed=seed, predict_split=predict_split, eval_batch_size=eval_batch_size,
                         storage_dtype=storage_dtype)
        self.path = path
        self.standardize = standardize
        self.semantic_graph = semantic_graph

    def read(self) -> tuple[list[np.ndarray], np.ndarray]:
        """The views (N, D_v) and labels (N,) of the data set (subclasses read other layouts)."""
        if not self.path:
            raise DataFileNotFoundError(
                "no multi-view .mat file given. Fix: pass `--data.init_args.path FILE.mat` (or write a synthetic "
                "one with `lightning-kd generate multiview --out FILE.mat`).")
        return read_multiview_mat(self.path)

    def load_splits(self) -> dict[str, SplitTensors]:
        views, labels = self.read()
        inputs: dict[str, torch.Tensor] = {}
        for v, x in enumerate(views):
            if self.standardize and len(x):
                mean = x.mean(axis=0, dtype=np.float64)
                std = x.std(axis=0, dtype=np.float64)
                std[std == 0] = 1.0
                x = ((x - mean) / std).astype(np.float32)
            inputs[f"view_{v}"] = torch.from_numpy(np.ascontiguousarray(x))
        if self.semantic_graph is not None and len(labels) > 1:
            names = list(inputs)
            filtered, table = self.semantic_graph.build([inputs[k] for k in names])
            inputs = {k: x.contiguous() for k, x in zip(names, filtered)}
            if self.semantic_graph.neighbours:
                inputs[NEIGHBOURS_KEY] = table
        split = SplitTensors(inputs=inputs, masks={}, target=torch.from_numpy(labels),
                             ids=[str(i) for i in range(len(labels))])
        return {s: split for s in SPLITS}  # transductive: one object, all samples, in every split

    @property
    def feature_dims(self) -> dict[str, int]:
        """View name (``view_0`` ..) -> feature size."""
        return {k: int(v.shape[1]) for k, v in self.splits["train"].inputs.items() if k != NEIGHBOURS_KEY}

    @property
    def seq_lens(self) -> dict[str, int]:
        """Empty: views are (N, D) feature vectors, not sequences."""
        return {}

    @property
    def target_kind(self) -> str:
        """``"cluster_labels"``: class labels, used only to evaluate the clustering."""
        return "cluster_labels"

    @property
    def num_views(self) -> int:
        return len(self.feature_dims)

    @property
    def num_clusters(self) -> int:
        """Number of distinct labels."""
        return int(torch.unique(self.splits["train"].target).numel())
