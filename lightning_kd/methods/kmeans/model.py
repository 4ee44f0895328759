"""k-means written once: the scikit-learn fit (the baseline's and VLSG's clustering step) and the nearest-centre
assignment of stored centres (``test``, ``predict`` and exported graphs)."""

from __future__ import annotations

import os

import numpy as np
import torch
from torch import Tensor

__all__ = ["fit_kmeans", "nearest_centre", "run_seed"]


def run_seed(seed: int | None) -> int:
    """``seed``, or the run's ``seed_everything`` value (``PL_GLOBAL_SEED``, set by Lightning; 0 without one)."""
    return seed if seed is not None else int(os.environ.get("PL_GLOBAL_SEED", "0"))


def fit_kmeans(x: Tensor, k: int, n_init: int, seed: int, fit_size: int | None = None,
               block: int = 16384) -> tuple[Tensor, Tensor]:
    """scikit-learn ``KMeans(k, n_init=n_init, random_state=seed)`` (k-means++ seeding, Lloyd) of ``x (N, D)``.

    ``x`` is clustered in float32 without a copy (``copy_x=False``: scikit-learn centres it in place and adds the
    mean back, which may change its values by rounding; pass a tensor nothing else reads).

    ``fit_size`` < N fits the centres on that many rows drawn uniformly at random (``seed``; a float32 copy of them
    only, ``x`` may be float16), then labels every row by :func:`nearest_centre`, ``block`` rows at a time: the
    centres of a uniform subsample estimate the full fit's (the large-N approximation of mini-batch k-means,
    Sculley, WWW 2010), at the time and memory of the subsample.

    Returns:
        The centres ``(k, D)`` float32 and the cluster ids ``(N,)`` int64 (scikit-learn's ``labels_``, which
        its final assignment step makes consistent with the centres; the nearest centres with ``fit_size``).
    """
    from sklearn.cluster import KMeans

    x = x.detach().cpu()
    n = len(x)
    subsample = fit_size is not None and fit_size < n
    if subsample:
        rows = torch.from_numpy(np.sort(np.random.default_rng(seed).choice(n, fit_size, replace=False)))
    data = (x[rows] if subsample else x).float().numpy()
    km = KMeans(k, n_init=n_init, random_state=seed, copy_x=False).fit(data)
    centres = torch.as_tensor(km.cluster_centers_, dtype=torch.float32)
    if not subsample:
        return centres, torch.as_tensor(km.labels_, dtype=torch.int64)
    del data, km
    return centres, torch.cat([nearest_centre(x[i:i + block].float(), centres) for i in range(0, n, block)])


def nearest_centre(x: Tensor, centres: Tensor) -> Tensor:
    """Index ``(B,)`` of the nearest of ``centres (K, D)`` to each row of ``x (B, D)`` (squared Euclidean distance,
    computed in float64 so float32 rounding does not flip near ties; the first centre wins an exact tie)."""
    c = centres.double()
    return ((c * c).sum(1) - 2.0 * x.double() @ c.T).argmin(1)  # + ||x||^2, the same for every centre
