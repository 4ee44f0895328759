"""Bad input through the CLI stops with one line (and leaves nothing behind): unsafe or broken checkpoints,
data that does not fit the method, unusable output paths, unknown options, failed runs."""

from __future__ import annotations

import os
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch

from conftest import ROOT
from lightning_kd.cli import main

pytestmark = pytest.mark.usefixtures("single_thread")

CORRKD_TINY = ["--model.init_args.net.dim", "8", "--model.init_args.net.heads", "2", "--model.init_args.net.layers", "1",
               "--model.init_args.loss.mi_hidden", "8", "--data.init_args.batch_size", "8",
               "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false"]


class Evil:
    """Unpickling this runs code: it writes a marker file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):  # noqa: ANN204
        return (Path.touch, (self.marker,))


def evil_checkpoint(path: Path, marker: Path) -> Path:
    """A file that looks like a lightning_kd checkpoint but runs code when fully unpickled."""
    torch.save({"state_dict": {}, "hyper_parameters": {"x": Evil(marker)},
                "lightning_kd": {"method": "lightning_kd.methods.dmd.module.DMD", "version": "0"}}, path)
    return path


def one_line_error(capsys: pytest.CaptureFixture[str], exc: pytest.ExceptionInfo[SystemExit]) -> str:
    """The CLI exited with status 2 and printed exactly one line, ``lightning-kd: error: ...``."""
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("lightning-kd: error:") and "\n" not in err and "Traceback" not in err, err
    return err


def test_evil_file_really_runs_code_when_fully_unpickled(tmp_path: Path) -> None:
    """The fixture is a real attack: ``weights_only=False`` (the old teacher loader) writes the marker."""
    marker = tmp_path / "marker"
    path = evil_checkpoint(tmp_path / "evil.ckpt", marker)
    torch.load(path, weights_only=False)
    assert marker.exists()


def test_malicious_teacher_is_refused_unread(tiny_mult_mosi: Path, tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    marker = tmp_path / "marker"
    evil = evil_checkpoint(tmp_path / "teacher.ckpt", marker)
    with pytest.raises(SystemExit) as exc:
        main(["fit", "-c", str(ROOT / "configs/corrkd/mosi_student.yaml"), "--data.init_args.path",
              str(tiny_mult_mosi), *CORRKD_TINY, "--model.init_args.teacher_ckpt", str(evil),
              "--trainer.logger.init_args.save_dir", str(tmp_path / "runs"), "--trainer.max_epochs=1"])
    err = one_line_error(capsys, exc)
    assert str(evil) in err and "refused unread" in err and "model.init_args.teacher_ckpt" in err
    assert not marker.exists()
    assert not list((tmp_path / "runs").rglob("version_*")), "a refused run left a run directory"


@pytest.mark.parametrize("kind", ["malicious", "truncated", "not_a_checkpoint", "not_torch", "missing"])
def test_bad_ckpt_path_is_one_line(kind: str, tiny_run_args: list[str], tmp_path: Path,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    marker = tmp_path / "marker"
    path = tmp_path / f"{kind}.ckpt"
    if kind == "malicious":
        evil_checkpoint(path, marker)
    elif kind == "truncated":
        torch.save({"state_dict": {"w": torch.zeros(1000)}, "lightning_kd": {}}, path)
        path.write_bytes(path.read_bytes()[:3000])
    elif kind == "not_a_checkpoint":
        torch.save([torch.zeros(2)], path)
    elif kind == "not_torch":
        path.write_bytes(b"hello, this is not a checkpoint" * 10)  # torch.load: KeyError: 101
    with pytest.raises(SystemExit) as exc:
        main(["test", *tiny_run_args, "--ckpt_path", str(path)])
    err = one_line_error(capsys, exc)
    expected = {"malicious": "refused unread", "truncated": "truncated", "not_a_checkpoint": "not a Lightning",
                "not_torch": "truncated or not a file written by torch.save", "missing": "not found"}[kind]
    assert str(path) in err and expected in err and "Fix:" in err
    assert not marker.exists()
    assert not list((tmp_path / "runs").rglob("version_*"))


@pytest.mark.parametrize("case", ["dmd_on_iemocap", "corrkd_on_multiview", "vlsg_on_mmsa"])
def test_data_of_another_method_is_refused_before_the_model_is_built(
        case: str, tiny_mmsa_aligned: Path, tiny_mult_iemocap: Path, tmp_path: Path,
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    from lightning_kd.data.generate.multiview import write_multiview_mat
    from lightning_kd.methods.corrkd import module as corrkd_module
    from lightning_kd.methods.dmd import module as dmd_module
    from lightning_kd.methods.vlsg import module as vlsg_module

    built: list[str] = []
    for mod, net in ((dmd_module, "DMDNet"), (corrkd_module, "CorrKDNet"), (vlsg_module, "VLSGNet")):
        monkeypatch.setattr(mod, net, lambda *a, _n=net, **k: built.append(_n))
    mat = write_multiview_mat(tmp_path / "mv.mat", n=30, dims=(4, 3), clusters=3)
    config, data, expected = {
        "dmd_on_iemocap": ("dmd/mosi_aligned", ["--data", "lightning_kd.data.formats.mult.MulTDataModule",
                                                "--data.init_args.path", str(tiny_mult_iemocap)],
                           ["builds DMD", "sentiment scores", "MulTDataModule", "multi-label emotions",
                            "configs/corrkd/iemocap_*.yaml"]),
        "corrkd_on_multiview": ("corrkd/mosi_teacher",
                                ["--data", "lightning_kd.data.formats.multiview.MultiViewDataModule",
                                 "--data.init_args.path", str(mat)],
                                ["builds CorrKD", "text (or text_bert), audio, vision", "view_0, view_1",
                                 "configs/vlsg/*.yaml"]),
        "vlsg_on_mmsa": ("vlsg/mat", ["--data", "lightning_kd.data.formats.mmsa.MMSADataModule",
                                      "--data.init_args.path", str(tiny_mmsa_aligned)],
                         ["builds VLSG", "views view_0", "MMSADataModule", "sentiment scores", "configs/dmd/*.yaml"]),
    }[case]
    with pytest.raises(SystemExit) as exc:
        main(["fit", "-c", str(ROOT / f"configs/{config}.yaml"), *data,
              "--trainer.logger.init_args.save_dir", str(tmp_path / "runs")])
    err = one_line_error(capsys, exc)
    assert f"configs/{config}.yaml" in err and str(data[-1]) in err
    for part in expected:
        assert part in err, (part, err)
    assert built == [], "the model was built before the data was checked"
    assert not (tmp_path / "runs").exists()


def test_corrkd_task_must_match_the_labels(tiny_mult_iemocap: Path, tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    """A binary-sentiment CorrKD on an emotion file: the declaration depends on the configured task."""
    with pytest.raises(SystemExit) as exc:
        main(["fit", "-c", str(ROOT / "configs/corrkd/mosi_teacher.yaml"), "--data.init_args.path",
              str(tiny_mult_iemocap), "--data.init_args.task", "auto", *CORRKD_TINY,
              "--trainer.logger.init_args.save_dir", str(tmp_path / "runs")])
    err = one_line_error(capsys, exc)
    assert "builds CorrKD" in err and "multi-label emotions" in err and "configs/corrkd/iemocap_*.yaml" in err


def test_refused_run_leaves_no_run_directory(tiny_mmsa_aligned: Path, tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    """A student without a teacher is refused when fitting starts (model setup): no version_N/ is left."""
    with pytest.raises(SystemExit) as exc:
        main(["fit", "-c", str(ROOT / "configs/corrkd/synthetic_student.yaml"), "--data.class_path",
              "lightning_kd.data.formats.mmsa.MMSADataModule", "--data.init_args.path", str(tiny_mmsa_aligned),
              *CORRKD_TINY, "--trainer.logger.init_args.save_dir", str(tmp_path / "runs")])
    assert "teacher_ckpt" in one_line_error(capsys, exc)
    assert not list((tmp_path / "runs").rglob("version_*"))
    assert not list((tmp_path / "runs").rglob("config.yaml"))


class FailOnTrainStart(pl.Callback):
    """Fails once the run has started (after config.yaml and the logger's files were written)."""

    seen_config: bool = False

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        from lightning_kd.callbacks import run_dir

        FailOnTrainStart.seen_config = (run_dir(trainer) / "config.yaml").is_file()
        raise RuntimeError("boom")


def test_run_failing_before_any_output_removes_its_directory(tiny_run_args: list[str], tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="boom"):
        main(["fit", *tiny_run_args, "--trainer.max_epochs=1",
              "--trainer.callbacks+=test_cli_errors.FailOnTrainStart"])
    assert FailOnTrainStart.seen_config, "the run failed before writing config.yaml: this tests nothing"
    assert not list((tmp_path / "runs").rglob("version_*"))


def test_failed_run_keeps_a_directory_that_holds_results(tmp_path: Path) -> None:
    from lightning_kd.callbacks.run_dir import is_unused

    d = tmp_path / "version_0"
    (d / "checkpoints").mkdir(parents=True)
    (d / "config.yaml").write_text("x: 1\n")
    (d / "metrics.csv").write_text("epoch,step\n")
    assert is_unused(d)
    (d / "metrics.csv").write_text("epoch,step\n0,1\n")  # a logged epoch is a result
    assert not is_unused(d)
    (d / "metrics.csv").write_text("epoch,step\n")
    (d / "checkpoints" / "last.ckpt").write_bytes(b"x")
    assert not is_unused(d)


@pytest.mark.parametrize("where", ["file", "under_file", "unwritable"])
def test_unusable_save_dir_is_one_line(where: str, tiny_run_args: list[str], tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    a_file = tmp_path / "a_file"
    a_file.write_text("")
    save_dir = {"file": a_file, "under_file": a_file / "runs", "unwritable": tmp_path / "locked" / "runs"}[where]
    if where == "unwritable":
        (tmp_path / "locked").mkdir()
        real = os.access
        monkeypatch.setattr(os, "access", lambda p, mode, **kw: Path(p) != tmp_path / "locked" and real(p, mode, **kw))
    with pytest.raises(SystemExit) as exc:
        main(["fit", *tiny_run_args, "--trainer.logger.init_args.save_dir", str(save_dir)])
    err = one_line_error(capsys, exc)
    reason = {"file": "is a file, not a directory", "under_file": "is a file, so no directory",
              "unwritable": "is not writable"}[where]
    assert str(save_dir) in err and "--trainer.logger.init_args.save_dir" in err and reason in err


@pytest.mark.parametrize("where", ["directory", "under_file"])
def test_unusable_generate_out_is_one_line(where: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a_file = tmp_path / "a_file"
    a_file.write_text("")
    out = {"directory": tmp_path, "under_file": a_file / "x.pkl"}[where]
    with pytest.raises(SystemExit) as exc:
        main(["generate", "mmsa", "--out", str(out), "--n", "8", "4", "4"])
    err = one_line_error(capsys, exc)
    assert str(out) in err and "--out" in err
    assert a_file.read_text() == ""


@pytest.mark.parametrize("bad", ["--model.init_args.bogus", "--bogus"])
def test_unknown_option_error_is_the_last_line(bad: str, tiny_run_args: list[str],
                                               capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["fit", *tiny_run_args, bad, "3"])
    assert exc.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) <= 2, lines  # not the 50 lines of usage
    assert "bogus" in lines[-1] and lines[-1].startswith("lightning-kd: error:") and "--help" in lines[-1]


def test_missing_clip_weights_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = "/nonexistent.safetensors"
    with pytest.raises(SystemExit) as exc:
        main(["fit", "-c", str(ROOT / "configs/vlsg/digits.yaml"), "--data.init_args.pretrained", missing,
              "--data.init_args.cache_dir", str(tmp_path / "cache"),
              "--trainer.logger.init_args.save_dir", str(tmp_path / "runs")])
    err = one_line_error(capsys, exc)
    assert missing in err and "data.init_args.pretrained" in err


def test_pipeline_with_one_stage_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["pipeline", str(ROOT / "configs/corrkd/synthetic_teacher.yaml")])
    assert "at least two stage configs" in one_line_error(capsys, exc)
