"""DMD benchmark: speed, memory, data-loading share and accuracy vs the late-fusion baseline.

Runs everything on a generated MOSI-shaped aligned MMSA pickle (1284/229/686 samples, 768/5/20 dims,
length 50), with the official DMD MOSI hyper-parameters (configs/dmd/mosi_aligned.yaml).

    python benchmarks/dmd_bench.py speed            # train/infer samples/s, peak RSS, data share; fp32 + bf16
    python benchmarks/dmd_bench.py accuracy         # 3 seeds x {DMD, fusion}: all 8 MMSA metrics, mean +- std
    python benchmarks/dmd_bench.py epochs           # a real `lightning-kd fit` (3 epochs): seconds per epoch, peak
    python benchmarks/dmd_bench.py all

Each measurement runs in its own process; peak memory is that process's maximum resident set size
(``wait4`` rusage), so it includes the data load. Results go to benchmarks/results/dmd_*.json and a
markdown table on stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
DATA = ROOT / "data" / "bench" / "mosi_aligned_synth.pkl"
MODELS = {
    "dmd": ("configs/dmd/mosi_aligned.yaml", None),
    "fusion": ("configs/fusion/mosi_aligned.yaml", None),  # builds on configs/dmd/mosi_aligned.yaml
}
KEYS = ("Has0_acc_2", "Has0_F1_score", "Non0_acc_2", "Non0_F1_score", "Mult_acc_5", "Mult_acc_7", "MAE", "Corr")


def _ensure_data() -> None:
    if not DATA.exists():
        from lightning_kd.data.generate.mmsa import write_mmsa_pickle

        write_mmsa_pickle(DATA, aligned=True, seed=0)


def _config_args(model: str) -> list[str]:
    base, override = MODELS[model]
    args = ["-c", str(ROOT / base)]
    if override:
        args += ["-c", str(ROOT / override)]
    return args + ["--data.init_args.path", str(DATA)]


def _run_child(argv: list[str]) -> tuple[dict, float]:
    """Run ``python this_file argv`` and return (its JSON result line, its peak RSS in MB)."""
    proc = subprocess.Popen([sys.executable, __file__, *argv], stdout=subprocess.PIPE, text=True, cwd=ROOT,
                            env={**os.environ, "WANDB_MODE": "disabled"})
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise RuntimeError(f"child {argv} failed with exit code {proc.returncode}")
    line = [ln for ln in out.splitlines() if ln.startswith("{")][-1]
    return json.loads(line), usage.ru_maxrss / 1024


# ---------------------------------------------------------------------------------------------- speed
def _speed_child(model: str, precision: str, steps: int) -> None:
    import lightning.pytorch as pl
    import torch

    from lightning_kd.cli import build_cli

    class Timer(pl.Callback):
        """Wall time per training batch, split into data (between batches) and compute (inside)."""

        def __init__(self, warmup: int) -> None:
            self.warmup, self.data, self.step, self.samples, self._end = warmup, 0.0, 0.0, 0, None

        def on_train_batch_start(self, trainer, module, batch, batch_idx):
            self._start = time.perf_counter()
            if self._end is not None and batch_idx >= self.warmup:
                self.data += self._start - self._end

        def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
            self._end = time.perf_counter()
            if batch_idx >= self.warmup:
                self.step += self._end - self._start
                self.samples += len(batch)

    timer = Timer(warmup=10)
    cli = build_cli(_config_args(model) + [
        f"--trainer.precision={precision}", f"--trainer.max_steps={steps}", "--trainer.limit_val_batches=0",
        "--trainer.enable_checkpointing=false", "--trainer.logger=false", "--trainer.enable_progress_bar=false",
        "--trainer.callbacks=[]", "--test_after_fit=false", "--trainer.num_sanity_val_steps=0"], run=False)
    cli.trainer.callbacks.append(timer)
    cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    train_sps = timer.samples / (timer.step + timer.data)

    net, dm = cli.model.eval(), cli.datamodule
    loader = dm.test_dataloader()
    ctx = torch.autocast("cpu", dtype=torch.bfloat16) if precision.startswith("bf16") else torch.autocast("cpu", enabled=False)
    n, t0 = 0, time.perf_counter()
    with torch.inference_mode(), ctx:
        for batch in loader:
            net.predict_scores(batch)
            n += len(batch)
    infer_sps = n / (time.perf_counter() - t0)
    print(json.dumps({"model": model, "precision": precision, "train_samples_per_s": train_sps,
                      "infer_samples_per_s": infer_sps, "data_share": timer.data / (timer.step + timer.data),
                      "measured_train_batches": timer.samples // dm.batch_size, "threads": torch.get_num_threads()}))


def speed(steps: int) -> list[dict]:
    _ensure_data()
    rows = []
    for model in MODELS:
        for precision in ("32-true", "bf16-mixed"):
            res, rss = _run_child(["_speed", model, precision, str(steps)])
            res["peak_rss_mb"] = rss
            rows.append(res)
            print(f"{model:7s} {precision:10s} train {res['train_samples_per_s']:7.1f} samples/s  "
                  f"infer {res['infer_samples_per_s']:7.1f} samples/s  peak {rss:6.0f} MB  "
                  f"data {100 * res['data_share']:.2f} %", flush=True)
    return rows


# ---------------------------------------------------------------------------------------------- epochs
#: The official mdswyz/DMD code on the same generated pickle and machine class, as measured for issue 12 (not
#: re-run by this script: it needs the official repository and its data loader): seconds per epoch 1-3
#: (training + its per-epoch evaluation) and peak memory (PSS summed over its worker processes).
OFFICIAL = {"source": "issue 12 (measured side by side on the same generated MOSI-shaped pickle, 2 CPU cores)",
            "epoch_s": [70.0, 106.0, 136.0], "peak_gb": 18.8}


def _epochs_child(model: str, epochs: int, precision: str) -> None:
    import lightning.pytorch as pl

    from lightning_kd.cli import build_cli

    class EpochTimer(pl.Callback):
        """Wall seconds of each epoch: training batches + the validation pass (what the official log times)."""

        def __init__(self) -> None:
            self.rows: list[dict] = []

        def on_train_epoch_start(self, trainer, module):
            self._t0 = time.perf_counter()

        def on_validation_epoch_start(self, trainer, module):
            self._v0 = time.perf_counter()

        def on_validation_epoch_end(self, trainer, module):
            if not trainer.sanity_checking:
                now = time.perf_counter()
                self.rows.append({"epoch": trainer.current_epoch + 1, "epoch_s": now - self._t0,
                                  "val_s": now - self._v0})

    timer = EpochTimer()
    t0 = time.perf_counter()
    cli = build_cli(_config_args(model) + [
        f"--trainer.max_epochs={epochs}", f"--trainer.precision={precision}", "--trainer.enable_progress_bar=false",
        "--test_after_fit=false", f"--trainer.logger.init_args.save_dir={ROOT / 'runs' / 'bench'}"], run=False)
    built = time.perf_counter() - t0
    cli.trainer.callbacks.append(timer)
    cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    print(json.dumps({"model": model, "precision": precision, "startup_s": built, "epochs": timer.rows,
                      "train_samples": len(cli.datamodule.train_dataloader().dataset)}))


def epochs(model: str, n: int, precision: str) -> dict:
    _ensure_data()
    t0 = time.perf_counter()
    res, rss = _run_child(["_epochs", model, str(n), precision])
    res.update(peak_rss_mb=rss, process_s=time.perf_counter() - t0, loadavg_start=os.getloadavg())
    first = res["epochs"][0]["epoch_s"]
    res["official"] = OFFICIAL
    res["first_epoch_speedup_vs_official"] = OFFICIAL["epoch_s"][0] / first
    print(f"{model} {precision}: epochs " + " / ".join(f"{e['epoch_s']:.1f}" for e in res["epochs"])
          + f" s (val {res['epochs'][0]['val_s']:.1f} s), peak {rss / 1024:.2f} GB; official "
          + " / ".join(f"{s:.0f}" for s in OFFICIAL["epoch_s"]) + f" s, {OFFICIAL['peak_gb']} GB; first epoch "
          f"{res['first_epoch_speedup_vs_official']:.2f}x", flush=True)
    return res


def plot_epochs(res: dict, out: Path) -> None:
    """Side by side: seconds per epoch and peak memory, ours (one run) vs the official code (issue 12)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(9, 3.4))
    ax1, ax2 = fig.subplots(1, 2)
    ours = [e["epoch_s"] for e in res["epochs"]]
    off = OFFICIAL["epoch_s"]
    ax1.plot(range(1, len(off) + 1), off, "o-", label="official mdswyz/DMD")
    ax1.plot(range(1, len(ours) + 1), ours, "s-", label="lightning_kd")
    ax1.set(xlabel="epoch", ylabel="seconds per epoch (train + eval)", ylim=(0, None), xticks=range(1, len(off) + 1))
    ax1.legend()
    ax2.bar(["official", "lightning_kd"], [OFFICIAL["peak_gb"], res["peak_rss_mb"] / 1024], color=["C0", "C1"])
    ax2.set(ylabel="peak memory (GB)")
    for i, v in enumerate([OFFICIAL["peak_gb"], res["peak_rss_mb"] / 1024]):
        ax2.annotate(f"{v:.2f}", (i, v), ha="center", va="bottom")
    fig.suptitle(f"DMD, MOSI-shaped generated pickle, {res['precision']}, 2 CPU cores")
    fig.tight_layout()
    fig.savefig(out, dpi=110)


