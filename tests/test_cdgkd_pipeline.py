"""CDGKD through the shared distillation layers: per-teacher statistics in distillation_stats.csv, the shipped
stage configs, and the whole DEAP chain (and a MAHNOB-HCI teacher) through `lightning-kd` on generated layouts."""

from __future__ import annotations

import csv
import json
import warnings
from collections import Counter
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch
from cdgkd_helpers import TinyEEGFaceData, save_tiny, tiny_module_kwargs

from conftest import ROOT, resolved_config
from lightning_kd.callbacks import DistillationStats
from lightning_kd.callbacks.distillation import STATS_CSV
from lightning_kd.callbacks.rebalancing import ModalityRebalancing

pytestmark = pytest.mark.usefixtures("single_thread")

CDGKD = "lightning_kd.methods.cdgkd.module.CDGKD"
STAGES = ("teacher", "eeg", "video", "ta1", "ta2", "student", "student_kd", "ta2_takd", "student_takd")


# -- per-teacher statistics ---------------------------------------------------------------------------------------
def test_student_writes_per_teacher_statistics_per_epoch(tmp_path: Path) -> None:
    """A 2-epoch student fit with 2 teachers: one row per epoch and teacher for kd / kept / dropped, with
    kept + dropped = the epoch's training steps, and the KD mean equal to the logged per-step terms' mean."""
    from lightning_kd.methods.cdgkd import CDGKD as Module

    teachers = [str(save_tiny(tmp_path / "t.ckpt", "teacher", seed=1, logit_scale=10.0)),
                str(save_tiny(tmp_path / "ta1.ckpt", "ta1", seed=2, logit_scale=10.0))]
    pl.seed_everything(5)
    student = Module(**tiny_module_kwargs(role="student", teacher_ckpts=teachers))
    data = TinyEEGFaceData(n=(80, 16, 16))  # 5 training steps per epoch
    trainer = pl.Trainer(max_epochs=2, accelerator="cpu", devices=1, enable_progress_bar=False,
                         enable_model_summary=False, enable_checkpointing=False, log_every_n_steps=1,
                         logger=pl.loggers.CSVLogger(tmp_path / "runs", name="student"),
                         callbacks=[ModalityRebalancing(["face", "eeg"]), DistillationStats()])
    trainer.fit(student, data)
    run = tmp_path / "runs/student/version_0"
    rows = list(csv.DictReader((run / STATS_CSV).open()))
    names = {f"{k}/teacher_{j}" for k in ("kd", "kept", "dropped") for j in range(2)}
    assert Counter((int(r["epoch"]), r["name"]) for r in rows) == Counter((e, n) for e in range(2) for n in names)
    value = {(int(r["epoch"]), r["name"]): float(r["value"]) for r in rows}
    kept_total = 0.0
    for e in range(2):
        for j in range(2):
            kept, dropped = value[e, f"kept/teacher_{j}"], value[e, f"dropped/teacher_{j}"]
            assert kept + dropped == 5 and kept == int(kept) and dropped == int(dropped)
            assert value[e, f"kd/teacher_{j}"] > 0
            kept_total += kept
    assert 0 < kept_total < 20  # p = 0.5 over 20 (step, teacher) draws: neither none nor all kept
    logged = [r for r in csv.DictReader((run / "metrics.csv").open()) if r.get("distill/kept/teacher_0")]
    assert [float(r["distill/kept/teacher_0"]) for r in logged] == [value[e, "kept/teacher_0"] for e in range(2)]
    assert not any(k.startswith("rebalance/") for r in csv.DictReader((run / "metrics.csv").open()) for k, v in r.items()
                   if v)  # the student has one modality: the callback is inert


