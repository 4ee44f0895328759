"""CorrKD (CVPR 2024): network, objective, teacher/student roles, the two-stage pipeline, configs, resume, DDP."""

from __future__ import annotations

import csv
import hashlib
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

import lightning_kd.cli as cli_module
from conftest import ROOT, TINY_MODEL_ARGS, resolved_config
from lightning_kd.checkpoint import ConfigError
from lightning_kd.cli import build_cli, main
from lightning_kd.methods.corrkd import CorrKD, CorrKDNet, CorrKDObjective, CorrKDOutput
from lightning_kd.methods.corrkd.losses import prototype_labels
from lightning_kd.metrics.classification import BINARY_SENTIMENT_KEYS, emotion_keys

pytestmark = pytest.mark.usefixtures("single_thread")

CONFIGS = ROOT / "configs/corrkd"
TEACHER_YAML, STUDENT_YAML = str(CONFIGS / "synthetic_teacher.yaml"), str(CONFIGS / "synthetic_student.yaml")
METHOD = "lightning_kd.methods.corrkd.module.CorrKD"
DIMS = {"text": 32, "audio": 5, "vision": 7}
TINY_NET = {"dim": 8, "heads": 2, "layers": 1}
#: overrides that make any CorrKD config tiny and quiet
TINY = ["--model.init_args.net.dim", "8", "--model.init_args.net.heads", "2", "--model.init_args.net.layers", "1",
        "--model.init_args.loss.mi_hidden", "8", "--data.init_args.batch_size", "8",
        "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false"]


def mmsa(path: Path) -> list[str]:
    """The synthetic configs read the tiny generated MMSA file instead of generating a MOSI-sized one."""
    return ["--data.class_path", "lightning_kd.data.formats.mmsa.MMSADataModule", "--data.init_args.path", str(path)]


def sha256(path: Path | str) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def read_metrics(run: Path) -> dict[str, list[float]]:
    """Non-empty values of each column of a CSVLogger metrics.csv."""
    out: dict[str, list[float]] = {}
    with open(run / "metrics.csv", newline="") as f:
        for row in csv.DictReader(f):
            for k, v in row.items():
                if v not in ("", None):
                    out.setdefault(k, []).append(float(v))
    return out


