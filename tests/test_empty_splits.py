"""Bad sizes in a data file stop with one line before anything runs: empty splits, absurd sequence lengths."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from lightning_kd.checkpoint import DataFormatError
from lightning_kd.cli import main
from lightning_kd.data import MMSADataModule, MulTDataModule
from lightning_kd.data import split as split_module
from lightning_kd.data.datamodule import SPLITS, InMemoryDataModule
from lightning_kd.data.split import SplitTensors, check_allocation, check_mask_allocation

ROOT = Path(__file__).resolve().parents[1]


def rewrite(src: Path, dst: Path, edit) -> Path:
    with src.open("rb") as f:
        data = pickle.load(f)
    edit(data)
    with dst.open("wb") as f:
        pickle.dump(data, f)
    return dst


def emptied(d: dict[str, Any]) -> dict[str, Any]:
    """The split with every per-sample key cut to 0 rows."""
    return {k: v[:0] for k, v in d.items()}


def cli_error(args: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    with pytest.raises(SystemExit) as e:
        main(args)
    assert e.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    return err


# -- empty splits ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("empty", SPLITS)
def test_cli_refuses_an_empty_split_with_one_line(empty: str, tiny_run_args: list[str], tiny_mmsa_aligned: Path,
                                                 tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = rewrite(tiny_mmsa_aligned, tmp_path / "empty.pkl", lambda d: d.__setitem__(empty, emptied(d[empty])))
    args = [a if a != str(tiny_mmsa_aligned) else str(bad) for a in tiny_run_args]
    for command in ("fit", "test"):
        err = cli_error([command, *args, "--trainer.max_epochs=1"], capsys)
        assert str(bad) in err and f"split {empty!r}" in err and "0 samples" in err and "Fix:" in err
    # refused before the run started: no run directory, no checkpoint, no metrics
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").rglob("*.ckpt"))
    assert not list(tmp_path.rglob("test_metrics.json"))


@pytest.mark.parametrize("empty", SPLITS)
def test_every_reader_refuses_an_empty_split(empty: str, tiny_mult_iemocap: Path, tiny_mmsa_unaligned: Path,
                                             tmp_path: Path) -> None:
    for cls, src in ((MulTDataModule, tiny_mult_iemocap), (MMSADataModule, tiny_mmsa_unaligned)):
        bad = rewrite(src, tmp_path / f"{cls.__name__}.pkl", lambda d: d.__setitem__(empty, emptied(d[empty])))
        dm = cls(str(bad))
        with pytest.raises(DataFormatError, match=rf"{bad}, split '{empty}': has 0 samples.*Fix:") as e:
            dm.setup("fit")
        assert "\n" not in str(e.value)


def test_the_shared_base_refuses_a_missing_split() -> None:
    class NoTest(InMemoryDataModule):
        def load_splits(self) -> dict[str, SplitTensors]:
            s = SplitTensors(inputs={"x": torch.zeros(2, 3, 1)}, masks={}, target=torch.zeros(2), ids=["a", "b"])
            return {"train": s, "valid": s}

    with pytest.raises(DataFormatError, match=r"NoTest: NoTest.load_splits returned no 'test' split"):
        NoTest().setup()


# -- sizes checked against memory before allocating --------------------------------------------------------------
def test_check_allocation_compares_with_available_memory(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(split_module, "available_memory", lambda: 2**30)
    check_allocation(2**30, "what", "f.pkl")  # fits exactly
    with pytest.raises(DataFormatError, match=r"^f\.pkl, what would need 1.0 GiB, more than the 1.0 GiB.*Fix: ") as e:
        check_allocation(2**30 + 2**20, "what", "f.pkl")
    assert "\n" not in str(e.value)
    monkeypatch.setattr(split_module, "available_memory", lambda: None)
    check_allocation(10**18, "what")  # unknown memory: nothing checked


def test_available_memory_is_read_without_psutil() -> None:
    avail = split_module.available_memory()
    assert avail is None or 0 < avail < 2**60


def test_mask_check_names_the_key_with_absurd_steps(monkeypatch: pytest.MonkeyPatch) -> None:
    """Lengths that claim 10**9 steps: 8 samples need 8 GB of masks; with 4 GB available that is refused."""
    monkeypatch.setattr(split_module, "available_memory", lambda: 4 * 2**30)
    inputs = {"text": np.zeros((8, 50, 4), np.float32), "audio": np.zeros((8, 10**9, 0), np.float32)}
    with pytest.raises(DataFormatError, match=r"f\.pkl, split 'train', key 'audio': the step masks of 8 samples x "
                                              r"1000000000 steps"):
        check_mask_allocation("f.pkl", "train", inputs)
    check_mask_allocation("f.pkl", "train", {"text": inputs["text"]})  # a real size passes


@pytest.mark.parametrize("reader", ["mmsa", "mult"])
def test_file_with_absurd_sequence_length_stops_with_one_line(reader: str, tiny_run_args: list[str],
                                                              tiny_mmsa_unaligned: Path, tiny_mult_mosi: Path,
                                                              tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    """A few-KB file whose audio claims 10**12 steps (a (N, 10**12, 0) array holds no bytes) is refused before
    the masks are built (without the check: numpy's MemoryError for an 8 TB ``arange``)."""
    steps = 10**12

    def edit(d: dict[str, Any]) -> None:
        n = len(d["train"]["audio"])
        d["train"]["audio"] = np.zeros((n, steps, 0), np.float32)
        if reader == "mmsa":
            d["train"]["audio_lengths"] = [steps] * n

    src = tiny_mmsa_unaligned if reader == "mmsa" else tiny_mult_mosi
    bad = rewrite(src, tmp_path / "absurd.pkl", edit)
    assert bad.stat().st_size <= src.stat().st_size  # no bigger than the tiny file it came from
    if reader == "mmsa":
        args = [*tiny_run_args[:2], "--data.init_args.path", str(bad), *tiny_run_args[4:]]
    else:
        args = ["-c", str(ROOT / "configs/corrkd/mosi_teacher.yaml"), "--data.init_args.path", str(bad),
                "--trainer.logger.init_args.save_dir", str(tmp_path / "runs")]
    err = cli_error(["fit", *args], capsys)
    assert str(bad) in err and "split 'train', key 'audio'" in err and f"{steps} steps" in err and "Fix:" in err