# -- shipped stage configs ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("stage", STAGES)
def test_deap_stage_configs_resolve(stage: str) -> None:
    cfg = resolved_config("-c", str(ROOT / f"configs/cdgkd/deap_{stage}.yaml"))
    init = cfg["model"]["init_args"]
    assert cfg["trainer"]["logger"]["init_args"]["name"] == f"cdgkd/deap_{stage}"
    teachers = {"teacher": None, "eeg": [], "video": [], "ta1": ["deap_teacher"], "ta2": ["deap_teacher", "deap_ta1"],
                "student": ["deap_teacher", "deap_ta1", "deap_ta2"], "student_kd": ["deap_teacher"],
                "ta2_takd": ["deap_ta1"], "student_takd": ["deap_ta2_takd"]}[stage]
    assert cfg["teacher_stages"] == teachers
    role = {"teacher": "teacher", "eeg": "eeg", "ta1": "ta1", "ta2": "ta2", "ta2_takd": "ta2"}.get(stage, "student")
    assert init["role"] == role and init["logit_kd"] is None
    assert init["loss"]["drop_prob"] == (0.0 if stage in ("student_kd", "ta2_takd", "student_takd") else 0.5)
    if role != "eeg":  # one modality: alpha is inert there
        assert init["loss"]["alpha"] == (1.0 if stage == "teacher" else 0.0)
    assert cfg["data"]["init_args"]["inputs"] == ["eeg", "face"]
    cbs = [c["class_path"].rsplit(".", 1)[-1] for c in cfg["trainer"]["callbacks"]]
    assert cbs == ["ModelCheckpoint", "ModelCheckpoint", "ModalityRebalancing", "DistillationStats"]


@pytest.mark.parametrize("config", sorted(p.name for p in (ROOT / "configs/cdgkd").glob("*.yaml")))
def test_cdgkd_configs_build_on_the_run_policy(config: str) -> None:
    """Stage configs build on another file (first key `config`) and set no run policy of their own; the layers
    (tiny.yaml, vit_features.yaml) build on nothing and only change model / data / epochs."""
    import yaml

    raw = yaml.safe_load((ROOT / "configs/cdgkd" / config).read_text())
    if config in ("tiny.yaml", "vit_features.yaml"):
        assert "config" not in raw
        assert all(k.startswith(("model.", "data.")) or k == "trainer.max_epochs" for k in raw), sorted(raw)
        return
    assert next(iter(raw)) == "config" and (ROOT / "configs/cdgkd" / raw["config"]).is_file()
    assert "trainer" not in raw and "seed_everything" not in raw and "trainer.callbacks" not in raw
    assert {k for k in raw if k.startswith("trainer.")} <= {"trainer.logger.init_args.name", "trainer.max_epochs"}
    assert raw["trainer.logger.init_args.name"] == f"cdgkd/{config[:-len('.yaml')]}"


@pytest.mark.parametrize("stage", ["teacher", "ta1", "ta2", "student"])
def test_mahnob_stage_configs_resolve(stage: str) -> None:
    cfg = resolved_config("-c", str(ROOT / f"configs/cdgkd/mahnob_{stage}.yaml"))
    assert cfg["data"]["class_path"] == "lightning_kd.data.MAHNOBDataModule"
    assert cfg["model"]["init_args"]["role"] == stage
    assert cfg["teacher_stages"] == {"teacher": None, "ta1": ["mahnob_teacher"], "ta2": ["mahnob_teacher", "mahnob_ta1"],
                                     "student": ["mahnob_teacher", "mahnob_ta1", "mahnob_ta2"]}[stage]


def test_plain_kd_layer_applies_to_cdgkd() -> None:
    """configs/kd/plain.yaml layered on the video-only reference: the generic "student + plain KD" baseline."""
    cfg = resolved_config("-c", str(ROOT / "configs/cdgkd/deap_video.yaml"), "-c", str(ROOT / "configs/kd/plain.yaml"),
                          "--model.init_args.teacher_ckpts", "[t.ckpt]")
    assert cfg["model"]["init_args"]["logit_kd"] == {"temperature": 4.0, "weight": 0.5}
    assert cfg["model"]["init_args"]["teacher_ckpts"] == ["t.ckpt"]


# -- the whole chain on generated layouts ---------------------------------------------------------------------------
def _small_args(root: Path, runs: Path) -> list[str]:
    return ["-c", str(ROOT / "configs/cdgkd/tiny.yaml"), "--data.init_args.root", str(root),
            "--data.init_args.n_folds", "4", "--data.init_args.batch_size", "8",
            "--trainer.logger.init_args.save_dir", str(runs), "--trainer.max_epochs", "1",
            "--trainer.num_sanity_val_steps", "0"]


