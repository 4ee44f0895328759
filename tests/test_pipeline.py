"""`lightning-kd pipeline`: named stages, teachers from any earlier stages, shared arguments, resume manifest."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml
from kd_helpers import METHOD, write_stage

import lightning_kd.cli as cli_module
from lightning_kd.cli import main
from lightning_kd.io import file_sha256

pytestmark = pytest.mark.usefixtures("single_thread")


@pytest.fixture
def fits(monkeypatch: pytest.MonkeyPatch) -> list:
    """The CLIs the pipeline builds (one per fitted stage)."""
    built: list = []
    build = cli_module.build_cli

    def spy(args=None, run=True):
        built.append(build(args, run))
        return built[-1]

    monkeypatch.setattr(cli_module, "build_cli", spy)
    return built


def chain(tmp_path: Path, data: Path) -> list[Path]:
    """teacher (all inputs) -> ta1 (text+vision; previous stage) -> ta2 (audio+vision; teacher, ta1) -> student
    (vision only; taught by all three with plain logit KD)."""
    d = tmp_path / "cfg"
    d.mkdir()
    kd = {"temperature": 2.0, "weight": 0.5}
    return [write_stage(d / "teacher.yaml", data),
            write_stage(d / "ta1.yaml", data, ("text", "vision"), logit_kd=kd),
            write_stage(d / "ta2.yaml", data, ("audio", "vision"), teacher_stages=["teacher", "ta1"], logit_kd=kd),
            write_stage(d / "student.yaml", data, ("vision",), teacher_stages=["teacher", "ta1", "ta2"], logit_kd=kd)]


def shared(tmp_path: Path, hidden: int = 4) -> list[str]:
    """Shared arguments: the save dir, and a `-c` file layered after each stage's own config."""
    layer = tmp_path / f"shared_{hidden}.yaml"
    layer.write_text(yaml.safe_dump({"model.init_args.hidden": hidden}))
    return ["--trainer.logger.init_args.save_dir", str(tmp_path / "runs"), "-c", str(layer)]


