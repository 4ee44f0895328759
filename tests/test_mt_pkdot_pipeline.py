"""MT-PKDOT through `lightning-kd`: the shipped stage configs, and the whole BioVid and Aff-Wild2 chains (plus the
comparison rows) through `lightning-kd pipeline` on layouts written by the project's generators."""

from __future__ import annotations

import csv
import json
import warnings
from pathlib import Path

import pytest
import torch

from conftest import ROOT, resolved_config
from lightning_kd.callbacks.distillation import STATS_CSV

pytestmark = pytest.mark.usefixtures("single_thread")

STAGES = ("0_visual", "1_privileged", "2_fusion", "3_align", "4_hallucination", "5_student")
ROWS = ("baseline", "pkdot", "no_ot", "no_kd", "finetune", "warm")
TAUGHT = {"0_visual": [], "1_privileged": [], "2_fusion": ["0_visual", "1_privileged"], "3_align": ["2_fusion"],
          "4_hallucination": ["0_visual", "1_privileged"], "5_student": ["3_align", "4_hallucination"],
          "baseline": [], "pkdot": ["2_fusion", "4_hallucination"], "no_ot": ["3_align", "4_hallucination"],
          "no_kd": ["3_align", "4_hallucination"], "finetune": ["3_align", "4_hallucination"],
          "warm": ["3_align", "4_hallucination"]}
ROLE = {"baseline": "visual", "pkdot": "student", "no_ot": "student", "no_kd": "student", "finetune": "student", "warm": "student"}


@pytest.mark.parametrize("ds", ["biovid", "affwild2"])
def test_stage_configs_sort_into_stage_order_and_name_their_teachers(ds: str) -> None:
    numbered = sorted(p.stem for p in (ROOT / "configs/mt_pkdot").glob(f"{ds}_[0-9]*.yaml"))
    assert numbered == [f"{ds}_{s}" for s in STAGES]
    for stage in (*STAGES, *ROWS):
        cfg = resolved_config("-c", str(ROOT / f"configs/mt_pkdot/{ds}_{stage}.yaml"))
        init = cfg["model"]["init_args"]
        assert init["role"] == (ROLE[stage] if stage in ROLE else stage.split("_", 1)[1]), stage
        assert cfg["teacher_stages"] == [f"{ds}_{t}" for t in TAUGHT[stage]], stage
        assert cfg["trainer"]["logger"]["init_args"]["name"] == f"mt_pkdot/{ds}_{stage}"
        if init["role"] == "student":  # the paper's student: Adam 5e-4, batch 128
            assert init["lr"] == 5e-4 and cfg["data"]["init_args"]["batch_size"] == 128
    student = resolved_config("-c", str(ROOT / f"configs/mt_pkdot/{ds}_5_student.yaml"))["model"]["init_args"]["loss"]
    assert (student["ce_weight"], student["kd_weight"], student["kd"]) == (0.8, 0.2, "ot")
    assert student["ot"]["k"] == 30 and student["ot"]["blur"] == 0.1
    pkdot = resolved_config("-c", str(ROOT / f"configs/mt_pkdot/{ds}_pkdot.yaml"))["model"]["init_args"]["loss"]
    assert (pkdot["teachers"], pkdot["ce_weight"], pkdot["kd_weight"]) == (["joint"], 1.0, 0.6)


def _small_args(root: Path, runs: Path, *extra: str) -> list[str]:
    return ["-c", str(ROOT / "configs/mt_pkdot/tiny.yaml"), "--data.init_args.root", str(root),
            "--trainer.logger.init_args.save_dir", str(runs), "--trainer.max_epochs", "2",
            "--trainer.num_sanity_val_steps", "0", *extra]


