"""DMD accumulation / clipping protocols compared: the official one vs Lightning's built-in one.

* ``official``: ``SummedAccumulationClipping`` (configs/dmd/*.yaml): gradients summed over 10 batches,
  ``clip_grad_value_(0.6)`` after every backward, step every 10 batches, the last partial group dropped
  (mdswyz/DMD trains/singleTask/DMD.py l. 72-74, 177-195).
* ``lightning``: ``accumulate_grad_batches: 10`` + ``gradient_clip_val: 0.6, gradient_clip_algorithm: value``:
  each loss divided by 10, one clip before the step, a step on the partial group.

Same config (official DMD MOSI hyper-parameters), seed and generated MOSI-shaped aligned file (1284/229/686
samples, 768/5/20 dims, length 50); each run in its own process on ONE thread. Reports the fraction of
gradient entries clipped and the validation / test metrics of the best (val L1) checkpoint.

    python benchmarks/dmd_clipping.py --max_epochs 6 --seed 1111    # -> benchmarks/results/dmd_clipping.json
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
DATA = ROOT / "data" / "bench" / "mosi_aligned_synth.pkl"
CONFIG = ROOT / "configs" / "dmd" / "mosi_aligned.yaml"
KEYS = ("MAE", "Has0_acc_2", "Non0_acc_2", "Mult_acc_7", "Corr")
CLIP = 0.6


def _child(protocol: str, seed: int, max_epochs: int, data: str, overrides: list[str]) -> None:
    import lightning.pytorch as pl
    import torch

    from lightning_kd.callbacks import SummedAccumulationClipping
    from lightning_kd.cli import build_cli

    torch.set_num_threads(1)

    class CountLightningClipped(pl.Callback):
        """Entries Lightning's single clip_grad_value_ (run right after this hook) will clip, per step."""

        def __init__(self) -> None:
            self.clipped, self.seen, self.steps = 0, 0, 0

        def on_before_optimizer_step(self, trainer, module, optimizer):
            grads = [p.grad for g in optimizer.param_groups for p in g["params"] if p.grad is not None]
            self.clipped += int(sum(torch.count_nonzero(g.abs() > CLIP) for g in grads))
            self.seen += sum(g.numel() for g in grads)
            self.steps += 1

    extra = ["--trainer.gradient_clip_val=0.6", "--trainer.gradient_clip_algorithm=value"] if protocol == "lightning" else []
    cli = build_cli(["-c", str(CONFIG), "--data.init_args.path", data, f"--seed_everything={seed}",
                     f"--trainer.max_epochs={max_epochs}", "--trainer.enable_progress_bar=false",
                     f"--trainer.logger.init_args.save_dir={ROOT / 'runs' / 'bench_clipping'}",
                     f"--trainer.logger.init_args.name={protocol}", *extra, *overrides], run=False)
    cbs = cli.trainer.callbacks
    official = [c for c in cbs if isinstance(c, SummedAccumulationClipping)]
    assert len(official) == 1, "configs/dmd/mosi_aligned.yaml should hold SummedAccumulationClipping"
    official[0].track_stats = True  # count the clipped entries (off in the configs: it costs ~4 % of a step)
    if protocol == "lightning":
        cbs.remove(official[0])
        counter = CountLightningClipped()
        cbs.append(counter)
    t0 = time.perf_counter()
    cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    wall = time.perf_counter() - t0
    best = cli.trainer.checkpoint_callback.best_model_path
    val = cli.trainer.validate(cli.model, datamodule=cli.datamodule, ckpt_path=best, verbose=False)[0]
    test = cli.trainer.test(cli.model, datamodule=cli.datamodule, ckpt_path=best, verbose=False)[0]
    if protocol == "lightning":
        clip = {"at_step": counter.clipped / max(counter.seen, 1), "every_backward": None,
                "optimizer_steps": counter.steps, "dropped_groups": 0}
    else:
        cb = official[0]
        clip = {**cb.clipped_fraction, "optimizer_steps": cb.steps, "dropped_groups": cb.dropped}
    print(json.dumps({
        "protocol": protocol, "seed": seed, "epochs": cli.trainer.current_epoch, "best_ckpt": Path(best).name,
        "fit_wall_s": wall, "threads": torch.get_num_threads(), "clipped_fraction": clip,
        "val": {k.removeprefix("val/"): float(v) for k, v in val.items()},
        "test": {k.removeprefix("test/"): float(v) for k, v in test.items()},
    }))


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "_child":
        return _child(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5], sys.argv[6:])
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seed", type=int, default=1111)
    p.add_argument("--max_epochs", type=int, default=6)
    p.add_argument("--protocols", nargs="+", default=["official", "lightning"], choices=["official", "lightning"])
    p.add_argument("--data", type=Path, default=DATA, help="MMSA pickle (generated here when it is the default)")
    p.add_argument("--out", type=Path, default=RESULTS / "dmd_clipping.json")
    a, overrides = p.parse_known_args()  # further --key=value arguments go to every run's CLI
    if a.data == DATA and not DATA.exists():
        from lightning_kd.data.generate.mmsa import write_mmsa_pickle

        write_mmsa_pickle(DATA, aligned=True, seed=0)
    env = {**os.environ, "WANDB_MODE": "disabled", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    rows = []
    for protocol in a.protocols:
        out = subprocess.run([sys.executable, __file__, "_child", protocol, str(a.seed), str(a.max_epochs), str(a.data),
                              *overrides],
                             cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True, check=True).stdout
        row = json.loads([ln for ln in out.splitlines() if ln.startswith("{")][-1])
        rows.append(row)
        c = row["clipped_fraction"]
        print(f"{protocol:9s} clipped at step {100 * c['at_step']:.2f} %"
              + (f" (every backward {100 * c['every_backward']:.2f} %)" if c["every_backward"] is not None else "")
              + f", {c['optimizer_steps']} steps; val MAE {row['val']['MAE']:.4f} Has0_acc_2 "
              f"{row['val']['Has0_acc_2']:.4f}; test MAE {row['test']['MAE']:.4f} Has0_acc_2 "
              f"{row['test']['Has0_acc_2']:.4f}; fit {row['fit_wall_s']:.0f} s", flush=True)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    data = "generated MOSI-shaped aligned MMSA (lightning_kd.data.generate.mmsa, seed 0)" if a.data == DATA else str(a.data)
    a.out.write_text(json.dumps({"data": data, "config": str(CONFIG.relative_to(ROOT)), "overrides": overrides,
                                 "machine": "2 CPU cores, no GPU, 1 thread per run", "runs": rows}, indent=2))


if __name__ == "__main__":
    main()
