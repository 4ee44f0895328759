"""Generator of multi-view clustering ``.mat`` files in the layouts :func:`read_multiview_mat` reads.

Generative model (:func:`write_multiview_mat`): a cluster ``z_i`` per sample (balanced: sizes differ by at most
one, order shuffled), shared by every view; view ``v`` is a Gaussian mixture
``x_i^v = c^v[z_i] + sigma_v e_i^v`` with centres ``c^v ~ N(0, 0.7^2 I)`` and noise ``sigma_v = 1 + 0.25 v``.
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

from lightning_kd.data.synthetic import atomic_write_binary

__all__ = ["write_multiview_mat"]

_CENTRE_SCALE = 0.7


def _build(n: int, dims: tuple[int, ...], clusters: int, seed: int) -> tuple[list[np.ndarray], np.ndarray]:
    rng = np.random.default_rng([seed, 7])
    z = rng.permutation(np.arange(n) % clusters)
    views = []
    for v, d in enumerate(dims):
        centres = _CENTRE_SCALE * rng.standard_normal((clusters, d))
        if clusters > 1:
            centres[(v + 1) % clusters] = centres[v % clusters]
        views.append(centres[z] + (1.0 + 0.25 * v) * rng.standard_normal((n, d)))
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
) -> Path:
    """Write a synthetic multi-view ``.mat`` file (see the module docstring).

    Args:
        path: output file; written atomically (temporary file in the same folder, then renamed).
        layout: ``"cell"`` (``X`` cell + ``Y``) or ``"numbered"`` (``X1``..``Xv`` + ``gt``).
        n: samples.
        dims: feature size of each view (one view per entry).
        clusters: number of clusters K.
        one_based: labels 1..K (MATLAB style) instead of 0..K-1.
        transpose: store views as D x N (then no entry of ``dims`` may equal ``n``: the reader could not tell).
        seed: the file is a pure function of its arguments.

    Returns:
        The path written.
    """
    import scipy.io

    dims = tuple(int(d) for d in dims)
    if layout not in ("cell", "numbered"):
        raise ValueError(f"layout must be 'cell' or 'numbered', got {layout!r}")
    if n < 1 or clusters < 1 or clusters > n or not dims or min(dims) < 1:
        raise ValueError(f"need n >= 1, 1 <= clusters <= n and at least one dim >= 1; got n={n}, clusters={clusters}, "
                         f"dims={dims}")
    if transpose and n in dims:
        raise ValueError(f"transpose with a view of {n} features = n samples is ambiguous; change n or dims")
    views, z = _build(n, dims, clusters, seed)
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