# ---------------------------------------------------------------------------------------------- accuracy
def _fit_child(model: str, seed: int, max_epochs: int, precision: str) -> None:
    from lightning_kd.cli import build_cli

    cli = build_cli(["fit", *_config_args(model), f"--seed_everything={seed}", f"--trainer.max_epochs={max_epochs}",
                     f"--trainer.precision={precision}", "--trainer.enable_progress_bar=false",
                     f"--trainer.logger.init_args.save_dir={ROOT / 'runs' / 'bench'}"])
    out = Path(cli.trainer.log_dir) / "test_metrics.json"
    payload = json.loads(out.read_text())
    print(json.dumps({"model": model, "seed": seed, "epochs": cli.trainer.current_epoch, **payload["metrics"]}))


def accuracy(seeds: list[int], max_epochs: int, precision: str) -> list[dict]:
    _ensure_data()
    rows = []
    for seed in seeds:
        for model in MODELS:
            t0 = time.perf_counter()
            res, rss = _run_child(["_fit", model, str(seed), str(max_epochs), precision])
            res.update(peak_rss_mb=rss, wall_s=time.perf_counter() - t0)
            rows.append(res)
            print(f"{model:7s} seed {seed}: " + " ".join(f"{k}={res[k]:.4f}" for k in KEYS)
                  + f"  ({res['epochs']} epochs, {res['wall_s']:.0f} s)", flush=True)
    return rows


