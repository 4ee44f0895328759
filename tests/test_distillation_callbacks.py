"""Distillation callbacks (lightning_kd.callbacks.distillation) and the statistics accumulator they log."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import pytest
import torch
from kd_helpers import TinyClassifier
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger

from lightning_kd.callbacks import DistillationStats, RobustnessAfterFit
from lightning_kd.data.formats.mmsa import MMSADataModule
from lightning_kd.distill.logit_kd import kd_kl
from lightning_kd.distill.stats import DistillStats
from lightning_kd.robustness import read_robustness_csv

pytestmark = pytest.mark.usefixtures("single_thread")


def test_stats_means_counts_and_a_two_rank_reduction() -> None:
    s = DistillStats()
    s.add("kd/teacher_0", torch.tensor(1.0))
    s.add("kd/teacher_0", torch.tensor(2.0))
    s.add("kd/teacher_0", 4.0, n=2)  # the mean of two values
    s.count("dropped/teacher_0")
    s.count("dropped/teacher_0", torch.tensor([1, 0, 1]))
    s.count("selected/teacher_1", 5)
    assert s.compute() == {"kd/teacher_0": pytest.approx((1 + 2 + 8) / 4), "dropped/teacher_0": 3.0,
                           "selected/teacher_1": 5.0}
    with pytest.raises(ValueError, match="recorded as a count"):
        s.add("dropped/teacher_0", 1.0)
    # two ranks with identical records, the other one also counted a name this rank never saw
    reduced = s.compute(reduce_sum=lambda t: t * 2,
                        gather_names=lambda kinds: {**kinds, "dropped/teacher_1": "count"})
    assert reduced == {"kd/teacher_0": pytest.approx(11 / 4), "dropped/teacher_0": 6.0, "selected/teacher_1": 10.0,
                       "dropped/teacher_1": 0.0}
    s.reset()
    assert s.compute() == {} and s.kinds == {}


class CountingStudent(TinyClassifier):
    """Records, besides the per-teacher logit-KD means, a count per step and one per sample."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.steps: list[tuple[int, list[float], int]] = []  # (epoch, KD per teacher, batch size)

    def distillation_terms(self, batch, terms):
        out = super().distillation_terms(batch, terms)
        with torch.no_grad():  # the per-teacher terms, recomputed here by hand (the net has no dropout)
            student = self.class_logits(batch)
            kds = [kd_kl(student, t.class_logits(batch), self.logit_kd.temperature) for t in self.teachers]
        self.distill_stats.count("selected/teacher_1")
        self.distill_stats.count("samples", len(batch))
        self.steps.append((self.current_epoch, [float(x) for x in kds], len(batch)))
        return out


def trained_teacher(dm: MMSADataModule, path: Path, inputs: tuple[str, ...], seed: int) -> Path:
    pl.seed_everything(seed)
    t = pl.Trainer(accelerator="cpu", max_epochs=1, limit_train_batches=2, limit_val_batches=1, logger=False,
                   enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)
    t.fit(TinyClassifier(dm.feature_dims, dm.seq_lens, inputs=inputs), datamodule=dm)
    t.save_checkpoint(path)
    return path


@pytest.fixture(scope="module")
def dm(tiny_mmsa_aligned: Path) -> MMSADataModule:
    d = MMSADataModule(str(tiny_mmsa_aligned), batch_size=8)
    d.setup()
    return d


def test_distillation_stats_logged_per_epoch_and_written_to_the_run_dir(dm: MMSADataModule, tmp_path: Path) -> None:
    teachers = [trained_teacher(dm, tmp_path / "t0.ckpt", ("text", "audio", "vision"), 1),
                trained_teacher(dm, tmp_path / "t1.ckpt", ("audio", "vision"), 2)]
    s = CountingStudent(dm.feature_dims, dm.seq_lens, inputs=["vision"], teacher_ckpts=[str(t) for t in teachers],
                        logit_kd={"temperature": 2.0, "weight": 0.3})
    logger = CSVLogger(tmp_path / "runs", name="stats")
    t = pl.Trainer(accelerator="cpu", max_epochs=2, limit_train_batches=3, limit_val_batches=1, logger=logger,
                   enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                   log_every_n_steps=1, callbacks=[DistillationStats()])
    t.fit(s, datamodule=dm)
    # per epoch: the mean of that epoch's per-step KD values (the accumulator is reset at each epoch start)
    expected: dict[tuple[int, str], float] = {}
    for epoch in (0, 1):
        steps = [st for st in s.steps if st[0] == epoch]
        assert len(steps) == 3
        for k in range(2):
            expected[(epoch, f"logit_kd/teacher_{k}")] = sum(st[1][k] for st in steps) / 3
        expected[(epoch, "selected/teacher_1")] = 3.0
        expected[(epoch, "samples")] = float(sum(st[2] for st in steps))
    with open(tmp_path / "runs/stats/version_0/distillation_stats.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["epoch"] for r in rows] == ["0"] * 4 + ["1"] * 4
    got = {(int(r["epoch"]), r["name"]): float(r["value"]) for r in rows}
    assert got.keys() == expected.keys()
    for key, value in expected.items():
        assert got[key] == pytest.approx(value, rel=1e-5), key
    assert expected[(0, "samples")] == 24.0
    # and logged once per epoch as distill/<name>
    with open(tmp_path / "runs/stats/version_0/metrics.csv", newline="") as f:
        logged = [r for r in csv.DictReader(f) if r.get("distill/samples")]
    assert [float(r["distill/samples"]) for r in logged] == [24.0, 24.0]
    assert [float(r["distill/logit_kd/teacher_1"]) for r in logged] == pytest.approx(
        [expected[(e, "logit_kd/teacher_1")] for e in (0, 1)], rel=1e-5)
    assert not list((tmp_path / "runs/stats/version_0").glob(".*.tmp"))  # written atomically


def test_robustness_after_fit_on_the_best_checkpoint(dm: MMSADataModule, tmp_path: Path) -> None:
    pl.seed_everything(0)
    best = ModelCheckpoint(monitor="val/loss", mode="min", save_top_k=1)
    t = pl.Trainer(accelerator="cpu", max_epochs=2, limit_train_batches=2, limit_val_batches=1,
                   logger=CSVLogger(tmp_path / "runs", name="rob"), enable_progress_bar=False,
                   enable_model_summary=False, callbacks=[best, RobustnessAfterFit(rates=[0.0, 1.0],
                                                                                   settings=["v", "lav"], seed=3)])
    model = TinyClassifier(dm.feature_dims, dm.seq_lens)
    t.fit(model, datamodule=dm)
    rows = read_robustness_csv(tmp_path / "runs/rob/version_0/robustness.csv")
    assert [(r["setting"], r["rate"]) for r in rows] == [("v", 0.0), ("v", 1.0), ("lav", 0.0), ("lav", 1.0)]
    assert (tmp_path / "runs/rob/version_0/robustness.png").is_file()
    # the complete condition is the best checkpoint's plain test score
    ref = pl.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False)
    with pytest.warns(UserWarning, match="callbacks used to create the checkpoint"):  # a bare Trainer, on purpose
        plain = ref.test(TinyClassifier(dm.feature_dims, dm.seq_lens), datamodule=dm, ckpt_path=best.best_model_path,
                         verbose=False)[0]
    assert rows[2]["Has0_acc_2"] == pytest.approx(plain["test/Has0_acc_2"])