@pytest.fixture(scope="module")
def teacher_ckpt(tiny_mmsa_aligned: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny CorrKD teacher (synthetic_teacher.yaml on the tiny MMSA file), 1 epoch."""
    save = tmp_path_factory.mktemp("corrkd_teacher")
    main(["fit", "-c", TEACHER_YAML, *mmsa(tiny_mmsa_aligned), *TINY, "--trainer.max_epochs=1",
          "--trainer.limit_train_batches=2", "--test_after_fit=false",
          "--trainer.logger.init_args.save_dir", str(save)])
    return save / "corrkd/synthetic_teacher/version_0/checkpoints/last.ckpt"


# -- network ------------------------------------------------------------------------------------------
def inputs(b: int = 5, steps: int = 9, seed: int = 0) -> tuple[dict, dict]:
    g = torch.Generator().manual_seed(seed)
    x = {m: torch.randn(b, steps, d, generator=g) for m, d in DIMS.items()}
    lens = torch.randint(2, steps + 1, (b,), generator=g)
    lens[0] = steps
    valid = torch.arange(steps)[None, :] < lens[:, None]
    return x, {m: valid.clone() for m in DIMS}


@pytest.mark.parametrize("task, tasks", [("binary_sentiment", 1), ("emotion", 4)])
def test_net_output_shapes(task: str, tasks: int) -> None:
    model = CorrKD(DIMS, task=task, net=TINY_NET)
    x, m = inputs()
    out = model.net(x, m)
    assert isinstance(out, CorrKDOutput)
    assert out.representation.shape == (5, 8) and out.logits.shape == (5, tasks, 2)
    assert model.net.inputs == ("audio", "text", "vision")


def test_pooling_ignores_padding_and_removed_modalities() -> None:
    torch.manual_seed(0)
    net = CorrKDNet(DIMS, dim=8, heads=2, layers=2).eval()
    x, m = inputs()
    ref = net(x, m)
    # other values on padded steps: same output (masked conv input, attention and pooling)
    noisy = {k: torch.where(m[k][..., None], v, 100 * torch.randn_like(v)) for k, v in x.items()}
    out = net(noisy, m)
    torch.testing.assert_close(out.representation, ref.representation, rtol=0, atol=1e-5)
    torch.testing.assert_close(out.logits, ref.logits, rtol=0, atol=1e-5)
    # a valid step does matter
    changed = {k: v.clone() for k, v in x.items()}
    changed["text"][0, 0] += 1.0
    assert not torch.allclose(net(changed, m).representation[0], ref.representation[0])
    # a removed modality (all-False mask) is ignored whatever it holds
    gone = {**m, "audio": torch.zeros_like(m["audio"])}
    a = net(x, gone)
    b = net({**x, "audio": torch.randn_like(x["audio"])}, gone)
    torch.testing.assert_close(a.representation, b.representation, rtol=0, atol=1e-5)
    assert torch.isfinite(a.logits).all()
    # nothing valid at all: zeros pooled, finite logits
    empty = {k: torch.zeros_like(v) for k, v in m.items()}
    e = net(x, empty)
    assert torch.equal(e.representation, torch.zeros_like(e.representation)) and torch.isfinite(e.logits).all()


def test_class_labels() -> None:
    model = CorrKD(DIMS, net=TINY_NET)
    assert model.class_labels(torch.tensor([-1.2, 0.0, 2.0])).tolist() == [[0], [1], [1]]
    emo = CorrKD(DIMS, task="emotion", net=TINY_NET)
    y = torch.tensor([[1, 0, 0, 0], [0, 0, 1, 0]])
    assert torch.equal(emo.class_labels(y), y)


# -- objective ----------------------------------------------------------------------------------------
def outputs(b: int, tasks: int, seed: int) -> CorrKDOutput:
    g = torch.Generator().manual_seed(seed)
    return CorrKDOutput(torch.randn(b, 8, generator=g, requires_grad=False),
                        torch.randn(b, tasks, 2, generator=g))


def test_objective_without_teacher_is_cross_entropy() -> None:
    obj = CorrKDObjective(tasks=4, classes=2)
    s = outputs(6, 4, 0)
    labels = torch.randint(0, 2, (6, 4), generator=torch.Generator().manual_seed(1))
    terms = obj(s, labels)
    assert set(terms) == {"task", "loss"}
    ce = F.cross_entropy(s.logits.reshape(-1, 2), labels.reshape(-1))
    torch.testing.assert_close(terms["loss"], ce)
    torch.testing.assert_close(terms["task"], ce)


@pytest.mark.parametrize("tasks", [1, 4])
@pytest.mark.parametrize("weights", [(1.0, 1.0, 1.0), (0.5, 2.0, 0.25), (0.0, 1.0, 0.0)])
def test_objective_with_teacher_is_weighted_sum(tasks: int, weights: tuple[float, float, float]) -> None:
    torch.manual_seed(0)
    ws, wc, wr = weights
    obj = CorrKDObjective(tasks=tasks, classes=2, scd_weight=ws, cpd_weight=wc, rcd_weight=wr, mi_hidden=8)
    s, t = outputs(10, tasks, 0), outputs(10, tasks, 1)
    g = torch.Generator().manual_seed(2)
    if tasks == 1:
        labels = torch.randint(0, 2, (10, 1), generator=g)
    else:  # one emotion present per sample
        labels = F.one_hot(torch.randint(0, 4, (10,), generator=g), 4)
    terms = obj(s, labels, t)
    assert set(terms) == {"task", "scd", "cpd", "rcd", "loss"}
    task = F.cross_entropy(s.logits.reshape(-1, 2), labels.reshape(-1))
    scd = obj.scd(s.representation, t.representation)
    member = F.one_hot(labels[:, 0], 2) if tasks == 1 else labels  # CPD class membership (B, C)
    assert torch.equal(prototype_labels(labels), member)
    cpd = obj.cpd(s.representation, t.representation, member)
    rcd = obj.rcd(s.logits, t.logits, labels)  # (B, tasks, 2): MI marginal pairs across samples
    for name, value in (("task", task), ("scd", scd), ("cpd", cpd), ("rcd", rcd)):
        torch.testing.assert_close(terms[name], value, msg=name)
        assert value.abs() > 0, name
    torch.testing.assert_close(terms["loss"], task + ws * scd + wc * cpd + wr * rcd)
    if ws == 0.0:  # a zero weight removes the term (the others stay)
        torch.testing.assert_close(terms["loss"], task + cpd)
    assert obj.cpd.num_classes == (2 if tasks == 1 else 4)


def test_distillation_gradients_reach_the_student_only() -> None:
    obj = CorrKDObjective(mi_hidden=8)
    rep = torch.randn(6, 8, requires_grad=True)
    logits = torch.randn(6, 1, 2, requires_grad=True)
    t_rep, t_logits = torch.randn(6, 8, requires_grad=True), torch.randn(6, 1, 2, requires_grad=True)
    labels = torch.tensor([[0], [1], [1], [0], [1], [0]])
    obj(CorrKDOutput(rep, logits), labels, CorrKDOutput(t_rep, t_logits))["loss"].backward()
    assert rep.grad is not None and logits.grad is not None
    assert t_rep.grad is None and t_logits.grad is None
    assert all(p.grad is not None for p in obj.rcd.parameters())


# -- roles --------------------------------------------------------------------------------------------
def test_student_without_teacher_is_a_one_line_cli_error(tiny_mmsa_aligned, tmp_path, capsys) -> None:
    from lightning_kd.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "-c", str(CONFIGS / "synthetic_student.yaml"), "--data.class_path",
              "lightning_kd.data.formats.mmsa.MMSADataModule", "--data.init_args.path", str(tiny_mmsa_aligned),
              "--trainer.logger.init_args.save_dir", str(tmp_path / "runs")])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("lightning-kd: error: CorrKD role 'student'") and "teacher_ckpt" in err[-1]
    assert "Traceback" not in "\n".join(err)


def test_roles_and_options_are_checked() -> None:
    with pytest.raises(ConfigError, match="model.init_args.teacher_ckpt"):  # checked when fitting starts
        CorrKD(DIMS, role="student").setup("fit")
    with pytest.raises(ConfigError, match="teacher_ckpt"):
        CorrKD(DIMS, role="teacher", teacher_ckpt="teacher.ckpt").setup("fit")
    with pytest.raises(ValueError, match="task"):
        CorrKD(DIMS, task="regression")
    teacher = CorrKD(DIMS, net=TINY_NET)
    assert not any(p.requires_grad for p in teacher.objective.rcd.parameters())  # unused without a teacher
    # a student names its teacher but loads it only when fitting starts
    student = CorrKD(DIMS, role="student", teacher_ckpt="/nowhere/teacher.ckpt", net=TINY_NET)
    assert not student.has_teacher and all(p.requires_grad for p in student.parameters())


# -- the two-stage pipeline ---------------------------------------------------------------------------
@pytest.mark.slow
def test_pipeline_trains_teacher_then_student(tiny_mmsa_aligned: Path, tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    clis = []
    build = cli_module.build_cli

    def spy(args=None, run=True):
        clis.append(build(args, run))
        return clis[-1]

    monkeypatch.setattr(cli_module, "build_cli", spy)
    save = tmp_path / "runs"
    main(["pipeline", TEACHER_YAML, STUDENT_YAML, "--", *mmsa(tiny_mmsa_aligned), *TINY, "--trainer.max_epochs", "1",
          "--trainer.logger.init_args.save_dir", str(save)])
    assert len(clis) == 2
    teacher_cli, student_cli = clis
    teacher_file = Path(teacher_cli.trainer.checkpoint_callback.best_model_path)
    assert teacher_file.is_file() and teacher_file.parent == save / "corrkd/synthetic_teacher/version_0/checkpoints"
    assert student_cli.model.role == "student" and student_cli.model.teacher_ckpt == str(teacher_file)
    teacher_sha = sha256(teacher_file)

    # the student checkpoint names its teacher (path, sha256 of the file, method)
    run = save / "corrkd/synthetic_student/version_0"
    best = Path(student_cli.trainer.checkpoint_callback.best_model_path)
    for ck_path in (best, run / "checkpoints/last.ckpt"):
        ck = torch.load(ck_path, weights_only=False)
        rec = ck["lightning_kd"]["teacher"]
        assert rec["path"] == str(teacher_file.resolve()) and rec["sha256"] == teacher_sha and rec["method"] == METHOD
        assert ck["lightning_kd"]["method"] == METHOD
    # the teacher was frozen: its weights (in the student's process and on disk) are the trained ones
    stored = torch.load(teacher_file, weights_only=False)["state_dict"]
    teacher = student_cli.model.teacher
    assert not teacher.training and not any(p.requires_grad for p in teacher.parameters())
    assert teacher.state_dict().keys() == stored.keys()
    for k, v in teacher.state_dict().items():
        assert torch.equal(v, stored[k]), k
    assert sha256(teacher_file) == teacher_sha
    # the student checkpoint holds the student only: the same architecture's keys, no teacher copy
    student_sd = ck["state_dict"]
    assert student_sd.keys() == stored.keys()
    assert not any("teacher" in k for k in student_sd) and "teacher_state_dict" not in ck["lightning_kd"]
    assert any(not torch.equal(student_sd[k], stored[k]) for k in stored)

    # the student optimised task + SCD + CPD + RCD (weights 1); the teacher only its task loss
    m = read_metrics(run)
    for k in ("train/scd", "train/cpd", "train/rcd", "train/task"):
        assert len(m[k]) == 1 and math.isfinite(m[k][0]) and m[k][0] != 0.0, k
    parts = m["train/task"][0] + m["train/scd"][0] + m["train/cpd"][0] + m["train/rcd"][0]
    assert m["train/loss"][0] == pytest.approx(parts, rel=1e-4)
    t_metrics = read_metrics(save / "corrkd/synthetic_teacher/version_0")
    assert "train/task" in t_metrics and "train/scd" not in t_metrics
    # test_after_fit (in the configs) tested both stages
    for stage in ("teacher", "student"):
        tested = json.loads((save / f"corrkd/synthetic_{stage}/version_0/test_metrics.json").read_text())["metrics"]
        assert set(BINARY_SENTIMENT_KEYS) <= set(tested)

    # test / predict from the student checkpoint need no teacher file
    teacher_file.rename(tmp_path / "teacher_moved_away.ckpt")
    cfg = str(run / "config.yaml")
    main(["test", "-c", cfg, "--ckpt_path", str(best)])
    tested = json.loads((run.parent / "version_1/test_metrics.json").read_text())["metrics"]
    assert set(BINARY_SENTIMENT_KEYS) <= set(tested) and "MAE" not in tested
    first = json.loads((run / "test_metrics.json").read_text())["metrics"]
    for k in BINARY_SENTIMENT_KEYS:
        assert tested[k] == pytest.approx(first[k], abs=1e-6), k
    main(["predict", "-c", cfg, "--ckpt_path", str(best)])
    rows = list(csv.DictReader((run.parent / "version_2/predictions.csv").open()))
    assert len(rows) == 16 and {float(r["prediction"]) for r in rows} <= {0.0, 1.0}


@pytest.fixture(scope="module")
def foreign_ckpts(tiny_mmsa_aligned: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """1-epoch tiny DMD and fusion-baseline checkpoints (not CorrKD)."""
    save = tmp_path_factory.mktemp("foreign")
    out = {}
    for name in ("dmd", "fusion"):
        main(["fit", "-c", str(ROOT / f"configs/{name}/mosi_aligned.yaml"), "--data.init_args.path",
              str(tiny_mmsa_aligned), *TINY_MODEL_ARGS, "--trainer.max_epochs=1", "--trainer.limit_train_batches=1",
              "--trainer.limit_val_batches=1", "--test_after_fit=false",
              "--trainer.logger.init_args.save_dir", str(save)])
        out[name] = save / f"{name}/mosi_aligned/version_0/checkpoints/last.ckpt"
    return out


@pytest.mark.parametrize("kind, method", [("dmd", "DMD"), ("fusion", "FusionBaseline")])
def test_student_refuses_a_teacher_of_another_method(kind: str, method: str, foreign_ckpts: dict[str, Path],
                                                     tiny_mmsa_aligned: Path, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    bad = foreign_ckpts[kind]
    with pytest.raises(SystemExit) as exc:
        main(["fit", "-c", STUDENT_YAML, *mmsa(tiny_mmsa_aligned), *TINY, "--trainer.max_epochs=1",
              "--model.init_args.teacher_ckpt", str(bad), "--trainer.logger.init_args.save_dir", str(tmp_path)])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("lightning-kd: error:")]
    assert len(lines) == 1, err
    assert str(bad.resolve()) in lines[0] and method in lines[0] and "teacher_ckpt" in lines[0]
    assert "Traceback" not in err


# -- every shipped config ------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["synthetic", "mosi", "mosei", "iemocap"])
def test_teacher_and_student_configs_agree(name: str) -> None:
    """The two stages of a data set share architecture, task and data; only the student drops modalities.
    Both build at their full size (e.g. dim divisible by heads). Compared as the CLI resolves them (the student
    config builds on the teacher's)."""
    teacher, student = (resolved_config("-c", str(CONFIGS / f"{name}_{r}.yaml")) for r in ("teacher", "student"))
    t_model, s_model = teacher["model"]["init_args"], student["model"]["init_args"]
    assert teacher["model"]["class_path"] == student["model"]["class_path"] == "lightning_kd.methods.corrkd.CorrKD"
    assert t_model["role"] == "teacher" and s_model["role"] == "student" and s_model["teacher_ckpt"] is None
    for k, v in t_model.items():
        if k != "role":
            assert s_model[k] == v, k
    t_data, s_data = teacher["data"], student["data"]
    assert t_data["class_path"] == s_data["class_path"]
    assert t_data["init_args"].pop("train_missing") is None and s_data["init_args"].pop("train_missing")["max_rate"] > 0
    assert t_data["init_args"] == s_data["init_args"]
    assert teacher["seed_everything"] == student["seed_everything"]
    assert teacher["trainer"]["max_epochs"] == student["trainer"]["max_epochs"]
    assert t_model["task"] == ("emotion" if name == "iemocap" else "binary_sentiment")
    dims = {k: v for k, v in t_model.items() if k not in ("feature_dims", "seq_lens")}
    CorrKD(DIMS, **dims)
    CorrKD(DIMS, **{**{k: v for k, v in s_model.items() if k not in ("feature_dims", "seq_lens")},
                    "teacher_ckpt": "teacher.ckpt"})


@pytest.mark.parametrize("name", ["synthetic", "mosi", "mosei", "iemocap"])
def test_every_corrkd_config_trains(name: str, tiny_mult_mosi: Path, tiny_mult_iemocap: Path, tmp_path: Path,
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """Teacher config: 1 epoch of 1 batch (it must save a checkpoint); student config: fast_dev_run on it."""
    monkeypatch.chdir(tmp_path)  # fast_dev_run (no logger) writes test_metrics.json to the working directory
    if name == "synthetic":  # the config's own SyntheticMMSADataModule, tiny
        data = ["--data.init_args.path", str(tmp_path / "synth.pkl"), "--data.init_args.n=[24,8,8]",
                "--data.init_args.dims=[32,5,7]", "--data.init_args.lengths=[12,12,12]"]
    else:
        data = ["--data.init_args.path", str(tiny_mult_iemocap if name == "iemocap" else tiny_mult_mosi)]
    common = [*data, *TINY, "--trainer.logger.init_args.save_dir", str(tmp_path / "runs")]
    terms: list[dict[str, float]] = []  # every training step's loss terms
    objective = CorrKDObjective.forward

    def record(self, *args, **kwargs):
        out = objective(self, *args, **kwargs)
        if torch.is_grad_enabled():
            terms.append({k: float(v.detach()) for k, v in out.items()})
        return out

    monkeypatch.setattr(CorrKDObjective, "forward", record)
    teacher = build_cli(["fit", "-c", str(CONFIGS / f"{name}_teacher.yaml"), *common, "--trainer.max_epochs=1",
                         "--trainer.limit_train_batches=1", "--trainer.limit_val_batches=1", "--test_after_fit=false"])
    ckpt = tmp_path / f"runs/corrkd/{name}_teacher/version_0/checkpoints/last.ckpt"
    assert ckpt.is_file() and teacher.trainer.global_step == 1
    assert [set(t) for t in terms] == [{"task", "loss"}]
    student = build_cli(["fit", "-c", str(CONFIGS / f"{name}_student.yaml"), *common, "--trainer.fast_dev_run=true",
                         "--model.init_args.teacher_ckpt", str(ckpt)])
    model, metrics = student.model, student.trainer.callback_metrics
    assert student.trainer.global_step == 1 and model.has_teacher and model.role == "student"
    assert student.datamodule.train_missing is not None and not student.datamodule.train_missing.is_identity
    assert len(terms) == 2 and set(terms[1]) == {"task", "scd", "cpd", "rcd", "loss"}
    assert all(math.isfinite(v) for v in terms[1].values())
    emotion = name == "iemocap"
    assert model.task == ("emotion" if emotion else "binary_sentiment")
    keys = emotion_keys() if emotion else BINARY_SENTIMENT_KEYS
    assert all(f"test/{k}" in metrics for k in keys)  # test_after_fit ran on the weights in memory
    if name == "synthetic":
        assert (tmp_path / "synth.pkl").is_file()


# -- resume ---------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_student_resume_matches_uninterrupted(tiny_mmsa_aligned: Path, teacher_ckpt: Path, tmp_path: Path) -> None:
    """The missing-modality augmentation depends on (seed, epoch, sample) only, so a resumed run repeats it."""

    def fit(save: Path, epochs: int, ckpt: Path | None = None) -> None:
        main(["fit", "-c", STUDENT_YAML, *mmsa(tiny_mmsa_aligned), *TINY, "--model.init_args.teacher_ckpt",
              str(teacher_ckpt), f"--trainer.max_epochs={epochs}", "--trainer.limit_train_batches=3",
              "--trainer.limit_val_batches=1", "--test_after_fit=false", "--trainer.logger.init_args.save_dir",
              str(save)] + (["--ckpt_path", str(ckpt)] if ckpt else []))

    fit(tmp_path / "a", 2)
    fit(tmp_path / "b", 1)
    last_b = tmp_path / "b/corrkd/synthetic_student/version_0/checkpoints/last.ckpt"
    fit(tmp_path / "b", 2, last_b)
    a = torch.load(tmp_path / "a/corrkd/synthetic_student/version_0/checkpoints/last.ckpt", weights_only=False)
    b = torch.load(tmp_path / "b/corrkd/synthetic_student/version_1/checkpoints/last.ckpt", weights_only=False)
    assert a["epoch"] == b["epoch"] == 1 and a["global_step"] == b["global_step"] == 6
    assert a["state_dict"].keys() == b["state_dict"].keys()
    for k in a["state_dict"]:
        torch.testing.assert_close(a["state_dict"][k], b["state_dict"][k], rtol=0, atol=0, msg=k)
    mid = torch.load(last_b, weights_only=False)["state_dict"]
    assert any(not torch.equal(mid[k], a["state_dict"][k]) for k in mid if mid[k].is_floating_point())
    assert a["lightning_kd"]["teacher"] == b["lightning_kd"]["teacher"]


# -- DDP + bf16 ----------------------------------------------------------------------------------------
@pytest.mark.slow
def test_student_ddp_two_cpu_processes_bf16(tiny_mmsa_aligned: Path, teacher_ckpt: Path, tmp_path: Path) -> None:
    """strategy=ddp (find_unused_parameters=False): every student parameter must take part in every step."""
    cmd = [sys.executable, "-m", "lightning_kd.cli", "fit", "-c", STUDENT_YAML, *mmsa(tiny_mmsa_aligned), *TINY,
           "--model.init_args.teacher_ckpt", str(teacher_ckpt), "--trainer.logger.init_args.save_dir",
           str(tmp_path / "runs"), "--trainer.max_epochs=1", "--trainer.limit_train_batches=2",
           "--trainer.limit_val_batches=1", "--trainer.strategy=ddp", "--trainer.devices=2",
           "--trainer.accelerator=cpu", "--trainer.precision=bf16-mixed", "--test_after_fit=true"]
    env = {**os.environ, "WANDB_MODE": "disabled", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]
    runs = sorted((tmp_path / "runs/corrkd/synthetic_student").iterdir())
    assert [r.name for r in runs] == ["version_0"], "both ranks must share one run directory"
    ck = torch.load(runs[0] / "checkpoints/last.ckpt", weights_only=False)
    assert ck["global_step"] == 2 and ck["lightning_kd"]["teacher"]["sha256"] == sha256(teacher_ckpt)
    m = read_metrics(runs[0])
    for k in ("train/scd", "train/cpd", "train/rcd", "train/loss"):
        assert all(math.isfinite(v) for v in m[k]), k
    tested = json.loads((runs[0] / "test_metrics.json").read_text())["metrics"]
    assert set(BINARY_SENTIMENT_KEYS) <= set(tested) and tested["Has0_acc_2"] is not None
    out = proc.stderr + proc.stdout
    assert "GLOBAL_RANK: 1" in out or "world_size: 2" in out


# -- the compact student ----------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["synthetic", "mosi"])
def test_compact_student_configs_change_only_depth_and_heads(name: str) -> None:
    full = resolved_config("-c", str(CONFIGS / f"{name}_student.yaml"))
    compact = resolved_config("-c", str(CONFIGS / f"{name}_student_compact.yaml"))
    assert compact["model"]["init_args"]["net"] == {**full["model"]["init_args"]["net"], "layers": 1, "heads": 2}
    for part in ("data", "trainer"):
        f, c = dict(full[part]), dict(compact[part])
        if part == "trainer":
            f.pop("logger"), c.pop("logger")
        assert f == c
    assert {k: v for k, v in compact["model"]["init_args"].items() if k != "net"} == \
        {k: v for k, v in full["model"]["init_args"].items() if k != "net"}


def test_compact_student_distils_from_a_full_size_teacher(tiny_mmsa_aligned: Path, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """The compact student (1 layer, 2 heads) trains against a deeper, wider-headed teacher of the same width."""
    monkeypatch.chdir(tmp_path)  # fast_dev_run (no logger) writes test_metrics.json to the working directory
    dim8 = ["--model.init_args.net.dim", "8", "--model.init_args.loss.mi_hidden", "8", "--data.init_args.batch_size",
            "8", "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false",
            "--trainer.logger.init_args.save_dir", str(tmp_path)]
    main(["fit", "-c", TEACHER_YAML, *mmsa(tiny_mmsa_aligned), *dim8, "--model.init_args.net.heads", "4",
          "--trainer.max_epochs=1", "--trainer.limit_train_batches=1", "--test_after_fit=false"])
    ckpt = tmp_path / "corrkd/synthetic_teacher/version_0/checkpoints/last.ckpt"
    student = build_cli(["fit", "-c", str(CONFIGS / "synthetic_student_compact.yaml"), *mmsa(tiny_mmsa_aligned),
                         *dim8, "--trainer.fast_dev_run=true", "--model.init_args.teacher_ckpt", str(ckpt)])
    model = student.model
    teacher = model.teacher
    s_enc, t_enc = model.net.encoders["text"].encoder, teacher.net.encoders["text"].encoder
    assert (len(s_enc.layers), s_enc.layers[0].self_attn.num_heads) == (1, 2)
    assert (len(t_enc.layers), t_enc.layers[0].self_attn.num_heads) == (2, 4)
    assert student.trainer.global_step == 1
    assert all(torch.isfinite(p).all() for p in model.net.parameters())