def _table(rows: list[dict]) -> str:
    lines = ["| metric | " + " | ".join(MODELS) + " |", "|---|" + "---|" * len(MODELS)]
    for k in KEYS:
        cells = []
        for m in MODELS:
            vals = [r[k] for r in rows if r["model"] == m and r.get(k) is not None]
            sd = statistics.stdev(vals) if len(vals) > 1 else 0.0
            cells.append(f"{statistics.mean(vals):.4f} ± {sd:.4f}" if vals else "n/a")
        lines.append(f"| {k} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "_speed":
        return _speed_child(sys.argv[2], sys.argv[3], int(sys.argv[4]))
    if len(sys.argv) > 1 and sys.argv[1] == "_epochs":
        return _epochs_child(sys.argv[2], int(sys.argv[3]), sys.argv[4])
    if len(sys.argv) > 1 and sys.argv[1] == "_fit":
        return _fit_child(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5])
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("what", choices=["speed", "epochs", "accuracy", "all"])
    p.add_argument("--steps", type=int, default=8, help="optimizer steps for speed runs (x accumulate 10 batches; 8 fit in one MOSI epoch)")
    p.add_argument("--seeds", type=int, nargs="+", default=[1111, 1112, 1113])
    p.add_argument("--max_epochs", type=int, default=30)
    p.add_argument("--precision", default="32-true", help="precision of the accuracy runs")
    a = p.parse_args()
    RESULTS.mkdir(parents=True, exist_ok=True)
    if a.what in ("speed", "all"):
        rows = speed(a.steps)
        (RESULTS / "dmd_speed.json").write_text(json.dumps(rows, indent=2))
    if a.what in ("epochs", "all"):
        res = epochs("dmd", 2, "32-true")
        (RESULTS / "dmd_epochs.json").write_text(json.dumps(res, indent=2))
        plot_epochs(res, RESULTS / "dmd_epochs.png")
    if a.what in ("accuracy", "all"):
        rows = accuracy(a.seeds, a.max_epochs, a.precision)
        (RESULTS / f"dmd_accuracy_e{a.max_epochs}.json").write_text(json.dumps(rows, indent=2))
        print(_table(rows))


if __name__ == "__main__":
    main()
