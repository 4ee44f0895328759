"""What the generators share: the latent-factor model of the sequence formats, the pickle writer and the
generate-on-first-use mixin of the synthetic datamodules.

Factor model (MMSA and MulT writers), per sample ``i`` (K = :data:`K` = 4): shared factors ``s_i ~ N(0, I_K)``
seen by every modality, private ``p_i^m ~ N(0, I_K)`` seen by modality ``m`` only; features of modality ``m`` at
step ``t``: ``x_it = b_m + g_it [s_i, p_i^m] W_m + sigma_m n_it`` (:func:`sequence`) with temporal modulation
``g_it = 1 + 0.5 sin(2 pi t / P_m + phi_i)`` and noise levels :data:`NOISE` (text 0.8 < vision 1.0 < audio 3.0);
sentiment score ``0.7 u_s.s + 0.8 u_t.p^t + 0.6 u_v.p^v + 0.2 u_a.p^a + 0.1 e`` (:data:`LABEL_W`,
:func:`sentiment_labels`), scaled to std 1.5, clipped to [-3, 3] and rounded to the 1/5 grid (MOSI's grid, so
some labels are exactly 0). Text carries the largest private weight and audio the smallest.
"""

from __future__ import annotations

import pickle
from abc import abstractmethod
from pathlib import Path
from typing import Any

import numpy as np

from lightning_kd.data.datamodule import SPLITS
from lightning_kd.data.split import SplitTensors
from lightning_kd.io import atomic_write_binary

__all__ = [
    "K", "LABEL_W", "MODALITIES", "NOISE", "PERIOD", "SPLITS", "GeneratedOnFirstUse", "sentiment_labels", "sequence",
    "valid_lengths", "write_pickle",
]

#: latent factors per group (shared / each modality's private)
K = 4
MODALITIES = ("text", "audio", "vision")
#: noise level sigma_m per modality
NOISE = {"text": 0.8, "audio": 3.0, "vision": 1.0}
#: weights of the sentiment score: shared factors, each modality's private factors, label noise
LABEL_W = {"shared": 0.7, "text": 0.8, "vision": 0.6, "audio": 0.2, "noise": 0.1}
#: period P_m (steps) of the temporal modulation per modality
PERIOD = {"text": 7.0, "audio": 23.0, "vision": 31.0}


def valid_lengths(rng: np.random.Generator, n: int, steps: int, lo: int = 1) -> np.ndarray:
    """``n`` valid lengths uniform in ``[max(lo, ceil(0.4 steps)), steps]`` (capped at ``steps``)."""
    low = min(steps, max(lo, int(np.ceil(0.4 * steps))))
    return rng.integers(low, steps + 1, size=n)


def sequence(
    rng: np.random.Generator, z: np.ndarray, w: np.ndarray, b: np.ndarray, lens: np.ndarray, steps: int,
    period: float, sigma: float,
) -> np.ndarray:
    """(N, steps, D) float32 features of latent ``z`` (N, 2K), zero after ``lens``; built in place."""
    n = z.shape[0]
    x = rng.standard_normal((n, steps, w.shape[1]), dtype=np.float32)
    x *= np.float32(sigma)
    proj = (z @ w).astype(np.float32)  # (N, D)
    phase = rng.uniform(0, 2 * np.pi, size=(n, 1))
    g = (1.0 + 0.5 * np.sin(2 * np.pi * np.arange(steps)[None, :] / period + phase)).astype(np.float32)
    for t in range(steps):  # one (N, D) update per step avoids a second full-size temporary
        x[:, t, :] += proj * g[:, t, None] + b
    x *= (np.arange(steps)[None, :] < lens[:, None])[..., None]
    return x


def sentiment_labels(
    rng: np.random.Generator, shared: np.ndarray, private: dict[str, np.ndarray], u: dict[str, np.ndarray]
) -> np.ndarray:
    """(N,) float32 sentiment scores on MOSI's 1/5 grid in [-3, 3] from unit vectors ``u`` (K,) per factor group."""
    label_std = np.sqrt(sum(v**2 for v in LABEL_W.values()))
    y = LABEL_W["shared"] * shared @ u["shared"] + LABEL_W["noise"] * rng.standard_normal(shared.shape[0])
    for m in MODALITIES:
        y += LABEL_W[m] * private[m] @ u[m]
    y = np.round(np.clip(1.5 * y / label_std, -3.0, 3.0) * 5) / 5 + 0.0  # + 0.0 turns -0.0 into 0.0
    return y.astype(np.float32)


def write_pickle(obj: Any, path: Path) -> None:
    """Pickle (protocol 4) to a temporary file next to ``path``, then rename it over ``path``."""
    atomic_write_binary(path, lambda f: pickle.dump(obj, f, protocol=4))


class GeneratedOnFirstUse:
    """Mixin for datamodules over a generated file: ``write_file(path)`` runs when ``self.path`` is missing.

    Use as ``class SyntheticX(GeneratedOnFirstUse, XDataModule)``; the file is written in ``prepare_data``
    and, without a Trainer (notebooks), on first ``load_splits``. Concurrent writers are safe (atomic rename).
    """

    path: str

    @abstractmethod
    def write_file(self, path: Path) -> None:
        """Write the data set to ``path`` (atomically)."""

    def generate(self) -> Path:
        """Write the file unless it exists; return its path."""
        p = Path(self.path)
        if not p.exists():
            self.write_file(p)
        return p

    def prepare_data(self) -> None:
        self.generate()

    def load_splits(self) -> dict[str, SplitTensors]:
        self.generate()
        return super().load_splits()  # type: ignore[misc]