@pytest.mark.slow
def test_chain_teacher_ta1_ta2_student(tiny_mmsa_aligned: Path, tmp_path: Path, fits: list,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    stages = chain(tmp_path, tiny_mmsa_aligned)
    main(["pipeline", *map(str, stages), "--", *shared(tmp_path)])
    assert len(fits) == 4
    runs = tmp_path / "runs/tiny"
    best = {}
    for cli, name in zip(fits, ("teacher", "ta1", "ta2", "student")):
        run = runs / name / "version_0"
        best[name] = Path(cli.trainer.checkpoint_callback.best_model_path)
        assert best[name].parent == run / "checkpoints"
        assert "acc" in "".join(json.loads((run / "test_metrics.json").read_text())["metrics"])  # tested after fit
        ck = torch.load(best[name], weights_only=True)
        assert ck["hyper_parameters"]["hidden"] == 4  # the shared `-c` layer came after the stage config
    teachers = {name: [r["path"] for r in torch.load(best[name], weights_only=True)["lightning_kd"].get("teachers", [])]
                for name in best}
    assert teachers == {"teacher": [], "ta1": [str(best["teacher"])],
                        "ta2": [str(best["teacher"]), str(best["ta1"])],
                        "student": [str(best["teacher"]), str(best["ta1"]), str(best["ta2"])]}
    assert fits[1].model.teacher_ckpt == str(best["teacher"])  # no teacher_stages: the previous stage's option
    assert fits[3].model.teacher_ckpts == [str(best[n]) for n in ("teacher", "ta1", "ta2")]
    assert all(r["method"] == METHOD for r in fits[3].model.teacher_records)
    student_metrics = (runs / "student/version_0/metrics.csv").read_text()
    assert "train/logit_kd" in student_metrics and "train/method_loss" in student_metrics
    manifest = json.loads((runs / "pipeline.json").read_text())["stages"]
    assert set(manifest) == {"teacher", "ta1", "ta2", "student"}
    for name, entry in manifest.items():
        assert entry["checkpoint"] == str(best[name]) and entry["sha256"] == file_sha256(best[name])
        assert entry["run_dir"] == str(runs / name / "version_0") and len(entry["fingerprint"]) == 64
    out = capsys.readouterr().out
    assert "stage 4/4 student: fit" in out and ": skip" not in out


@pytest.mark.slow
def test_rerun_skips_up_to_date_stages_and_refits_what_changed(tiny_mmsa_aligned: Path, tmp_path: Path, fits: list,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    stages = chain(tmp_path, tiny_mmsa_aligned)[:3]  # teacher -> ta1 -> ta2 (taught by both)
    args = ["pipeline", *map(str, stages), "--", *shared(tmp_path)]
    main(args)
    assert len(fits) == 3
    runs = tmp_path / "runs/tiny"
    ckpts = {n: Path(c.trainer.checkpoint_callback.best_model_path) for c, n in zip(fits, ("teacher", "ta1", "ta2"))}
    mtimes = {n: p.stat().st_mtime_ns for n, p in ckpts.items()}
    capsys.readouterr()

    main(args)  # nothing changed: nothing is fitted
    out = capsys.readouterr().out
    assert len(fits) == 3 and out.count(": skip (up to date") == 3
    assert {n: p.stat().st_mtime_ns for n, p in ckpts.items()} == mtimes
    assert not any((runs / n / "version_1").exists() for n in ckpts)

    # a changed stage config re-runs that stage only (nothing after it here); earlier stages are skipped
    cfg = yaml.safe_load(stages[2].read_text())
    cfg["model"]["init_args"]["logit_kd"]["temperature"] = 3.0
    stages[2].write_text(yaml.safe_dump(cfg, sort_keys=False))
    main(args)
    out = capsys.readouterr().out
    assert len(fits) == 4 and "stage 1/3 teacher: skip" in out and "stage 2/3 ta1: skip" in out
    assert (runs / "ta2/version_1").is_dir() and not (runs / "ta1/version_1").exists()
    assert [r["path"] for r in fits[-1].model.teacher_records] == [str(ckpts["teacher"]), str(ckpts["ta1"])]

    # a changed shared argument re-runs every stage, each taught by the new checkpoints
    main(["pipeline", *map(str, stages), "--", *shared(tmp_path, hidden=6)])
    out = capsys.readouterr().out
    assert len(fits) == 7 and ": skip" not in out
    new_teacher = Path(fits[4].trainer.checkpoint_callback.best_model_path)
    assert new_teacher.parent == runs / "teacher/version_1/checkpoints"
    assert fits[5].model.teacher_ckpt == str(new_teacher)
    manifest = json.loads((runs / "pipeline.json").read_text())["stages"]
    assert manifest["ta2"]["checkpoint"] == fits[6].trainer.checkpoint_callback.best_model_path
    # the earlier variant (hidden 4, ta2 at temperature 3) is still recorded: nothing to fit
    main(["pipeline", *map(str, stages), "--", *shared(tmp_path)])
    assert len(fits) == 7 and capsys.readouterr().out.count(": skip (up to date") == 3
    assert json.loads((runs / "pipeline.json").read_text())["stages"]["ta2"]["run_dir"] == str(runs / "ta2/version_1")
    # a checkpoint replaced on disk is not trusted: its stage (and the ones it teaches) is fitted again
    Path(manifest["ta1"]["checkpoint"]).write_bytes(b"not the checkpoint")
    main(["pipeline", *map(str, stages), "--", *shared(tmp_path, hidden=6)])
    out = capsys.readouterr().out
    assert len(fits) == 9 and "stage 1/3 teacher: skip" in out and out.count(": skip") == 1


def one_line_error(capsys: pytest.CaptureFixture[str], exc: pytest.ExceptionInfo) -> str:
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("lightning-kd: error:") and "\n" not in err and "Traceback" not in err
    return err


@pytest.mark.parametrize("teachers, expected", [
    (["teacher", "nope"], "teacher_stages names 'nope', which is not a stage of this pipeline"),
    (["student"], "teacher_stages names 'student', which runs as this stage"),
    (["later"], "teacher_stages names 'later', which runs after this stage"),
])
def test_bad_teacher_stages_are_one_line(tiny_mmsa_aligned: Path, tmp_path: Path, teachers: list[str], expected: str,
                                         fits: list, capsys: pytest.CaptureFixture[str]) -> None:
    a = write_stage(tmp_path / "teacher.yaml", tiny_mmsa_aligned)
    b = write_stage(tmp_path / "student.yaml", tiny_mmsa_aligned, ("vision",), teacher_stages=teachers)
    c = write_stage(tmp_path / "later.yaml", tiny_mmsa_aligned)
    with pytest.raises(SystemExit) as exc:
        main(["pipeline", str(a), str(b), str(c), "--", "--trainer.logger.init_args.save_dir", str(tmp_path / "r")])
    err = one_line_error(capsys, exc)
    assert expected in err and "Fix:" in err
    assert not fits and not (tmp_path / "r").exists()  # checked before anything runs


def test_plain_fit_of_a_stage_config_without_teachers_is_one_line(tiny_mmsa_aligned: Path, tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    cfg = write_stage(tmp_path / "student.yaml", tiny_mmsa_aligned, ("vision",), teacher_stages=["teacher"])
    with pytest.raises(SystemExit) as exc:
        main(["fit", "-c", str(cfg), "--trainer.logger.init_args.save_dir", str(tmp_path / "r")])
    err = one_line_error(capsys, exc)
    assert "lightning-kd pipeline" in err and "model.init_args.teacher_ckpts" in err
    assert not (tmp_path / "r").exists()


def test_stage_without_logger_name_gets_the_stage_name(tiny_mmsa_aligned: Path, tmp_path: Path, fits: list) -> None:
    a = write_stage(tmp_path / "first.yaml", tiny_mmsa_aligned)
    b = write_stage(tmp_path / "second.yaml", tiny_mmsa_aligned, ("vision",), teacher_stages=[])
    raw = yaml.safe_load(b.read_text())
    del raw["trainer"]["logger"]["init_args"]["name"]
    raw["trainer"]["limit_train_batches"] = 1
    b.write_text(yaml.safe_dump(raw))
    main(["pipeline", str(a), str(b), "--", "--trainer.logger.init_args.save_dir", str(tmp_path / "runs"),
          "--trainer.limit_train_batches", "1"])
    assert Path(fits[1].trainer.checkpoint_callback.best_model_path).parent == \
        tmp_path / "runs/second/version_0/checkpoints"
    assert fits[1].model.teacher_ckpts == []  # teacher_stages: [] = no teacher
    assert (tmp_path / "runs/tiny/pipeline.json").is_file()
