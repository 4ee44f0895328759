"""Generator of multi-view clustering ``.mat`` files in the layouts :func:`read_multiview_mat` reads.

Generative model (:func:`write_multiview_mat`): a cluster ``z_i`` per sample (balanced: sizes differ by at most
one, order shuffled), shared by every view; view ``v`` is a Gaussian mixture
``x_i^v = c^v[z_i] + sigma_v e_i^v`` with centres ``c^v ~ N(0, 0.7^2 I)`` and noise ``sigma_v = noise (1 + 0.25 v)``
(``noise`` = 1 by default).
In view ``v`` the two clusters ``v mod K`` and ``(v + 1) mod K`` share one centre, so no view alone separates
all clusters (k-means on one view of the defaults: ACC 0.6 - 0.8), while the views together do (they agree on
``z``; k-means on the concatenated standardised views: ACC about 0.98).

Layouts: ``"cell"`` writes ``X``, a (1, V) cell of N x D (D x N with ``transpose``) double matrices, and ``Y``
(N, 1) double; ``"numbered"`` writes ``X1`` .. ``Xv`` and ``gt`` (N, 1). Labels are 1..K (``one_based``) or
0..K-1.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import numpy as np

from lightning_kd.data.formats.multiview import MultiViewDataModule
from lightning_kd.data.generate.base import GeneratedOnFirstUse
from lightning_kd.data.semantic_graph import SemanticGraph
from lightning_kd.data.split import StorageDtype
from lightning_kd.io import atomic_write_binary

__all__ = ["SyntheticMultiViewDataModule", "write_multiview_mat"]

_CENTRE_SCALE = 0.7


def _build(n: int, dims: tuple[int, ...], clusters: int, seed: int, noise: float = 1.0) -> tuple[list[np.ndarray], np.ndarray]:
    rng = np.random.default_rng([seed, 7])
    z = rng.permutation(np.arange(n) % clusters)
    views = []
    for v, d in enumerate(dims):
        centres = _CENTRE_SCALE * rng.standard_normal((clusters, d))
        if clusters > 1:
            centres[(v + 1) % clusters] = centres[v % clusters]
        views.append(centres[z] + noise * (1.0 + 0.25 * v) * rng.standard_normal((n, d)))
    return views, z


def write_multiview_mat(
    path: str | Path,
    *,
    layout: Literal["cell", "numbered"] = "cell",
    n: int = 600,
    dims: tuple[int, ...] = (40, 30, 20),
    clusters: int = 5,
    one_based: bool = True,
    transpose: bool = False,
    seed: int = 0,
    noise: float = 1.0,
) -> Path:
    """Write a synthetic multi-view ``.mat`` file (see the module docstring).

    Args:
        path: output file; written atomically (temporary file in the same folder, then renamed).
        layout: ``"cell"`` (``X`` cell + ``Y``) or ``"numbered"`` (``X1``..``Xv`` + ``gt``).
        n: samples.
        dims: feature size of each view (one view per entry).
        clusters: number of clusters K (2 .. n).
        one_based: labels 1..K (MATLAB style) instead of 0..K-1.
        transpose: store views as D x N (then no entry of ``dims`` may equal ``n``: the reader could not tell).
        seed: the file is a pure function of its arguments.
        noise: multiplies every view's noise level ``sigma_v`` (harder data sets above 1).

    Returns:
        The path written.
    """
    import scipy.io

    dims = tuple(int(d) for d in dims)
    if layout not in ("cell", "numbered"):
        raise ValueError(f"layout must be 'cell' or 'numbered', got {layout!r}")
    if n < 2 or clusters < 2 or clusters > n or not dims or min(dims) < 1:
        raise ValueError(f"need 2 <= clusters <= n (clustering needs two or more classes) and at least one dim >= 1; "
                         f"got n={n}, clusters={clusters}, dims={dims}")
    if transpose and n in dims:
        raise ValueError(f"transpose with a view of {n} features = n samples is ambiguous; change n or dims")
    views, z = _build(n, dims, clusters, seed, noise)
    if transpose:
        views = [np.ascontiguousarray(x.T) for x in views]
    labels = (z + int(one_based)).astype(np.float64)[:, None]
    if layout == "cell":
        cell = np.empty((1, len(views)), dtype=object)
        for v, x in enumerate(views):
            cell[0, v] = x
        data = {"X": cell, "Y": labels}
    else:
        data = {f"X{v + 1}": x for v, x in enumerate(views)} | {"gt": labels}

    path = Path(path)
    atomic_write_binary(path, lambda f: scipy.io.savemat(f, data, format="5", oned_as="column"))
    return path


class SyntheticMultiViewDataModule(GeneratedOnFirstUse, MultiViewDataModule):
    """:class:`MultiViewDataModule` over a generated ``.mat`` file (:func:`write_multiview_mat`), read by the
    real reader; runs anywhere.

    Args:
        path: file to use; ``None`` gives ``data/synthetic/multiview_{n}_{dims}_{clusters}_{data_seed}.mat``
            under the current directory. The file is generated when it does not exist, else reused.
        n, dims, clusters, data_seed, noise: arguments of :func:`write_multiview_mat` (``data_seed`` is its ``seed``).
        Other arguments: see :class:`MultiViewDataModule`.
    """

    def __init__(
        self,
        path: str | None = None,
        n: int = 600,
        dims: tuple[int, ...] = (40, 30, 20),
        clusters: int = 5,
        data_seed: int = 0,
        noise: float = 1.0,
        batch_size: int = 256,
        seed: int | None = None,
        predict_split: str = "test",
        eval_batch_size: int | None = None,
        standardize: bool = True,
        semantic_graph: SemanticGraph | None = None,
        storage_dtype: StorageDtype = "float32",
    ) -> None:
        self.n, self.dims, self.clusters, self.data_seed = n, tuple(int(d) for d in dims), clusters, data_seed
        self.noise = noise
        if path is None:
            tag = "" if noise == 1.0 else f"_noise{noise:g}"
            name = f"multiview_{n}_{'-'.join(map(str, self.dims))}_{clusters}_{data_seed}{tag}.mat"
            path = str(Path("data") / "synthetic" / name)
        super().__init__(path, batch_size=batch_size, seed=seed, predict_split=predict_split,
                         eval_batch_size=eval_batch_size, standardize=standardize, semantic_graph=semantic_graph,
                         storage_dtype=storage_dtype)

    def write_file(self, path: Path) -> None:
        write_multiview_mat(path, n=self.n, dims=self.dims, clusters=self.clusters, seed=self.data_seed,
                            noise=self.noise)
