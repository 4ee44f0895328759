"""Multi-process and mixed precision come from trainer flags alone: DDP x2 on CPU with bf16-mixed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT, TINY_MODEL_ARGS
from lightning_kd.metrics import MMSA_KEYS


@pytest.mark.slow
def test_ddp_two_cpu_processes_bf16(tiny_mmsa_aligned: Path, tmp_path: Path) -> None:
    cmd = [sys.executable, "-m", "lightning_kd.cli", "fit", "-c", str(ROOT / "configs/dmd/mosi_aligned.yaml"),
           "--data.init_args.path", str(tiny_mmsa_aligned), *TINY_MODEL_ARGS,
           "--trainer.logger.init_args.save_dir", str(tmp_path / "runs"), "--trainer.max_epochs=2",
           "--trainer.strategy=ddp", "--trainer.devices=2", "--trainer.accelerator=cpu",
           "--trainer.precision=bf16-mixed", "--test_after_fit=true"]
    env = {**os.environ, "WANDB_MODE": "disabled", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    runs = sorted((tmp_path / "runs" / "dmd" / "mosi_aligned").iterdir())
    assert [r.name for r in runs] == ["version_0"], "both ranks must share one run directory"
    metrics = json.loads((runs[0] / "test_metrics.json").read_text())["metrics"]
    assert set(MMSA_KEYS) <= set(metrics) and all(metrics[k] is not None for k in ("MAE", "Has0_acc_2"))
    assert (runs[0] / "config.yaml").is_file() and (runs[0] / "checkpoints" / "last.ckpt").is_file()
    assert "world_size: 2" in proc.stderr + proc.stdout or "GLOBAL_RANK: 1" in proc.stderr + proc.stdout
