"""Shared teacher handling (lightning_kd.distill.teacher): frozen, outside the student, recorded, checked."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import pytest
import torch
import torch.nn.functional as F
from kd_helpers import METHOD as TINY_CLASSIFIER
from kd_helpers import TinyClassifier
from torch import Tensor

from conftest import TINY_MODEL_ARGS
from lightning_kd.checkpoint import CheckpointMismatchError, ConfigError, load_checkpoint
from lightning_kd.cli import main
from lightning_kd.data.batch import Batch
from lightning_kd.data.formats.mmsa import MMSADataModule
from lightning_kd.data.generate.mmsa import write_mmsa_pickle
from lightning_kd.distill import TeacherError, TeacherMixin, load_teacher
from lightning_kd.distill.teacher import TeacherNotFoundError
from lightning_kd.methods.fusion import FusionBaseline

FUSION = "lightning_kd.methods.fusion.module.FusionBaseline"
OPTION = "model.init_args.teacher_ckpt"
TINY = {"net": {"hidden": 8, "heads": 2, "layers": 1}}


class TinyStudent(TeacherMixin, FusionBaseline):
    """Fusion student distilled from a fusion teacher: L1 to the target plus L1 to the teacher's prediction."""

    teacher_methods = (FUSION,)

    def __init__(self, *args: Any, teacher_ckpt: str | None = None, save_teacher: bool = False,
                 kd_weight: float = 1.0, teacher_ckpts: list[str] | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.init_teacher(teacher_ckpt, save_teacher, teacher_ckpts=teacher_ckpts)
        self.kd_weight = kd_weight
        self.seen: list[tuple[bool, bool, bool]] = []  # (student training, teacher training, target needs grad)

    def training_losses(self, batch: Batch) -> dict[str, Tensor]:
        pred = self.net(batch.inputs).float()
        soft = self.teacher_forward(lambda t: t.predict_scores(batch)).float()
        self.seen.append((self.training, self.teacher.training, soft.requires_grad))
        task, kd = F.l1_loss(pred, batch.target.float()), F.l1_loss(pred, soft)
        return {"loss": task + self.kd_weight * kd, "task": task, "kd": kd}


def trainer(**kw: Any) -> pl.Trainer:
    args = {"accelerator": "cpu", "devices": 1, "max_epochs": 1, "limit_train_batches": 2, "limit_val_batches": 1,
            "num_sanity_val_steps": 0, "logger": False, "enable_checkpointing": False,
            "enable_progress_bar": False, "enable_model_summary": False, **kw}
    return pl.Trainer(**args)


def datamodule(path: Path) -> MMSADataModule:
    dm = MMSADataModule(str(path), batch_size=8)
    dm.setup()
    return dm


def train_teacher(data: Path, out: Path) -> Path:
    dm = datamodule(data)
    t = trainer()
    t.fit(FusionBaseline(dm.feature_dims, dm.seq_lens, **TINY, lr=1e-3), datamodule=dm)
    t.save_checkpoint(out)
    return out


def student(dm: MMSADataModule, teacher_ckpt: Path | str | None, **kw: Any) -> TinyStudent:
    if isinstance(teacher_ckpt, list):
        return TinyStudent(dm.feature_dims, dm.seq_lens, **TINY, lr=1e-3, teacher_ckpts=[str(t) for t in teacher_ckpt],
                           **kw)
    tc = None if teacher_ckpt is None else str(teacher_ckpt)
    return TinyStudent(dm.feature_dims, dm.seq_lens, **TINY, lr=1e-3, teacher_ckpt=tc, **kw)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def dm(tiny_mmsa_aligned: Path) -> MMSADataModule:
    return datamodule(tiny_mmsa_aligned)


@pytest.fixture(scope="module")
def teacher_file(tiny_mmsa_aligned: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A trained tiny FusionBaseline checkpoint (shared: tests that change it work on a copy)."""
    return train_teacher(tiny_mmsa_aligned, tmp_path_factory.mktemp("teacher") / "teacher.ckpt")


@pytest.fixture
def teacher_copy(teacher_file: Path, tmp_path: Path) -> Path:
    return Path(shutil.copy(teacher_file, tmp_path / "teacher_copy.ckpt"))


def test_teacher_is_frozen_outside_the_student_and_recorded(dm: MMSADataModule, teacher_file: Path,
                                                            tmp_path: Path) -> None:
    s = student(dm, teacher_file)
    assert not s.has_teacher
    with pytest.raises(RuntimeError, match="setup"):
        _ = s.teacher
    t = trainer(limit_train_batches=3)
    t.fit(s, datamodule=dm)
    teacher = s.teacher
    # frozen: weights identical to the file, no grads, eval mode in every training step
    stored = torch.load(teacher_file, weights_only=True)["state_dict"]
    assert teacher.state_dict().keys() == stored.keys()
    for k, v in teacher.state_dict().items():
        assert torch.equal(v, stored[k]), k
    assert all(not p.requires_grad and p.grad is None for p in teacher.parameters())
    assert s.seen == [(True, False, False)] * 3
    s.train()
    assert s.training and not teacher.training
    # outside the student: parameters, state_dict, optimiser
    fresh = FusionBaseline(dm.feature_dims, dm.seq_lens, **TINY)
    assert s.state_dict().keys() == fresh.state_dict().keys()
    teacher_ids = {id(p) for p in teacher.parameters()}
    assert not teacher_ids & {id(p) for p in s.parameters()}
    assert not teacher_ids & {id(p) for g in t.optimizers[0].param_groups for p in g["params"]}
    # the student checkpoint records the teacher (readable with weights_only, as the CLI reads it)
    t.save_checkpoint(tmp_path / "student.ckpt")
    ck = torch.load(tmp_path / "student.ckpt", weights_only=True)
    assert ck["lightning_kd"]["method"] == TinyStudent.method_name()
    assert ck["lightning_kd"]["teacher"] == {"path": str(teacher_file.resolve()), "sha256": sha256(teacher_file),
                                             "method": FUSION}
    assert "teacher_state_dict" not in ck["lightning_kd"]
    assert ck["state_dict"].keys() == fresh.state_dict().keys()


def test_save_teacher_stores_teacher_weights_deliberately(dm: MMSADataModule, teacher_file: Path,
                                                          tmp_path: Path) -> None:
    s = student(dm, teacher_file, save_teacher=True)
    t = trainer(limit_train_batches=1)
    t.fit(s, datamodule=dm)
    t.save_checkpoint(tmp_path / "with_teacher.ckpt")
    entry = torch.load(tmp_path / "with_teacher.ckpt", weights_only=True)["lightning_kd"]
    stored = torch.load(teacher_file, weights_only=True)["state_dict"]
    assert entry["teacher_state_dict"].keys() == stored.keys()
    assert all(torch.equal(entry["teacher_state_dict"][k], v) for k, v in stored.items())
    assert entry["teacher_hyper_parameters"]["feature_dims"] == dm.feature_dims
    assert entry["teacher"]["sha256"] == sha256(teacher_file)


def test_student_checkpoint_tests_and_predicts_without_the_teacher_file(dm: MMSADataModule, teacher_copy: Path,
                                                                        tmp_path: Path) -> None:
    t = trainer(limit_train_batches=1)
    t.fit(student(dm, teacher_copy), datamodule=dm)
    t.save_checkpoint(tmp_path / "student.ckpt")
    record = {"path": str(teacher_copy.resolve()), "sha256": sha256(teacher_copy), "method": FUSION}
    teacher_copy.unlink()

    model = TinyStudent.load_from_checkpoint(tmp_path / "student.ckpt")
    assert not model.has_teacher and model.teacher_record == record
    ev = trainer(limit_test_batches=1, limit_predict_batches=1)
    assert "test/MAE" in ev.test(model, datamodule=dm, verbose=False)[0]
    preds = ev.predict(model, datamodule=dm)
    assert preds and preds[0]["prediction"].shape == (8,)
    ev.save_checkpoint(tmp_path / "resaved.ckpt")  # the record survives a process that never loaded the teacher
    assert torch.load(tmp_path / "resaved.ckpt", weights_only=True)["lightning_kd"]["teacher"] == record
    # and through ckpt_path, as `lightning-kd test --ckpt_path` does
    assert ev.test(student(dm, teacher_copy), datamodule=dm, ckpt_path=tmp_path / "student.ckpt", verbose=False)


def test_missing_teacher_file_names_path_and_option(dm: MMSADataModule, tmp_path: Path) -> None:
    missing = tmp_path / "nowhere" / "teacher.ckpt"
    with pytest.raises(TeacherNotFoundError) as exc:
        trainer().fit(student(dm, missing), datamodule=dm)
    assert isinstance(exc.value, FileNotFoundError) and isinstance(exc.value, CheckpointMismatchError)
    assert str(missing) in str(exc.value) and OPTION in str(exc.value)
    with pytest.raises(TeacherNotFoundError, match="directory"):
        load_teacher(tmp_path, (FUSION,))


def test_cli_reports_a_missing_teacher_in_one_line(tiny_mmsa_aligned: Path, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "teacher.ckpt"
    with pytest.raises(SystemExit) as exc:
        main(["fit", "--model", f"{__name__}.TinyStudent", "--model.init_args.teacher_ckpt", str(missing),
              "--data", "lightning_kd.data.formats.mmsa.MMSADataModule", "--data.init_args.path",
              str(tiny_mmsa_aligned), "--trainer.accelerator=cpu", "--trainer.max_epochs=1",
              f"--trainer.default_root_dir={tmp_path}", "--trainer.logger=false", *TINY_MODEL_ARGS])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("lightning-kd: error:") and "\n" not in err and "Traceback" not in err
    assert str(missing) in err and OPTION in err


@pytest.mark.parametrize("kind", ["other_method", "no_tag", "not_a_checkpoint", "corrupt"])
def test_unusable_teacher_checkpoints(dm: MMSADataModule, tmp_path: Path, kind: str) -> None:
    path = tmp_path / f"{kind}.ckpt"
    dmd = "lightning_kd.methods.dmd.module.DMD"
    if kind == "other_method":
        torch.save({"state_dict": {}, "hyper_parameters": {}, "lightning_kd": {"method": dmd, "version": "0"}}, path)
    elif kind == "no_tag":
        torch.save({"state_dict": {}, "hyper_parameters": {}}, path)
    elif kind == "not_a_checkpoint":
        torch.save([torch.zeros(2)], path)
    else:
        path.write_bytes(b"PK\x03\x04 truncated checkpoint")
    expected = {"other_method": f"holds a {dmd} model.*expects a teacher of {FUSION}",
                "no_tag": "not written by lightning_kd", "not_a_checkpoint": "not a Lightning checkpoint",
                "corrupt": "cannot be read"}[kind]
    with pytest.raises(TeacherError, match=expected) as exc:
        trainer().fit(student(dm, path), datamodule=dm)
    assert str(path) in str(exc.value) and OPTION in str(exc.value)


class _RunsCode:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):  # noqa: ANN204 - unpickling calls Path.touch(marker)
        return (Path.touch, (self.marker,))


def test_teacher_that_would_run_code_is_refused_unread(dm: MMSADataModule, teacher_file: Path,
                                                      tmp_path: Path) -> None:
    ck = load_checkpoint(teacher_file)
    marker = tmp_path / "marker"
    ck["hyper_parameters"]["payload"] = _RunsCode(marker)
    path = tmp_path / "evil.ckpt"
    torch.save(ck, path)
    with pytest.raises(TeacherError, match="refused unread: it needs `getattr`") as exc:
        trainer().fit(student(dm, path), datamodule=dm)
    assert str(path) in str(exc.value) and OPTION in str(exc.value)
    assert not marker.exists()
    torch.load(path, weights_only=False)  # and the file really runs code when fully unpickled
    assert marker.exists()


@dataclasses.dataclass(frozen=True)
class Options:
    """An options dataclass a module built in Python might keep in its hyper-parameters."""

    width: int = 3


@pytest.fixture
def restore_safe_globals():
    from lightning_kd import checkpoint

    before = list(checkpoint.SAFE_GLOBALS)
    yield
    checkpoint.SAFE_GLOBALS[:] = before
    checkpoint._registered.intersection_update(before)
    torch.serialization.clear_safe_globals()
    torch.serialization.add_safe_globals(sorted(checkpoint._registered, key=str))


def test_teacher_hparams_of_allowlisted_data_classes_load(dm: MMSADataModule, teacher_file: Path, tmp_path: Path,
                                                          restore_safe_globals: None) -> None:
    """A Path and a registered (``checkpoint_safe``) dataclass in the hyper-parameters load; others are refused."""
    from lightning_kd.checkpoint import checkpoint_safe

    ck = load_checkpoint(teacher_file)
    ck["hyper_parameters"]["_note"] = {"file": tmp_path / "x", "options": Options()}  # "_" keys: not init args
    path = tmp_path / "with_classes.ckpt"
    torch.save(ck, path)
    with pytest.raises(TeacherError, match="refused unread: it needs `test_teacher.Options`"):
        load_teacher(path, (FUSION,))
    checkpoint_safe(Options)
    teacher, _ = load_teacher(path, (FUSION,))
    assert isinstance(teacher, FusionBaseline)
    assert load_checkpoint(path)["hyper_parameters"]["_note"] == {"file": tmp_path / "x", "options": Options()}


def test_teacher_trained_on_other_feature_dims_is_refused(dm: MMSADataModule, tmp_path: Path) -> None:
    other = write_mmsa_pickle(tmp_path / "other.pkl", n=(40, 12, 16), dims=(16, 5, 7), lengths=(12, 12, 12),
                              aligned=True)
    path = train_teacher(other, tmp_path / "other_teacher.ckpt")
    with pytest.raises(TeacherError) as exc:
        trainer().fit(student(dm, path), datamodule=dm)
    msg = str(exc.value)
    assert str(path) in msg and str(dm.feature_dims) in msg and str({**dm.feature_dims, "text": 16}) in msg
    assert "same data" in msg


def test_resume_with_a_changed_teacher_is_refused(dm: MMSADataModule, teacher_copy: Path, tmp_path: Path) -> None:
    first = trainer()
    first.fit(student(dm, teacher_copy), datamodule=dm)
    first.save_checkpoint(tmp_path / "student.ckpt")
    trainer(max_epochs=2).fit(student(dm, teacher_copy), datamodule=dm,
                                                   ckpt_path=tmp_path / "student.ckpt")  # unchanged: resumes
    ck = load_checkpoint(teacher_copy)
    key = next(k for k, v in ck["state_dict"].items() if v.is_floating_point())
    ck["state_dict"][key] += 0.01
    torch.save(ck, teacher_copy)
    with pytest.raises(TeacherError, match="changed since this student was trained") as exc:
        trainer(max_epochs=2).fit(student(dm, teacher_copy), datamodule=dm,
                                                       ckpt_path=tmp_path / "student.ckpt")
    assert str(teacher_copy.resolve()) in str(exc.value) and OPTION in str(exc.value)


def test_teacher_moves_with_the_student_and_forward_has_no_graph(dm: MMSADataModule, teacher_file: Path) -> None:
    with pytest.raises(RuntimeError, match="has no teacher"):
        _ = student(dm, None).teacher
    s = student(dm, teacher_file)
    teacher = s.attach_teacher()
    assert s.has_teacher and s.attach_teacher() is teacher
    s.double()
    assert all(p.dtype == torch.float64 for p in teacher.parameters()) and teacher.dtype == torch.float64
    s.to(torch.float32)
    assert all(p.dtype == torch.float32 for p in teacher.parameters()) and teacher.dtype == torch.float32
    s.to("cpu")
    assert teacher.device == s.device
    s.train()
    assert not teacher.training
    batch = next(iter(dm.val_dataloader()))
    out = s.teacher_forward(lambda t, b: t.predict_scores(b), batch)
    assert out.shape == (8,) and not out.requires_grad


DDP_SCRIPT = """
import json, os, sys
sys.path.insert(0, {tests!r})
import lightning.pytorch as pl
import torch
from test_teacher import TinyStudent, datamodule, trainer

dm = datamodule({data!r})
s = TinyStudent(dm.feature_dims, dm.seq_lens, net={{"hidden": 8, "heads": 2, "layers": 1}}, lr=1e-3, teacher_ckpt={teacher!r})
wrapped = {{}}


class SeeDDP(pl.Callback):
    def on_train_start(self, trainer, pl_module):
        ddp = trainer.strategy.model  # the DistributedDataParallel wrapper (unwrapped again after fit)
        wrapped["find_unused"] = ddp.find_unused_parameters
        wrapped["ids"] = {{id(p) for p in ddp.parameters()}}


t = trainer(strategy="ddp", devices=2, limit_train_batches=2, limit_val_batches=1, callbacks=[SeeDDP()])
t.fit(s, datamodule=dm)
stored = torch.load({teacher!r}, weights_only=True)["state_dict"]
result = {{
    "rank": t.global_rank, "world": t.world_size, "find_unused": wrapped["find_unused"],
    "steps": t.global_step, "seen": s.seen,
    "teacher_in_ddp": bool({{id(p) for p in s.teacher.parameters()}} & wrapped["ids"]),
    "teacher_unchanged": all(torch.equal(v, stored[k]) for k, v in s.teacher.state_dict().items()),
    "sha256": s.teacher_record["sha256"],
}}
with open(os.path.join({out!r}, f"rank{{t.global_rank}}.json"), "w") as f:
    json.dump(result, f)
"""


@pytest.mark.slow
def test_ddp_two_cpu_processes_without_find_unused_parameters(tiny_mmsa_aligned: Path, teacher_file: Path,
                                                              tmp_path: Path) -> None:
    script = tmp_path / "ddp_student.py"
    script.write_text(DDP_SCRIPT.format(tests=str(Path(__file__).parent), data=str(tiny_mmsa_aligned),
                                        teacher=str(teacher_file), out=str(tmp_path)))
    env = {**os.environ, "WANDB_MODE": "disabled", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]
    results = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    for r, res in enumerate(results):
        assert res["rank"] == r and res["world"] == 2 and res["find_unused"] is False
        assert res["steps"] == 2 and res["seen"] == [[True, False, False]] * 2
        assert not res["teacher_in_ddp"] and res["teacher_unchanged"]
        assert res["sha256"] == sha256(teacher_file)


# -- several teachers per student ---------------------------------------------------------------------------
def record(path: Path, method: str = FUSION) -> dict[str, str]:
    return {"path": str(path.resolve()), "sha256": sha256(path), "method": method}


@pytest.fixture(scope="module")
def second_teacher(tiny_mmsa_aligned: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Another tiny FusionBaseline (other weights: trained one more batch)."""
    dm = datamodule(tiny_mmsa_aligned)
    pl.seed_everything(3)
    t = trainer(limit_train_batches=3)
    t.fit(FusionBaseline(dm.feature_dims, dm.seq_lens, **TINY, lr=1e-3), datamodule=dm)
    out = tmp_path_factory.mktemp("teacher2") / "second.ckpt"
    t.save_checkpoint(out)
    return out


def test_several_teachers_in_config_order_frozen_outside_and_recorded(dm: MMSADataModule, teacher_file: Path,
                                                                      second_teacher: Path, tmp_path: Path) -> None:
    s = student(dm, [teacher_file, second_teacher])
    assert s.teacher_ckpts == [str(teacher_file), str(second_teacher)] and s.teacher_ckpt == str(teacher_file)
    with pytest.raises(RuntimeError, match="setup"):
        _ = s.teachers
    t = trainer(limit_train_batches=2)
    t.fit(s, datamodule=dm)
    assert s.has_teachers and s.has_teacher and len(s.teachers) == 2 and s.teacher is s.teachers[0]
    for teacher, path in zip(s.teachers, (teacher_file, second_teacher)):
        stored = torch.load(path, weights_only=True)["state_dict"]
        assert all(torch.equal(v, stored[k]) for k, v in teacher.state_dict().items())
        assert not teacher.training and all(not p.requires_grad and p.grad is None for p in teacher.parameters())
    assert s.teacher_records == [record(teacher_file), record(second_teacher)]
    ids = {id(p) for teacher in s.teachers for p in teacher.parameters()}
    assert not ids & {id(p) for p in s.parameters()}
    assert not ids & {id(p) for g in t.optimizers[0].param_groups for p in g["params"]}
    fresh = FusionBaseline(dm.feature_dims, dm.seq_lens, **TINY)
    assert s.state_dict().keys() == fresh.state_dict().keys()
    # teachers_forward: one output per teacher, in order, no graph; the teachers differ
    batch = next(iter(dm.val_dataloader()))
    s.train()
    outs = s.teachers_forward(lambda teacher: teacher.predict_scores(batch))
    assert len(outs) == 2 and not any(o.requires_grad for o in outs) and not torch.equal(outs[0], outs[1])
    assert torch.equal(outs[0], s.teacher_forward(lambda teacher: teacher.predict_scores(batch)))
    assert not any(teacher.training for teacher in s.teachers)
    # moved with the student
    s.double()
    assert all(p.dtype == torch.float64 for teacher in s.teachers for p in teacher.parameters())
    s.float()
    t.save_checkpoint(tmp_path / "student.ckpt")
    entry = torch.load(tmp_path / "student.ckpt", weights_only=True)["lightning_kd"]
    assert entry["teachers"] == [record(teacher_file), record(second_teacher)]
    assert entry["teacher"] == record(teacher_file)  # back-compat: the first
    restored = TinyStudent.load_from_checkpoint(tmp_path / "student.ckpt")
    assert not restored.has_teachers and restored.teacher_records == entry["teachers"]


def test_teacher_ckpt_is_a_one_element_list_and_both_options_are_an_error(dm: MMSADataModule,
                                                                        teacher_file: Path) -> None:
    one = student(dm, teacher_file)
    assert one.teacher_ckpts == [str(teacher_file)]
    assert student(dm, None).teacher_ckpts == [] and student(dm, None).teachers == []
    with pytest.raises(ConfigError, match="teacher_ckpts.*Fix") as exc:
        student(dm, teacher_file, teacher_ckpts=[str(teacher_file)])
    assert OPTION in str(exc.value)


def test_resume_with_one_of_several_teachers_changed_is_refused(dm: MMSADataModule, teacher_file: Path,
                                                                second_teacher: Path, tmp_path: Path) -> None:
    second = Path(shutil.copy(second_teacher, tmp_path / "second.ckpt"))
    first = trainer()
    first.fit(student(dm, [teacher_file, second]), datamodule=dm)
    first.save_checkpoint(tmp_path / "student.ckpt")
    trainer(max_epochs=2).fit(student(dm, [teacher_file, second]), datamodule=dm, ckpt_path=tmp_path / "student.ckpt")
    with pytest.raises(TeacherError, match="2 teacher.*1 are configured"):
        trainer(max_epochs=2).fit(student(dm, [teacher_file]), datamodule=dm, ckpt_path=tmp_path / "student.ckpt")
    ck = load_checkpoint(second)
    key = next(k for k, v in ck["state_dict"].items() if v.is_floating_point())
    ck["state_dict"][key] += 0.01
    torch.save(ck, second)
    with pytest.raises(TeacherError, match="changed since this student was trained") as exc:
        trainer(max_epochs=2).fit(student(dm, [teacher_file, second]), datamodule=dm,
                                  ckpt_path=tmp_path / "student.ckpt")
    assert str(second.resolve()) in str(exc.value) and "model.init_args.teacher_ckpts" in str(exc.value)


def test_allowed_teacher_methods_can_be_overridden_per_instance(dm: MMSADataModule, teacher_file: Path) -> None:
    class OnlyDMD(TinyStudent):
        def allowed_teacher_methods(self) -> tuple[str, ...]:
            return ("lightning_kd.methods.dmd.module.DMD",)

    s = OnlyDMD(dm.feature_dims, dm.seq_lens, **TINY, teacher_ckpts=[str(teacher_file)])
    with pytest.raises(TeacherError, match=f"holds a {FUSION} model.*expects a teacher of .*DMD"):
        s.attach_teachers()


# -- a teacher may read other inputs than its student ----------------------------------------------------
def tiny_classifier(data: Path, out: Path, inputs: tuple[str, ...]) -> Path:
    dm = datamodule(data)
    t = trainer()
    t.fit(TinyClassifier(dm.feature_dims, dm.seq_lens, inputs=inputs), datamodule=dm)
    t.save_checkpoint(out)
    return out


def test_teacher_on_more_inputs_teaches_a_student_on_fewer(dm: MMSADataModule, tiny_mmsa_aligned: Path,
                                                           tmp_path: Path) -> None:
    """An all-modality teacher for a vision-only student (the EEG + face -> face case)."""
    teacher = tiny_classifier(tiny_mmsa_aligned, tmp_path / "all.ckpt", ("text", "audio", "vision"))
    s = TinyClassifier(dm.feature_dims, dm.seq_lens, inputs=["vision"], teacher_ckpts=[str(teacher)],
                       logit_kd={"temperature": 2.0, "weight": 0.5})
    trainer().fit(s, datamodule=dm)
    assert s.teachers[0].inputs == ["text", "audio", "vision"] and s.inputs == ["vision"]
    assert s.teacher_records == [record(teacher, TINY_CLASSIFIER)]


def test_teacher_inputs_are_checked_one_by_one(tiny_mmsa_aligned: Path, tmp_path: Path) -> None:
    other = write_mmsa_pickle(tmp_path / "other.pkl", n=(40, 12, 16), dims=(16, 5, 7), lengths=(12, 12, 12),
                              aligned=True)
    dims = {"text": 32, "audio": 5, "vision": 7}  # the tiny file's dims
    # a teacher that reads audio and vision only: its text dim (16) does not matter
    av = tiny_classifier(other, tmp_path / "av.ckpt", ("audio", "vision"))
    teacher, _ = load_teacher(av, (TINY_CLASSIFIER,), dims)
    assert teacher.inputs == ["audio", "vision"]
    # a teacher that reads text (dim 16) on data with text dim 32: named input, both dims, the fix
    tav = tiny_classifier(other, tmp_path / "tav.ckpt", ("text", "audio", "vision"))
    with pytest.raises(TeacherError) as exc:
        load_teacher(tav, (TINY_CLASSIFIER,), dims, option="model.init_args.teacher_ckpts")
    msg = str(exc.value)
    assert "\n" not in msg and str(tav.resolve()) in msg and "'text' of dim 16" in msg and "'text' dim 32" in msg
    assert "Fix:" in msg and "model.init_args.teacher_ckpts" in msg
    # data without an input the teacher reads
    with pytest.raises(TeacherError, match="reads input 'text' \\(dim 16\\), but the student's data provides no 'text'"):
        load_teacher(tav, (TINY_CLASSIFIER,), {"audio": 5, "vision": 7})
    # a student of other data whose teacher reads only inputs it has with the same dims: fine through fit too
    dm = datamodule(tiny_mmsa_aligned)
    s = TinyClassifier(dm.feature_dims, dm.seq_lens, inputs=["vision"], teacher_ckpts=[str(av)])
    trainer().fit(s, datamodule=dm)
    assert s.has_teachers