def test_robustness_after_fit_default_settings_are_all(dm: MMSADataModule, tmp_path: Path) -> None:
    t = pl.Trainer(accelerator="cpu", max_epochs=1, limit_train_batches=1, limit_val_batches=1, limit_test_batches=1,
                   logger=CSVLogger(tmp_path / "runs", name="rob"), enable_progress_bar=False,
                   enable_model_summary=False, enable_checkpointing=False, callbacks=[RobustnessAfterFit(rates=[0.0])])
    t.fit(TinyClassifier(dm.feature_dims, dm.seq_lens), datamodule=dm)
    rows = read_robustness_csv(tmp_path / "runs/rob/version_0/robustness.csv")
    from lightning_kd.data.missing import MODALITY_SETTINGS

    assert [r["setting"] for r in rows] == [*MODALITY_SETTINGS, "avg"]


DDP_SCRIPT = """
import csv, json, os, sys
sys.path.insert(0, {tests!r})
import lightning.pytorch as pl
from lightning.pytorch.loggers import CSVLogger
from kd_helpers import TinyClassifier
from lightning_kd.callbacks import DistillationStats
from lightning_kd.data.formats.mmsa import MMSADataModule


class Counting(TinyClassifier):
    def training_losses(self, batch):
        self.distill_stats.count("samples", len(batch))
        self.distill_stats.count(f"rank_{{self.global_rank}}")   # a name only this rank records
        self.distill_stats.add("rank_value", float(self.global_rank))
        return super().training_losses(batch)


pl.seed_everything(0)
dm = MMSADataModule({data!r}, batch_size=4)
t = pl.Trainer(accelerator="cpu", strategy="ddp", devices=2, max_epochs=1, limit_train_batches=3, limit_val_batches=1,
               logger=CSVLogger({out!r}, name="ddp"), enable_checkpointing=False, enable_progress_bar=False,
               enable_model_summary=False, callbacks=[DistillationStats()])
t.fit(Counting(dm.feature_dims, dm.seq_lens), datamodule=dm)
with open(os.path.join({out!r}, f"logged{{t.global_rank}}.json"), "w") as f:
    json.dump({{k: float(v) for k, v in t.callback_metrics.items() if k.startswith("distill/")}}, f)
"""


@pytest.mark.slow
def test_distillation_stats_are_summed_across_ddp_ranks(tiny_mmsa_aligned: Path, tmp_path: Path) -> None:
    import json
    import os
    import subprocess
    import sys

    script = tmp_path / "ddp_stats.py"
    script.write_text(DDP_SCRIPT.format(tests=str(Path(__file__).parent), data=str(tiny_mmsa_aligned),
                                        out=str(tmp_path)))
    env = {**os.environ, "WANDB_MODE": "disabled", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]
    # 2 ranks x 3 steps x 4 samples; each rank's own name once per step; the mean over both ranks' values
    expected = {"distill/samples": 24.0, "distill/rank_0": 3.0, "distill/rank_1": 3.0, "distill/rank_value": 0.5}
    for r in (0, 1):
        assert json.loads((tmp_path / f"logged{r}.json").read_text()) == expected
    with open(tmp_path / "ddp/version_0/distillation_stats.csv", newline="") as f:
        rows = {row["name"]: float(row["value"]) for row in csv.DictReader(f)}
    assert rows == {k.removeprefix("distill/"): v for k, v in expected.items()}
