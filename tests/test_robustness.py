"""`lightning-kd robustness`: a trained checkpoint tested over the missing-rate x modality-setting grid."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from conftest import ROOT, TINY_MODEL_ARGS
from lightning_kd.cli import main
from lightning_kd.data.missing import INCOMPLETE_SETTINGS, MODALITY_SETTINGS
from lightning_kd.metrics import MMSA_KEYS
from lightning_kd.robustness import read_robustness_csv

pytestmark = pytest.mark.usefixtures("single_thread")

RATES = [0.0, 0.5, 1.0]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
#: a CorrKD run small enough for a test (the synthetic configs with generated MMSA data)
CORRKD_TINY = ["--model.init_args.net.dim", "8", "--model.init_args.net.heads", "2", "--model.init_args.net.layers", "1",
               "--model.init_args.loss.mi_hidden", "8", "--trainer.max_epochs", "1", "--data.init_args.batch_size", "8",
               "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false"]


def metric_columns(row: dict) -> list[str]:
    return [k for k in row if k not in ("condition", "setting", "rate")]


def same(a: float, b: float, rel: float = 1e-5) -> bool:
    return (math.isnan(a) and math.isnan(b)) or a == pytest.approx(b, rel=rel, abs=1e-6)


@pytest.fixture(scope="module")
def fusion_run(tiny_mmsa_aligned: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny fusion baseline trained 1 epoch through the CLI (tested after fit); returns its run directory."""
    save = tmp_path_factory.mktemp("robust_fusion")
    main(["fit", "-c", str(ROOT / "configs/fusion/mosi_aligned.yaml"), "--data.init_args.path", str(tiny_mmsa_aligned),
          *TINY_MODEL_ARGS, "--trainer.logger.init_args.save_dir", str(save), "--trainer.max_epochs=1",
          "--test_after_fit=true"])
    return save / "fusion/mosi_aligned/version_0"


def test_robustness_grid_of_a_fusion_checkpoint(fusion_run: Path) -> None:
    main(["robustness", "-c", str(fusion_run / "config.yaml"), "--ckpt_path", str(fusion_run / "checkpoints/last.ckpt"),
          "--rates", "[0.0, 0.5, 1.0]"])
    out = fusion_run.parent / "version_1"  # a new run directory, as for test / predict
    csv_path, png = out / "robustness.csv", out / "robustness.png"
    assert csv_path.is_file() and png.is_file()
    assert png.read_bytes()[:8] == PNG_MAGIC
    assert not (out / "test_metrics.json").exists(), "the robustness run must not write test_metrics.json"

    header = csv_path.read_text().splitlines()[0].split(",")
    assert header[:3] == ["condition", "setting", "rate"]
    assert set(MMSA_KEYS) <= set(header)
    rows = read_robustness_csv(csv_path)
    grid = [r for r in rows if r["setting"] != "avg"]
    avg = [r for r in rows if r["setting"] == "avg"]
    assert len(grid) == len(MODALITY_SETTINGS) * len(RATES) and len(avg) == len(RATES)
    assert sorted((r["setting"], r["rate"]) for r in grid) == sorted((s, p) for s in MODALITY_SETTINGS for p in RATES)
    assert {r["condition"] for r in grid} == {f"{s}@{p:.1f}" for s in MODALITY_SETTINGS for p in RATES}
    assert sorted(r["rate"] for r in avg) == RATES and {r["condition"] for r in avg} == {f"avg@{p:.1f}" for p in RATES}
    keys = metric_columns(rows[0])
    for a in avg:
        group = [r for r in grid if r["rate"] == a["rate"] and r["setting"] in INCOMPLETE_SETTINGS]
        assert len(group) == 6
        for k in keys:
            assert same(a[k], sum(g[k] for g in group) / 6), (a["condition"], k)

    # p = 1.0: every valid frame of every modality is zero in every setting and the baseline reads no mask,
    # so its prediction, hence every metric, is the same whatever the available modalities
    at_one = [r for r in grid if r["rate"] == 1.0]
    for r in at_one[1:]:
        for k in keys:
            assert same(r[k], at_one[0][k], rel=1e-6), (r["condition"], k)
    # ... and it is a constant prediction (Pearson correlation undefined)
    assert math.isnan(at_one[0]["Corr"])

    # rate 0 with every modality is the complete test set: the numbers of `test` after fit
    complete = next(r for r in grid if r["condition"] == "lav@0.0")
    tested = json.loads((fusion_run / "test_metrics.json").read_text())["metrics"]
    for k in MMSA_KEYS:
        assert same(complete[k], tested[k], rel=1e-5), k
    # missingness is visible in the results
    assert any(not same(r["MAE"], complete["MAE"]) for r in grid)
    # the fit run's own results are untouched
    assert not (fusion_run / "robustness.csv").exists()


def test_robustness_of_a_corrkd_student(tiny_mmsa_aligned: Path, tmp_path: Path) -> None:
    """Classification metrics (no MAE), a subset of settings (no avg rows), on a pipeline-trained student."""
    save = tmp_path / "runs"
    main(["pipeline", str(ROOT / "configs/corrkd/synthetic_teacher.yaml"),
          str(ROOT / "configs/corrkd/synthetic_student.yaml"), "--",
          "--data.class_path", "lightning_kd.data.formats.mmsa.MMSADataModule", "--data.init_args.path",
          str(tiny_mmsa_aligned), *CORRKD_TINY, "--trainer.limit_train_batches", "2", "--test_after_fit", "false",
          "--trainer.logger.init_args.save_dir", str(save)])
    run = save / "corrkd/synthetic_student/version_0"
    main(["robustness", "-c", str(run / "config.yaml"), "--ckpt_path", str(run / "checkpoints/last.ckpt"),
          "--rates", "[0.0, 1.0]", "--settings", "[l, av, lav]", "--seed", "3"])
    out = run.parent / "version_1"
    rows = read_robustness_csv(out / "robustness.csv")
    assert (out / "robustness.png").read_bytes()[:8] == PNG_MAGIC
    assert not (out / "test_metrics.json").exists()
    keys = metric_columns(rows[0])
    assert "Has0_F1_score" in keys and "Has0_acc_2" in keys and "MAE" not in keys
    assert [(r["setting"], r["rate"]) for r in rows] == [(s, p) for s in ("l", "av", "lav") for p in (0.0, 1.0)]
    for r in rows:
        assert 0.0 <= r["Has0_F1_score"] <= 1.0
