"""VLSG scale benchmark: time and peak memory of graph construction and one training epoch vs N.

    python benchmarks/vlsg_scale.py run [--sizes 10000 50000 100000] [--threads 2] [--out FILE]
    python benchmarks/vlsg_scale.py summary [--out FILE]     # markdown table from the saved JSON

Every N runs in a fresh process (``--threads`` torch / OpenMP threads) that

1. writes a generated multi-view ``.mat`` file (N samples, views of 40/30/20 features, 5 clusters) into a
   temporary directory (timed apart, not part of the target);
2. builds the real CLI (``configs/vlsg/mat.yaml`` on that file, CPU, one epoch, ``pretrain_epochs 0`` so
   the graph-guided contrastive phase runs, no logger / checkpoint / progress bar). Instantiating the
   datamodule reads the file, standardises the views, builds the config's sparse kNN semantic graph
   (k = 10, one graph over the concatenated views, row blocks) and low-pass filters the views;
3. runs ``trainer.fit`` for that one epoch (what ``lightning-kd fit`` runs): the training batches, then the
   validation pass that clusters all N samples (``--cluster_on``, default the configs' ``latent``: k-means
   with ``--kmeans_init`` restarts, default the configs' 10, on the (N, 3 x 512) latent codes).

Stages are separated by marks (wrappers around ``MultiViewDataModule.read`` / ``SemanticGraph.build`` and
a callback): each records its wall time and the peak RSS during the stage (``VmHWM`` of /proc/self/status,
reset at every mark by writing 5 to /proc/self/clear_refs; that also resets ``ru_maxrss``, so the process
peak is the max over the stages). ``--precision auto`` runs the smallest N in fp32 and bf16-mixed and
uses the faster for all sizes. Target at N = 100k on 2 cores: graph + epoch < 10 min, peak RSS < 4 GB,
growing linearly with N (a dense N x N float32 graph is 40 GB at N = 100k). The lead's numbers go to
benchmarks/results/vlsg_scale.json (written after every size).
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "results" / "vlsg_scale.json"
CONFIG = ROOT / "configs" / "vlsg" / "mat.yaml"
DIMS, CLUSTERS = (40, 30, 20), 5
PRECISIONS = ("32-true", "bf16-mixed")


def _proc_status() -> dict[str, float]:
    """VmRSS and VmHWM of this process in MB."""
    out = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(("VmRSS:", "VmHWM:")):
            out[line[:5]] = int(line.split()[1]) / 1024
    return out


def _reset_peak() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")  # VmHWM (and ru_maxrss) := current RSS
        return True
    except OSError:
        return False


class Marks:
    """Splits the run into consecutive stages: ``mark(name)`` closes the stage that began at the last mark."""

    def __init__(self) -> None:
        self.stages: dict[str, dict[str, float]] = {}
        self.peak_reset = _reset_peak()
        self.t = time.perf_counter()

    def __call__(self, name: str) -> None:
        now, st = time.perf_counter(), _proc_status()
        s = self.stages.setdefault(name, {"s": 0.0, "peak_mb": 0.0})
        s["s"] = round(s["s"] + now - self.t, 3)
        s["peak_mb"], s["rss_mb"] = round(max(s["peak_mb"], st["VmHWM"]), 1), round(st["VmRSS"], 1)
        self.peak_reset = _reset_peak() and self.peak_reset
        self.t = time.perf_counter()


def _wrap(cls: type, method: str, mark: Marks, before: str, after: str) -> None:
    """Mark ``before`` when ``cls.method`` starts and ``after`` when it returns."""
    orig = getattr(cls, method)

    @functools.wraps(orig)
    def wrapper(self, *args, **kwargs):
        mark(before)
        out = orig(self, *args, **kwargs)
        mark(after)
        return out

    setattr(cls, method, wrapper)


# ---------------------------------------------------------------------------------------------- child
def job(n: int, a: argparse.Namespace) -> dict:
    """One size in this process; returns the result row."""
    mark = Marks()
    import lightning.pytorch as pl
    import torch

    from lightning_kd.cli import build_cli
    from lightning_kd.data.formats.multiview import MultiViewDataModule
    from lightning_kd.data.generate.multiview import write_multiview_mat
    from lightning_kd.data.semantic_graph import SemanticGraph

    torch.set_num_threads(a.threads)
    mark("imports")
    tmp = tempfile.TemporaryDirectory(prefix="vlsg_scale_")
    path = write_multiview_mat(Path(tmp.name) / f"multiview_{n}.mat", n=n, dims=DIMS, clusters=CLUSTERS, seed=0)
    mark("generate")

    class StageMarks(pl.Callback):
        def on_train_epoch_start(self, trainer, module):
            mark("fit_setup")

        def on_validation_start(self, trainer, module):  # the training batches are done
            mark("train")

        def on_validation_epoch_end(self, trainer, module):  # runs before the module's hook, i.e. k-means
            mark("embed")

        def on_validation_end(self, trainer, module):
            mark("kmeans")

    _wrap(MultiViewDataModule, "read", mark, "cli_parse", "read")
    _wrap(SemanticGraph, "build", mark, "standardize", "graph")
    args = ["-c", str(CONFIG), "--data.init_args.path", str(path),
            "--data.init_args.batch_size", str(a.batch_size),
            "--data.init_args.semantic_graph.k", "10",
            "--trainer.accelerator", "cpu", "--trainer.precision", a.precision,
            "--trainer.max_epochs", "1", "--trainer.check_val_every_n_epoch", "1",
            "--trainer.num_sanity_val_steps", "0",
            "--trainer.logger", "false", "--trainer.callbacks", "[]", "--trainer.enable_checkpointing", "false",
            "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false",
            "--trainer.default_root_dir", tmp.name, "--test_after_fit", "false",
            "--model.init_args.pretrain_epochs", "0", "--model.init_args.kmeans_init", str(a.kmeans_init),
            "--model.init_args.cluster_on", a.cluster_on]
    if a.eval_batch_size:
        args += ["--data.init_args.eval_batch_size", str(a.eval_batch_size)]
    sys.argv = sys.argv[:1]  # the CLI reads `args` only
    cli = build_cli(args, run=False)  # instantiation reads the file and builds the graphs (feature_dims link)
    mark("model_init")
    cli.trainer.callbacks.append(StageMarks())
    cli.trainer.fit(cli.model, datamodule=cli.datamodule)  # what the `fit` subcommand runs
    mark("fit_end")
    tmp.cleanup()

    st = mark.stages
    work = [k for k in st if k not in ("imports", "generate")]
    return {
        "N": n, "precision": a.precision, "batch_size": a.batch_size,
        "eval_batch_size": a.eval_batch_size or a.batch_size, "kmeans_init": a.kmeans_init, "cluster_on": a.cluster_on,
        "threads": torch.get_num_threads(),
        "generate_s": st["generate"]["s"], "read_s": st["read"]["s"] + st["standardize"]["s"],
        "graph_s": st["graph"]["s"], "graph_peak_rss_mb": st["graph"]["peak_mb"],
        "epoch_train_s": st["train"]["s"], "train_peak_rss_mb": st["train"]["peak_mb"],
        "epoch_embed_s": st["embed"]["s"], "epoch_kmeans_s": st["kmeans"]["s"],
        "epoch_val_s": round(st["embed"]["s"] + st["kmeans"]["s"], 3),
        "val_peak_rss_mb": max(st["embed"]["peak_mb"], st["kmeans"]["peak_mb"]),
        "total_s": round(sum(st[k]["s"] for k in work), 3),  # everything after generating the file
        "peak_rss_mb": max(st[k]["peak_mb"] for k in work), "import_rss_mb": st["imports"]["rss_mb"],
        "dense_graph_gb": n * n * 4 / 1e9, "peak_reset": mark.peak_reset,
        "loadavg": Path("/proc/loadavg").read_text().split()[:3], "stages": st,
    }


# ---------------------------------------------------------------------------------------------- parent
def _machine(threads: int) -> dict:
    import lightning
    import torch

    cpuinfo = Path("/proc/cpuinfo").read_text()
    model = next((ln.split(":", 1)[1].strip() for ln in cpuinfo.splitlines() if ln.startswith("model name")), "?")
    flags = next((ln.split(":", 1)[1].split() for ln in cpuinfo.splitlines() if ln.startswith("flags")), [])
    mem = next(ln.split()[1] for ln in Path("/proc/meminfo").read_text().splitlines() if ln.startswith("MemTotal"))
    return {"cores": os.cpu_count(), "usable_cores": len(os.sched_getaffinity(0)), "cpu": model,
            "bf16_flags": [f for f in ("avx512_bf16", "amx_bf16") if f in flags], "mem_gb": round(int(mem) / 2**20, 1),
            "torch": torch.__version__, "lightning": lightning.__version__, "python": platform.python_version(),
            "threads": threads}


def _child(n: int, precision: str, a: argparse.Namespace) -> dict:
    cmd = [sys.executable, __file__, "_job", "--n", str(n), "--precision", precision, "--threads", str(a.threads),
           "--batch_size", str(a.batch_size), "--kmeans_init", str(a.kmeans_init), "--cluster_on", a.cluster_on]
    if a.eval_batch_size:
        cmd += ["--eval_batch_size", str(a.eval_batch_size)]
    env = {**os.environ, "OMP_NUM_THREADS": str(a.threads), "MKL_NUM_THREADS": str(a.threads),
           "OPENBLAS_NUM_THREADS": str(a.threads), "WANDB_MODE": "disabled"}
    proc = subprocess.run(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"N={n} {precision}: child failed with exit code {proc.returncode}")
    row = json.loads([ln for ln in proc.stdout.splitlines() if ln.startswith("{")][-1])
    print(f"N={n:>7} {precision:10s} graph {row['graph_s']:7.1f} s  train {row['epoch_train_s']:7.1f} s  "
          f"val {row['epoch_val_s']:6.1f} s  total {row['total_s']:7.1f} s  peak {row['peak_rss_mb']:7.0f} MB",
          flush=True)
    return row


def run(a: argparse.Namespace) -> None:
    sizes = sorted(a.sizes)
    out = {"machine": _machine(a.threads), "results": [], "precision_comparison": [],
           "dense_graph_gb": {str(n): n * n * 4 / 1e9 for n in sizes}}
    a.out.parent.mkdir(parents=True, exist_ok=True)
    save = lambda: a.out.write_text(json.dumps(out, indent=2))  # noqa: E731 - after every size
    precision = a.precision
    if precision == "auto":  # both at the smallest N, keep the faster epoch
        rows = [_child(sizes[0], p, a) for p in PRECISIONS]
        out["precision_comparison"] = rows
        best = min(rows, key=lambda r: r["epoch_train_s"] + r["epoch_val_s"])
        precision, out["results"] = best["precision"], [best]
        print(f"precision: {precision} (faster epoch at N={sizes[0]})", flush=True)
        save()
        sizes = sizes[1:]
    out["precision"] = precision
    for n in sizes:
        out["results"].append(_child(n, precision, a))
        save()
    save()
    summary(a.out)


def summary(path: Path) -> None:
    d = json.loads(Path(path).read_text())
    m = d["machine"]
    print(f"{m['cpu']}, {m['usable_cores']} cores, {m['threads']} threads, torch {m['torch']}\n")
    print("| N | precision | graph s | graph peak MB | train epoch s | val s (embed + k-means) | total s "
          "| peak RSS MB | peak / N KB | (peak − imports) / N KB | Δpeak / ΔN KB | dense N×N fp32 GB |")
    print("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    prev = None
    for r in sorted(d["results"], key=lambda r: r["N"]):
        slope = f"{(r['peak_rss_mb'] - prev['peak_rss_mb']) * 1024 / (r['N'] - prev['N']):.2f}" if prev else "–"
        print(f"| {r['N']:,} | {r['precision']} | {r['graph_s']:.1f} | {r['graph_peak_rss_mb']:.0f} "
              f"| {r['epoch_train_s']:.1f} "
              f"| {r['epoch_val_s']:.1f} ({r['epoch_embed_s']:.1f} + {r['epoch_kmeans_s']:.1f}) "
              f"| {r['total_s']:.1f} | {r['peak_rss_mb']:.0f} | {r['peak_rss_mb'] * 1024 / r['N']:.2f} "
              f"| {(r['peak_rss_mb'] - r['import_rss_mb']) * 1024 / r['N']:.2f} | {slope} "
              f"| {r['dense_graph_gb']:.2f} |")
        prev = r
    r0 = d["results"][0]
    print(f"\nbatch size {r0['batch_size']} (eval {r0['eval_batch_size']}), k-means n_init {r0['kmeans_init']}, "
          f"k = 10, one epoch incl. validation; total = everything after generating the file "
          f"(CLI, read, graph, train, val); imports (torch, Lightning) take {r0['import_rss_mb']:.0f} MB; generate s: "
          + ", ".join(f"{r['N']:,}: {r['generate_s']:.1f}" for r in d["results"]))
    for r in d.get("precision_comparison", []):
        print(f"precision check at N={r['N']:,}: {r['precision']}: train {r['epoch_train_s']:.1f} s, "
              f"val {r['epoch_val_s']:.1f} s, peak {r['peak_rss_mb']:.0f} MB")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("what", choices=["run", "summary", "_job"])
    p.add_argument("--sizes", type=int, nargs="+", default=[10_000, 50_000, 100_000])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", type=Path, default=OUT)
    p.add_argument("--precision", default="auto", choices=["auto", *PRECISIONS])
    p.add_argument("--batch_size", type=int, default=512)
    p.add_argument("--eval_batch_size", type=int, default=None, help="validation batch size (default: batch_size)")
    p.add_argument("--kmeans_init", type=int, default=10, help="k-means restarts (the configs use 10)")
    p.add_argument("--cluster_on", default="latent", choices=["labels", "features", "latent"])
    p.add_argument("--n", type=int, help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.what == "_job":
        print(json.dumps(job(a.n, a)), flush=True)
    elif a.what == "run":
        run(a)
    else:
        summary(a.out)


if __name__ == "__main__":
    main()