@pytest.mark.slow
def test_deap_chain_through_the_pipeline(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Every shipped DEAP stage in one pipeline (the CDGKD chain, the unimodal references, plain KD, TAKD): run
    directories named after the stages, test metrics, the teachers each checkpoint records; a rerun skips all."""
    from lightning_kd.cli import main
    from lightning_kd.data.generate.deap import write_deap
    from lightning_kd.io import file_sha256

    root = write_deap(tmp_path / "DEAP", subjects=4, trials=4, seconds=8.0, video_subjects=4, missing_videos=0)
    runs = tmp_path / "runs"
    stages = [str(ROOT / f"configs/cdgkd/deap_{s}.yaml") for s in STAGES]
    with warnings.catch_warnings(record=True) as caught:  # recorded, not re-emitted (Lightning's own notices)
        warnings.simplefilter("always")
        main(["pipeline", *stages, "--", *_small_args(root, runs)])
    assert any("without teacher_ckpts" in str(w.message) for w in caught)  # deap_video: the student alone
    best = {}
    for stage in STAGES:
        run = runs / "cdgkd" / f"deap_{stage}" / "version_0"
        metrics = json.loads((run / "test_metrics.json").read_text())
        assert any(k.endswith("acc") for k in metrics["metrics"]), metrics
        best[stage] = Path(metrics["ckpt_path"])
        assert best[stage].parent == run / "checkpoints" and best[stage].is_file()
    taught = {"teacher": [], "eeg": [], "video": [], "ta1": ["teacher"], "ta2": ["teacher", "ta1"],
              "student": ["teacher", "ta1", "ta2"], "student_kd": ["teacher"], "ta2_takd": ["ta1"],
              "student_takd": ["ta2_takd"]}
    for stage, teachers in taught.items():
        ck = torch.load(best[stage], weights_only=True)
        records = ck["lightning_kd"].get("teachers", [])
        assert [r["path"] for r in records] == [str(best[t].resolve()) for t in teachers], stage
        assert [r["sha256"] for r in records] == [file_sha256(best[t]) for t in teachers], stage
        assert all(r["method"] == CDGKD for r in records)
        assert ck["hyper_parameters"]["role"] == {"eeg": "eeg", "video": "student", "student_kd": "student",
                                                  "ta2_takd": "ta2", "student_takd": "student"}.get(stage, stage)
    assert len(torch.load(best["student"], weights_only=True)["lightning_kd"]["teachers"]) == 3
    rows = list(csv.DictReader((runs / "cdgkd/deap_student/version_0" / STATS_CSV).open()))
    assert {r["name"] for r in rows} >= {f"kept/teacher_{j}" for j in range(3)}
    kd_rows = list(csv.DictReader((runs / "cdgkd/deap_student_kd/version_0" / STATS_CSV).open()))
    assert {r["name"] for r in kd_rows} == {"kd/teacher_0", "kept/teacher_0", "dropped/teacher_0"}
    assert all(float(r["value"]) == 0 for r in kd_rows if r["name"] == "dropped/teacher_0")  # drop_prob 0
    capsys.readouterr()
    main(["pipeline", *stages, "--", *_small_args(root, runs)])  # resume: every stage is up to date
    out = capsys.readouterr().out
    assert out.count(": skip (up to date") == len(STAGES), out
    assert not any((runs / "cdgkd" / f"deap_{s}" / "version_1").exists() for s in STAGES)


@pytest.mark.slow
def test_mahnob_teacher_smoke(tmp_path: Path) -> None:
    from lightning_kd.cli import build_cli
    from lightning_kd.data.generate.mahnob import write_mahnob

    write_mahnob(tmp_path / "mahnob", subjects=3, sessions=3, seconds=(8.2, 9.5), seed=3)
    cli = build_cli(["fit", "-c", str(ROOT / "configs/cdgkd/mahnob_teacher.yaml"),
                     *_small_args(tmp_path / "mahnob", tmp_path / "r"), "--data.init_args.n_folds", "3",
                     "--trainer.fast_dev_run", "true"])
    assert cli.trainer.state.finished and cli.trainer.state.fn == "test"  # fitted, then tested (test_after_fit)
    assert cli.model.role == "teacher" and cli.model.hparams["feature_dims"]["eeg"] == 28
    assert not (tmp_path / "r").exists()  # a smoke run writes nothing
