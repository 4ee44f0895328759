"""Shared fixtures: tiny data files written by the project's own generators."""

import os

os.environ.setdefault("WANDB_MODE", "disabled")

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

from lightning_kd.data.synthetic import write_mmsa_pickle  # noqa: E402

TINY_N = (40, 12, 16)
TINY_DIMS = (32, 5, 7)
TINY_LENGTHS_ALIGNED = (12, 12, 12)
TINY_LENGTHS_UNALIGNED = (12, 20, 24)


@pytest.fixture(scope="session")
def tiny_mmsa_aligned(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Tiny aligned MMSA pickle: n=(40, 12, 16), dims (32, 5, 7), lengths (12, 12, 12)."""
    path = tmp_path_factory.mktemp("mmsa") / "aligned_50.pkl"
    return write_mmsa_pickle(path, n=TINY_N, dims=TINY_DIMS, lengths=TINY_LENGTHS_ALIGNED, aligned=True, seed=0)


@pytest.fixture(scope="session")
def tiny_mmsa_unaligned(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Tiny unaligned MMSA pickle: n=(40, 12, 16), dims (32, 5, 7), lengths (12, 20, 24)."""
    path = tmp_path_factory.mktemp("mmsa") / "unaligned_50.pkl"
    return write_mmsa_pickle(path, n=TINY_N, dims=TINY_DIMS, lengths=TINY_LENGTHS_UNALIGNED, aligned=False, seed=0)


@pytest.fixture(scope="session")
def tiny_mmsa(tiny_mmsa_aligned: Path, tiny_mmsa_unaligned: Path) -> dict[str, Path]:
    """Both tiny MMSA files: ``{"aligned": path, "unaligned": path}``."""
    return {"aligned": tiny_mmsa_aligned, "unaligned": tiny_mmsa_unaligned}
