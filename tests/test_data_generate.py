"""``lightning-kd generate``: never overwrites without --force, refuses empty splits and unwritable outputs with one
line, and leaves no temporary file behind when it is killed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lightning_kd.data.generate.command import generate_cli

ROOT = Path(__file__).resolve().parents[1]

SMALL = {
    "mmsa": ["--n", "3", "2", "2", "--dims", "4", "3", "2", "--lengths", "5", "5", "5"],
    "mult": ["--n", "3", "2", "2", "--dims", "4", "3", "2", "--length", "5"],
    "multiview": ["--n", "20", "--dims", "3", "2", "--clusters", "2"],
}


def _error_line(capsys: pytest.CaptureFixture, argv: list[str]) -> str:
    from lightning_kd.cli import main

    with pytest.raises(SystemExit) as exit_:
        main(["generate", *argv])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("lightning-kd: error: "), err
    return err


def _no_temp_files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob(".*.tmp"))


@pytest.mark.parametrize("fmt", ["mmsa", "mult", "multiview"])
def test_existing_file_is_not_overwritten_without_force(tmp_path: Path, capsys: pytest.CaptureFixture,
                                                        fmt: str) -> None:
    out = tmp_path / ("x.mat" if fmt == "multiview" else "x.pkl")
    out.write_bytes(b"a real data set")
    err = _error_line(capsys, [fmt, "--out", str(out), *SMALL[fmt]])
    assert str(out) in err and "--force" in err
    assert out.read_bytes() == b"a real data set"
    generate_cli([fmt, "--out", str(out), *SMALL[fmt], "--force"])
    assert out.read_bytes() != b"a real data set" and "wrote" in capsys.readouterr().out
    assert _no_temp_files(tmp_path) == []


def test_mfeat_folder_with_files_is_not_overwritten_without_force(tmp_path: Path,
                                                                   capsys: pytest.CaptureFixture) -> None:
    generate_cli(["mfeat", "--out", str(tmp_path / "mf"), "--per-class", "1"])
    before = (tmp_path / "mf" / "mfeat-fou.csv").read_bytes()
    err = _error_line(capsys, ["mfeat", "--out", str(tmp_path / "mf"), "--per-class", "2", "--seed", "3"])
    assert "mfeat-fou.csv" in err and "--force" in err
    assert (tmp_path / "mf" / "mfeat-fou.csv").read_bytes() == before
    generate_cli(["mfeat", "--out", str(tmp_path / "mf"), "--per-class", "2", "--seed", "3", "--force"])
    assert (tmp_path / "mf" / "mfeat-fou.csv").read_bytes() != before


@pytest.mark.parametrize("fmt", ["mmsa", "mult"])
@pytest.mark.parametrize("n", [["0", "0", "0"], ["5", "0", "2"], ["5", "2", "-1"]])
def test_empty_split_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture, fmt: str, n: list[str]) -> None:
    out = tmp_path / "x.pkl"
    err = _error_line(capsys, [fmt, "--out", str(out), "--n", *n])
    assert f"--n {' '.join(n)}" in err and "at least 1 sample" in err
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_zero_samples_per_class_and_one_cluster_are_refused(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert "--per-class 0" in _error_line(capsys, ["mfeat", "--out", str(tmp_path / "mf"), "--per-class", "0"])
    assert "clusters" in _error_line(capsys, ["multiview", "--out", str(tmp_path / "m.mat"), "--clusters", "1"])
    assert list(tmp_path.iterdir()) == []


def test_unwritable_out_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    (tmp_path / "file").write_text("x")
    err = _error_line(capsys, ["mmsa", "--out", str(tmp_path / "file" / "x.pkl"), *SMALL["mmsa"]])
    assert "cannot write --out" in err and str(tmp_path / "file") in err
    err = _error_line(capsys, ["mult", "--out", str(tmp_path), *SMALL["mult"]])
    assert "is a directory" in err
    err = _error_line(capsys, ["mfeat", "--out", str(tmp_path / "file")])
    assert "is a file" in err


def test_odd_emotion_options(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from lightning_kd.data.formats.mult import emotion_label_counts, read_mult

    out = tmp_path / "i.pkl"
    generate_cli(["mult", "--out", str(out), "--n", "20", "10", "10", "--dims", "4", "3", "2", "--length", "5",
                  "--no-emotion", "0.2", "--several-emotions", "0.1"])
    splits = read_mult(out)
    assert emotion_label_counts(splits["train"].target) == {"no_emotion": 4, "several": 2}
    err = _error_line(capsys, ["mult", "--dataset", "mosi", "--out", str(tmp_path / "m.pkl"), "--no-emotion", "0.1"])
    assert "iemocap" in err
    assert "sum <= 1" in _error_line(capsys, ["mult", "--out", str(tmp_path / "j.pkl"), *SMALL["mult"],
                                              "--no-emotion", "0.6", "--several-emotions", "0.6"])


@pytest.mark.slow
def test_sigterm_mid_write_leaves_no_temporary_file(tmp_path: Path) -> None:
    """Python's default SIGTERM kills without unwinding; the command turns it into SystemExit, so the atomic
    writer removes its temporary file (without the handler the `.big.pkl.*.tmp` file stays)."""
    out = tmp_path / "big.pkl"
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""), OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "lightning_kd.cli", "generate", "mmsa", "--out", str(out),
           "--n", "1000", "1", "1", "--dims", "256", "5", "20"]  # ~60 MB: the write takes a while
    proc = subprocess.Popen(cmd, env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 300
        while not list(tmp_path.glob(".big.pkl.*.tmp")):
            assert proc.poll() is None, f"finished before the write was seen: {proc.communicate()}"
            assert time.monotonic() < deadline, "no temporary file appeared"
            time.sleep(0.002)
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 128 + signal.SIGTERM, stderr
    assert "stopped by signal 15" in stderr and stderr.strip().count("\n") == 0, stderr
    assert _no_temp_files(tmp_path) == [] and not out.exists()


def test_atomic_write_removes_a_temp_file_interrupted_the_instant_it_is_created(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A signal can arrive right after the temporary file is created, before any write: the file still goes."""
    import builtins

    import lightning_kd.io as io_mod

    def open_then_interrupt(file, mode="r", **kwargs):
        builtins.open(file, mode, **kwargs).close()  # the file now exists ...
        raise KeyboardInterrupt  # ... and the "signal" arrives before open returns

    monkeypatch.setattr(io_mod, "open", open_then_interrupt, raising=False)
    with pytest.raises(KeyboardInterrupt):
        io_mod.atomic_write_binary(tmp_path / "x.pkl", lambda f: f.write(b"data"))
    assert list(tmp_path.iterdir()) == []


def test_atomic_write_files_follow_the_umask(tmp_path: Path) -> None:
    """Generated data files are readable like any other file (a mkstemp file would be 0600)."""
    import lightning_kd.io as io_mod

    old = os.umask(0o022)
    try:
        path = io_mod.atomic_write_binary(tmp_path / "x.pkl", lambda f: f.write(b"data"))
    finally:
        os.umask(old)
    assert path.stat().st_mode & 0o777 == 0o644 and path.read_bytes() == b"data"
