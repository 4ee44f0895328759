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


def _config_args(model: str, storage: str = "float32") -> list[str]:
    base, override = MODELS[model]
    args = ["-c", str(ROOT / base)]
    if override:
        args += ["-c", str(ROOT / override)]
    return args + ["--data.init_args.path", str(DATA), f"--data.init_args.storage_dtype={storage}"]


def _run_child(argv: list[str], all_lines: bool = False) -> tuple[dict | list[dict], float]:
    """Run ``python this_file argv`` and return (its last JSON result line, or all of them, its peak RSS in MB)."""
    proc = subprocess.Popen([sys.executable, __file__, *argv], stdout=subprocess.PIPE, text=True, cwd=ROOT,
                            env={**os.environ, "WANDB_MODE": "disabled"})
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise RuntimeError(f"child {argv} failed with exit code {proc.returncode}")
    lines = [json.loads(ln) for ln in out.splitlines() if ln.startswith("{")]
    return (lines if all_lines else lines[-1]), usage.ru_maxrss / 1024


def _ddp_args(processes: int) -> list[str]:
    """Trainer flags of a data-parallel run over ``processes`` CPU processes that share the cores (threads per
    process set here, before torch is imported; the rank Lightning re-launches inherits it), the official batch
    of 16 split between them. ``[]`` for one process."""
    if processes == 1:
        return []
    os.environ["OMP_NUM_THREADS"] = str(max(1, len(os.sched_getaffinity(0)) // processes))
    return ["--trainer.strategy=ddp", f"--trainer.devices={processes}", "--trainer.accelerator=cpu",
            f"--data.init_args.batch_size={16 // processes}"]


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


def _epochs_child(model: str, epochs: int, precision: str, processes: int = 1, storage: str = "float32") -> None:
    import resource

    ddp = _ddp_args(processes)

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
    cli = build_cli(_config_args(model, storage) + ddp + [
        f"--trainer.max_epochs={epochs}", f"--trainer.precision={precision}", "--trainer.enable_progress_bar=false",
        "--test_after_fit=false", f"--trainer.logger.init_args.save_dir={ROOT / 'runs' / 'bench'}"], run=False)
    built = time.perf_counter() - t0
    cli.trainer.callbacks.append(timer)
    cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    # every rank prints its own line (a DDP launcher re-runs this command for rank 1, same stdout)
    print(json.dumps({"model": model, "precision": precision, "storage_dtype": storage, "processes": processes,
                      "rank": cli.trainer.global_rank,
                      "threads": __import__("torch").get_num_threads(), "startup_s": built, "epochs": timer.rows,
                      "peak_rss_mb_self": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                      "train_samples": len(cli.datamodule.split("train"))}), flush=True)  # the whole split; DDP shards it


def epochs(model: str, n: int, precision: str, processes: int = 1, storage: str = "float32") -> dict:
    """A real fit of ``n`` epochs in its own process (``processes`` > 1: DDP over that many CPU processes, one
    thread each); peak memory: the process's maximum RSS, or for DDP the SUM of the ranks' maxima (an upper bound
    of the job's peak)."""
    _ensure_data()
    load = os.getloadavg()
    t0 = time.perf_counter()
    res, rss = _run_child(["_epochs", model, str(n), precision, str(processes), storage], all_lines=True)
    ranks = sorted(res, key=lambda r: r["rank"])
    res = {k: v for k, v in ranks[0].items() if k not in ("rank", "peak_rss_mb_self")}
    if processes > 1:
        res["peak_rss_mb_per_rank"] = [r["peak_rss_mb_self"] for r in ranks]
        rss = sum(res["peak_rss_mb_per_rank"])
    res.update(peak_rss_mb=rss, process_s=time.perf_counter() - t0, loadavg_start=load)
    first = res["epochs"][0]["epoch_s"]
    res["official"] = OFFICIAL
    res["first_epoch_speedup_vs_official"] = OFFICIAL["epoch_s"][0] / first
    print(f"{model} {precision} x{processes} process(es), data held in {storage}: epochs " + " / ".join(f"{e['epoch_s']:.1f}" for e in res["epochs"])
          + f" s (val {res['epochs'][0]['val_s']:.1f} s), peak {rss / 1024:.2f} GiB; official "
          + " / ".join(f"{s:.0f}" for s in OFFICIAL["epoch_s"]) + f" s, {OFFICIAL['peak_gb']} GB; first epoch "
          f"{res['first_epoch_speedup_vs_official']:.2f}x", flush=True)
    return res


def plot_epochs(res: dict, out: Path) -> None:
    """Side by side: seconds per epoch and peak memory, ours (every run) vs the official code (issue 12)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10, 3.6))
    ax1, ax2 = fig.subplots(1, 2)
    off = OFFICIAL["epoch_s"]
    ax1.plot(range(1, len(off) + 1), off, "o-", color="C0", label="official mdswyz/DMD")
    names, peaks = ["official"], [OFFICIAL["peak_gb"]]
    configs = list(dict.fromkeys((r["processes"], r.get("storage_dtype", "float32")) for r in res["runs"]))
    for n, (procs, storage) in enumerate(configs):
        runs = [r for r in res["runs"] if (r["processes"], r.get("storage_dtype", "float32")) == (procs, storage)]
        name = "ours" + (f" DDP x{procs}" if procs > 1 else "") + ("" if storage == "float32" else f", data {storage}")
        for i, r in enumerate(runs):
            ours = [e["epoch_s"] for e in r["epochs"]]
            ax1.plot(range(1, len(ours) + 1), ours, "s-", color=f"C{n + 1}", alpha=0.6 + 0.4 * (i == 0),
                     label=name if i == 0 else None)
        names.append(name.replace(" DDP", "\nDDP").replace(", data", "\ndata"))
        peaks.append(max(r["peak_rss_mb"] for r in runs) / 1024)
    ax1.set(xlabel="epoch", ylabel="seconds per epoch (train + eval)", ylim=(0, None), xticks=range(1, len(off) + 1))
    ax1.legend(fontsize=8)
    ax2.bar(names, peaks, color=[f"C{i}" for i in range(len(names))])
    ax2.tick_params(axis="x", labelsize=7)
    ax2.set(ylabel="peak memory (official GB, ours GiB)")
    for i, v in enumerate(peaks):
        ax2.annotate(f"{v:.2f}", (i, v), ha="center", va="bottom")
    fig.suptitle("DMD, MOSI-shaped generated pickle, fp32, 2 CPU cores")
    fig.tight_layout()
    fig.savefig(out, dpi=110)


# ---------------------------------------------------------------------------------------------- accuracy
def _fit_child(model: str, seed: int, max_epochs: int, precision: str, processes: int = 1,
               storage: str = "float32") -> None:
    ddp = _ddp_args(processes)
    from lightning_kd.cli import build_cli

    cli = build_cli(["fit", *_config_args(model, storage), *ddp, f"--seed_everything={seed}", f"--trainer.max_epochs={max_epochs}",
                     f"--trainer.precision={precision}", "--trainer.enable_progress_bar=false",
                     f"--trainer.logger.init_args.save_dir={ROOT / 'runs' / 'bench'}"])
    if cli.trainer.global_rank != 0:
        return
    out = Path(cli.trainer.log_dir) / "test_metrics.json"
    payload = json.loads(out.read_text())
    print(json.dumps({"model": model, "seed": seed, "processes": processes, "storage_dtype": storage,
                      "epochs": cli.trainer.current_epoch,
                      **payload["metrics"]}))


def accuracy(seeds: list[int], max_epochs: int, precision: str, models: list[str], processes: int = 1,
             storage: str = "float32") -> list[dict]:
    _ensure_data()
    rows = []
    for seed in seeds:
        for model in models:
            t0 = time.perf_counter()
            res, rss = _run_child(["_fit", model, str(seed), str(max_epochs), precision, str(processes), storage])
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
        return _epochs_child(sys.argv[2], int(sys.argv[3]), sys.argv[4], int(sys.argv[5]), sys.argv[6])
    if len(sys.argv) > 1 and sys.argv[1] == "_fit":
        return _fit_child(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5], int(sys.argv[6]), sys.argv[7])
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("what", choices=["speed", "epochs", "accuracy", "all"])
    p.add_argument("--steps", type=int, default=8, help="optimizer steps for speed runs (x accumulate 10 batches; 8 fit in one MOSI epoch)")
    p.add_argument("--seeds", type=int, nargs="+", default=[1111, 1112, 1113])
    p.add_argument("--max_epochs", type=int, default=30)
    p.add_argument("--precision", default="32-true", help="precision of the accuracy runs")
    p.add_argument("--epochs", type=int, default=2, help="epochs per run of `epochs`")
    p.add_argument("--processes", type=int, nargs="+", default=[1, 2],
                   help="`epochs`: configurations, 1 = one process (2 threads), 2 = DDP over 2 processes of one thread "
                        "and batch 8 each; `accuracy`: the first value")
    p.add_argument("--storage_dtype", nargs="+", default=["float32"], choices=["float32", "float16", "bfloat16"],
                   help="the dtype the data is held in (`--data.init_args.storage_dtype`); `epochs`: configurations "
                        "(crossed with --processes), `accuracy`: the first value")
    p.add_argument("--repeats", type=int, default=2, help="`epochs`: runs per configuration, alternating")
    p.add_argument("--out", help="`epochs`: write the JSON here (no plot) instead of results/dmd_epochs.json")
    p.add_argument("--models", nargs="+", choices=list(MODELS), help="`accuracy`: models (default: both; DMD with DDP)")
    a = p.parse_args()
    RESULTS.mkdir(parents=True, exist_ok=True)
    if a.what in ("speed", "all"):
        rows = speed(a.steps)
        (RESULTS / "dmd_speed.json").write_text(json.dumps(rows, indent=2))
    if a.what in ("epochs", "all"):
        # the configurations alternate, so the machine's drift (up to 2x here) hits each of them alike
        runs = [epochs("dmd", a.epochs, "32-true", procs, storage)
                for _ in range(a.repeats) for procs in a.processes for storage in a.storage_dtype]
        res = {"official": OFFICIAL, "runs": runs}
        out = Path(a.out) if a.out else RESULTS / "dmd_epochs.json"
        out.write_text(json.dumps(res, indent=2))
        if not a.out:
            plot_epochs(res, RESULTS / "dmd_epochs.png")
    if a.what in ("accuracy", "all"):
        procs = a.processes[0] if a.what == "accuracy" else 1
        models = a.models or (list(MODELS) if procs == 1 else ["dmd"])
        storage = a.storage_dtype[0]
        rows = accuracy(a.seeds, a.max_epochs, a.precision, models, procs, storage)
        suffix = ("" if procs == 1 else f"_ddp{procs}") + ("" if storage == "float32" else f"_{storage}")
        (RESULTS / f"dmd_accuracy_e{a.max_epochs}{suffix}.json").write_text(json.dumps(rows, indent=2))
        print(_table(rows))


if __name__ == "__main__":
    main()