def _run_chain(ds: str, root: Path, runs: Path, metric: str, *extra: str) -> dict[str, Path]:
    from lightning_kd.cli import main
    from lightning_kd.io import file_sha256

    stages = [str(ROOT / f"configs/mt_pkdot/{ds}_{s}.yaml") for s in (*STAGES, *ROWS)]
    with warnings.catch_warnings(record=True):  # recorded, not re-emitted (Lightning's own notices)
        warnings.simplefilter("always")
        main(["pipeline", *stages, "--", *_small_args(root, runs, *extra)])
    best = {}
    for stage in (*STAGES, *ROWS):
        run = runs / "mt_pkdot" / f"{ds}_{stage}" / "version_0"
        metrics = json.loads((run / "test_metrics.json").read_text())
        key = "mse" if stage == "4_hallucination" else metric
        assert key in metrics["metrics"], (stage, metrics)
        best[stage] = Path(metrics["ckpt_path"])
        assert best[stage].parent == run / "checkpoints" and best[stage].is_file()
    for stage, teachers in TAUGHT.items():
        records = torch.load(best[stage], weights_only=True)["lightning_kd"].get("teachers", [])
        assert [r["path"] for r in records] == [str(best[t].resolve()) for t in teachers], stage
        assert [r["sha256"] for r in records] == [file_sha256(best[t]) for t in teachers], stage
    rows = list(csv.DictReader((runs / f"mt_pkdot/{ds}_5_student/version_0" / STATS_CSV).open()))
    selected = [r for r in rows if r["name"].startswith("selected/")]
    assert {r["name"] for r in selected} == {"selected/joint", "selected/adapted_visual",
                                             "selected/adapted_privileged"}
    steps = [r for r in csv.DictReader((runs / f"mt_pkdot/{ds}_5_student/version_0/metrics.csv").open())
             if r.get("train/loss")]
    assert sum(float(r["value"]) for r in selected) == float(steps[-1]["step"]) + 1  # one teacher per step
    pk = list(csv.DictReader((runs / f"mt_pkdot/{ds}_pkdot/version_0" / STATS_CSV).open()))
    assert {r["name"] for r in pk} == {"kd", "selected/joint"}
    assert not (runs / f"mt_pkdot/{ds}_no_kd/version_0" / STATS_CSV).exists() or not any(
        r["name"].startswith("selected/") for r in csv.DictReader((runs / f"mt_pkdot/{ds}_no_kd/version_0" /
                                                                    STATS_CSV).open()))
    return best


@pytest.mark.slow
def test_biovid_chain_and_rows_through_the_pipeline(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from lightning_kd.cli import main
    from lightning_kd.data.generate.biovid import write_biovid

    root = write_biovid(tmp_path / "biovid", subjects=5, samples_per_class=4, seed=1)
    runs = tmp_path / "runs"
    best = _run_chain("biovid", root, runs, "acc", "--data.init_args.batch_size", "8")
    hp = torch.load(best["5_student"], weights_only=True)["hyper_parameters"]
    assert hp["role"] == "student" and hp["net"]["privileged_input"] == "bio"
    capsys.readouterr()
    stages = [str(ROOT / f"configs/mt_pkdot/biovid_{s}.yaml") for s in (*STAGES, *ROWS)]
    main(["pipeline", *stages, "--", *_small_args(root, runs, "--data.init_args.batch_size", "8")])
    out = capsys.readouterr().out
    assert out.count(": skip (up to date") == len(stages), out
    # the deployed student tests on video alone (no bio input, no teacher files needed)
    main(["test", "-c", str(ROOT / "configs/mt_pkdot/biovid_5_student.yaml"),
          *_small_args(root, tmp_path / "test_runs", "--data.init_args.inputs", "[video]"),
          "--ckpt_path", str(best["5_student"])])
    (metrics_file,) = (tmp_path / "test_runs").rglob("test_metrics.json")
    assert 0 <= json.loads(metrics_file.read_text())["metrics"]["acc"] <= 1


@pytest.mark.slow
def test_affwild2_chain_and_rows_through_the_pipeline(tmp_path: Path) -> None:
    from lightning_kd.data.generate.affwild2 import write_affwild2

    root = write_affwild2(tmp_path / "affwild2", train_videos=3, valid_videos=2, frames=(60, 80), seed=1)
    best = _run_chain("affwild2", root, tmp_path / "runs", "ccc_mean", "--data.init_args.cache_dir",
                      str(tmp_path / "cache"), "--data.init_args.batch_size", "16")
    hp = torch.load(best["5_student"], weights_only=True)["hyper_parameters"]
    assert hp["net"]["privileged_input"] == "audio" and hp["loss"]["task"] == "ccc"
