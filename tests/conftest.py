"""Shared fixtures: tiny data files written by the project's own generators."""

import os

os.environ.setdefault("WANDB_MODE", "disabled")
# tiny models run faster on one thread; two OpenMP threads on a busy 2-core machine spin-wait each other
os.environ.setdefault("OMP_NUM_THREADS", "1")

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

from lightning_kd.data.generate.mmsa import write_mmsa_pickle  # noqa: E402
from repo_clean import repository_stays_clean  # noqa: E402, F401  (autouse: tests never write into the checkout)

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


ROOT = Path(__file__).resolve().parents[1]

#: overrides that make any DMD/fusion config tiny and quiet (hidden 8, 1 layer, no accumulation)
TINY_MODEL_ARGS = [
    "--model.init_args.net.hidden=8", "--model.init_args.net.heads=2", "--model.init_args.net.layers=1",
    "--trainer.accumulate_grad_batches=1", "--trainer.enable_progress_bar=false",
    "--trainer.enable_model_summary=false", "--model.init_args.lr=1e-3",
]


@pytest.fixture
def tiny_run_args(tiny_mmsa_aligned: Path, tmp_path: Path) -> list[str]:
    """CLI arguments for a tiny DMD run on generated data, writing under ``tmp_path/runs``."""
    return ["-c", str(ROOT / "configs/dmd/mosi_aligned.yaml"), "--data.init_args.path", str(tiny_mmsa_aligned),
            "--trainer.logger.init_args.save_dir", str(tmp_path / "runs"), *TINY_MODEL_ARGS]


# -- MulT-style pickles (mosi_data.pkl / iemocap_data.pkl layout), written by the project's generator -----
TINY_MULT_N = (40, 12, 16)
TINY_MULT_DIMS = (16, 6, 5)
TINY_MULT_LENGTH = 10


@pytest.fixture(scope="session")
def tiny_mult_iemocap(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Tiny MulT IEMOCAP pickle: n=(40, 12, 16), dims (16, 6, 5), length 10, labels (N, 4, 2)."""
    from lightning_kd.data.generate.mult import write_mult_pickle

    path = tmp_path_factory.mktemp("mult") / "iemocap_data.pkl"
    return write_mult_pickle(path, dataset="iemocap", n=TINY_MULT_N, dims=TINY_MULT_DIMS, length=TINY_MULT_LENGTH,
                             seed=0)


@pytest.fixture(scope="session")
def tiny_mult_mosi(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Tiny MulT MOSI pickle: n=(40, 12, 16), dims (16, 6, 5), length 10, labels (N, 1, 1) scores."""
    from lightning_kd.data.generate.mult import write_mult_pickle

    path = tmp_path_factory.mktemp("mult") / "mosi_data.pkl"
    return write_mult_pickle(path, dataset="mosi", n=TINY_MULT_N, dims=TINY_MULT_DIMS, length=TINY_MULT_LENGTH, seed=0)


@pytest.fixture(scope="module")
def single_thread():
    """One intra-op thread for a test module (``pytestmark = pytest.mark.usefixtures("single_thread")``).

    Tiny models run faster on one thread, and two OpenMP threads on a shared 2-core machine can spin-wait
    each step up to hundreds of times slower. The previous setting is restored after the module.
    """
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def resolved_config(*args: str) -> dict:
    """The complete config the CLI resolves for ``fit *args`` (composed files, overrides), as `--print_config`
    prints it."""
    import contextlib
    import io

    import yaml

    from lightning_kd.cli import main

    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit) as exc:
        main(["fit", *args, "--print_config"])
    assert exc.value.code in (0, None), out.getvalue()[-2000:]
    return yaml.safe_load(out.getvalue())
