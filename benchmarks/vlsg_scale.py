"""VLSG scale benchmark: time and peak memory of graph construction and one training epoch vs N.

    python benchmarks/vlsg_scale.py run [--sizes 10000 50000 100000] [--threads 2] [--out FILE]
    python benchmarks/vlsg_scale.py summary [--out FILE]     # markdown table from the saved JSON
    python benchmarks/vlsg_scale.py plot [--out FILE]        # peak RSS and times vs N, FILE with .png

    # the 1M setting of issue 12 (4 views of 64 features, approximate graph, k-means fitted on a subsample):
    python benchmarks/vlsg_scale.py run --sizes 100000 300000 1000000 --dims 64 64 64 64 --search ivf \
        --kmeans_fit_size 100000 --embedding_dtype float16 --precision bf16-mixed --eval_batch_size 8192 \
        --out benchmarks/results/vlsg_scale_1m.json

Every N runs in a fresh process (``--threads`` torch / OpenMP threads) that

1. reads a generated multi-view ``.mat`` file (N samples, views of ``--dims`` features, default 40/30/20,
   5 clusters) that the parent wrote beforehand into ``--data_dir`` (default: a temporary directory under /tmp;
   timed apart, not part of the target);
2. builds the real CLI (``configs/vlsg/mat.yaml`` on that file, CPU, one epoch, ``pretrain_epochs 0`` so
   the graph-guided contrastive phase runs, no logger / checkpoint / progress bar). Instantiating the
   datamodule reads the file, standardises the views, builds the config's sparse kNN semantic graph
   (k = 10, one graph over the concatenated views; ``--search exact`` in row blocks, or ``ivf`` / ``hnsw``:
   approximate with faiss) and low-pass filters the views;
3. runs ``trainer.fit`` for that one epoch (what ``lightning-kd fit`` runs): the training batches, then the
   validation pass that clusters all N samples (``--cluster_on``, default the configs' ``latent``: k-means
   with ``--kmeans_init`` restarts, default the configs' 10, on the (N, V x 512) latent codes; fitted on all
   samples, or on ``--kmeans_fit_size`` of them and then every sample assigned to its nearest centre);
4. after the measured run (outside every stage): recall@10 of the graph's neighbour table against exact search on
   ``--recall_sample`` random rows, and the fraction of neighbours sharing the row's label (approximate and exact).

Stages are separated by marks (wrappers around ``MultiViewDataModule.read`` / ``SemanticGraph.build`` and
a callback): each records its wall time and the peak RSS during the stage (``VmHWM`` of /proc/self/status,
reset at every mark by writing 5 to /proc/self/clear_refs; that also resets ``ru_maxrss``, so the process
peak is the max over the stages). ``--precision auto`` runs the smallest N in fp32 and bf16-mixed and
uses the faster for all sizes. Target at N = 100k on 2 cores: graph + epoch < 10 min, peak RSS < 4 GB,
growing linearly with N (a dense N x N float32 graph is 40 GB at N = 100k). The lead's numbers go to
benchmarks/results/vlsg_scale.json (written after every size). Target at N = 1M (4 views of 64 features,
``--search ivf``): graph + one epoch + clustering < 30 min, peak RSS < 12 GB, linear in N:
benchmarks/results/vlsg_scale_1m.json and .png. Every row records the load average when its child started
(``loadavg_start``; 2 cores shared with other jobs show as a load above the threads used).
"""

from __future__ import annotations

import argparse
import dataclasses
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


def _wrap(cls: type, method: str, mark: Marks, before: str, after: str) -> functools.partial:
    """Mark ``before`` when ``cls.method`` starts and ``after`` when it returns; returns the undo."""
    orig = getattr(cls, method)

    @functools.wraps(orig)
    def wrapper(self, *args, **kwargs):
        mark(before)
        out = orig(self, *args, **kwargs)
        mark(after)
        return out

    setattr(cls, method, wrapper)
    return functools.partial(setattr, cls, method, orig)


def _data_file(n: int, a: argparse.Namespace) -> tuple[Path, float]:
    """The generated ``.mat`` file of ``n`` samples in ``a.data_dir`` (written unless there) and the seconds spent."""
    from lightning_kd.data.generate.multiview import write_multiview_mat

    path = Path(a.data_dir) / f"multiview_{n}_{'-'.join(map(str, a.dims))}_{a.clusters}.mat"
    t = time.perf_counter()
    if not path.is_file():
        write_multiview_mat(path, n=n, dims=tuple(a.dims), clusters=a.clusters, seed=0)
    return path, round(time.perf_counter() - t, 3)


# ---------------------------------------------------------------------------------------------- child
def job(n: int, a: argparse.Namespace) -> dict:
    """One size in this process; returns the result row."""
    loadavg_start = Path("/proc/loadavg").read_text().split()[:3]
    mark = Marks()
    import lightning.pytorch as pl
    import torch

    from lightning_kd.cli import build_cli
    from lightning_kd.data.formats.multiview import MultiViewDataModule
    from lightning_kd.data.semantic_graph import NEIGHBOURS_KEY, SemanticGraph

    torch.set_num_threads(a.threads)
    mark("imports")
    tmp = tempfile.TemporaryDirectory(prefix="vlsg_scale_")
    path = Path(a.path)

    class StageMarks(pl.Callback):
        def on_train_epoch_start(self, trainer, module):
            mark("fit_setup")

        def on_validation_start(self, trainer, module):  # the training batches are done
            mark("train")

        def on_validation_epoch_end(self, trainer, module):  # runs before the module's hook, i.e. k-means
            mark("embed")

        def on_validation_end(self, trainer, module):
            mark("kmeans")

    undo = [_wrap(MultiViewDataModule, "read", mark, "cli_parse", "read"),
            _wrap(SemanticGraph, "build", mark, "standardize", "graph")]
    args = ["-c", str(CONFIG), "--data.init_args.path", str(path),
            "--data.init_args.batch_size", str(a.batch_size),
            "--data.init_args.semantic_graph.k", "10",
            "--data.init_args.semantic_graph.search", a.search,
            "--trainer.accelerator", "cpu", "--trainer.precision", a.precision,
            "--trainer.max_epochs", "1", "--trainer.check_val_every_n_epoch", "1",
            "--trainer.num_sanity_val_steps", "0",
            "--trainer.logger", "false", "--trainer.callbacks", "[]", "--trainer.enable_checkpointing", "false",
            "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false",
            "--trainer.default_root_dir", tmp.name, "--test_after_fit", "false",
            "--model.init_args.pretrain_epochs", "0", "--model.init_args.kmeans_init", str(a.kmeans_init),
            "--model.init_args.cluster_on", a.cluster_on]
    for key in ("nlist", "nprobe"):
        if getattr(a, key) is not None:
            args += [f"--data.init_args.semantic_graph.ann.{key}", str(getattr(a, key))]
    if a.kmeans_fit_size:
        args += ["--model.init_args.kmeans_fit_size", str(a.kmeans_fit_size)]
    args += ["--model.init_args.embedding_dtype", a.embedding_dtype]
    if a.eval_batch_size:
        args += ["--data.init_args.eval_batch_size", str(a.eval_batch_size)]
    sys.argv = sys.argv[:1]  # the CLI reads `args` only
    cli = build_cli(args, run=False)  # instantiation reads the file and builds the graphs (feature_dims link)
    mark("model_init")
    cli.trainer.callbacks.append(StageMarks())
    cli.trainer.fit(cli.model, datamodule=cli.datamodule)  # what the `fit` subcommand runs
    mark("fit_end")
    loadavg_end = Path("/proc/loadavg").read_text().split()[:3]
    scores = {k.split("/", 1)[1]: round(float(v), 4) for k, v in cli.trainer.callback_metrics.items()
              if k.startswith("val/")}
    graph = cli.datamodule.semantic_graph
    neighbours = {}
    if a.recall_sample:  # outside every measured stage: the views again (unfiltered), exact search on a sample
        for u in undo:
            u()
        split = cli.datamodule.splits["train"]
        table, labels = split.inputs[NEIGHBOURS_KEY], split.target
        del cli
        t = time.perf_counter()
        raw = MultiViewDataModule(path=str(path)).load_splits()["train"].inputs
        views = [raw[f"view_{v}"] for v in range(len(raw))]
        neighbours = graph.recall(views, table, sample=a.recall_sample, labels=labels)
        neighbours = {k: round(v, 4) for k, v in neighbours.items()} | {"s": round(time.perf_counter() - t, 1)}
    tmp.cleanup()
    ann = None
    if graph.search != "exact":
        ann = dataclasses.asdict(graph.ann) | ({"nlist_used": graph.ann.cells(n)} if graph.search == "ivf" else {})

    st = mark.stages
    work = [k for k in st if k != "imports"]
    return {
        "N": n, "dims": list(a.dims), "clusters": a.clusters, "precision": a.precision, "batch_size": a.batch_size,
        "eval_batch_size": a.eval_batch_size or a.batch_size, "kmeans_init": a.kmeans_init, "cluster_on": a.cluster_on,
        "kmeans_fit_size": a.kmeans_fit_size, "embedding_dtype": a.embedding_dtype, "search": graph.search, "ann": ann,
        "threads": torch.get_num_threads(),
        "generate_s": a.generate_s, "read_s": st["read"]["s"] + st["standardize"]["s"],
        "graph_s": st["graph"]["s"], "graph_peak_rss_mb": st["graph"]["peak_mb"],
        "epoch_train_s": st["train"]["s"], "train_peak_rss_mb": st["train"]["peak_mb"],
        "epoch_embed_s": st["embed"]["s"], "epoch_kmeans_s": st["kmeans"]["s"],
        "epoch_val_s": round(st["embed"]["s"] + st["kmeans"]["s"], 3),
        "val_peak_rss_mb": max(st["embed"]["peak_mb"], st["kmeans"]["peak_mb"]),
        "total_s": round(sum(st[k]["s"] for k in work), 3),  # everything after generating the file
        "peak_rss_mb": max(st[k]["peak_mb"] for k in work), "import_rss_mb": st["imports"]["rss_mb"],
        "dense_graph_gb": n * n * 4 / 1e9, "peak_reset": mark.peak_reset,
        "val_scores": scores, "neighbours": neighbours,
        "loadavg_start": loadavg_start, "loadavg": loadavg_end, "stages": st,
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
    path, generate_s = _data_file(n, a)
    cmd = [sys.executable, __file__, "_job", "--n", str(n), "--precision", precision, "--threads", str(a.threads),
           "--batch_size", str(a.batch_size), "--kmeans_init", str(a.kmeans_init), "--cluster_on", a.cluster_on,
           "--path", str(path), "--generate_s", str(generate_s), "--dims", *map(str, a.dims),
           "--clusters", str(a.clusters), "--search", a.search, "--recall_sample", str(a.recall_sample),
           "--embedding_dtype", a.embedding_dtype]
    for key in ("eval_batch_size", "kmeans_fit_size", "nlist", "nprobe"):
        if getattr(a, key):
            cmd += [f"--{key}", str(getattr(a, key))]
    pythonpath = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)  # this checkout's code
    env = {**os.environ, "PYTHONPATH": pythonpath, "OMP_NUM_THREADS": str(a.threads), "MKL_NUM_THREADS": str(a.threads),
           "OPENBLAS_NUM_THREADS": str(a.threads), "WANDB_MODE": "disabled"}
    if a.omp_wait_policy != "inherit":
        env["OMP_WAIT_POLICY"] = a.omp_wait_policy.upper()
    proc = subprocess.run(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"N={n} {precision}: child failed with exit code {proc.returncode}")
    row = json.loads([ln for ln in proc.stdout.splitlines() if ln.startswith("{")][-1])
    print(f"N={n:>7} {precision:10s} graph {row['graph_s']:7.1f} s  train {row['epoch_train_s']:7.1f} s  "
          f"val {row['epoch_val_s']:6.1f} s  total {row['total_s']:7.1f} s  peak {row['peak_rss_mb']:7.0f} MB  "
          f"recall@10 {row['neighbours'].get('recall', '-')}  load {row['loadavg_start'][0]}", flush=True)
    return row


def run(a: argparse.Namespace) -> None:
    sizes = sorted(a.sizes)
    out = {"machine": _machine(a.threads), "loadavg_start": Path("/proc/loadavg").read_text().split()[:3],
           "command": " ".join(["python", "benchmarks/vlsg_scale.py", *sys.argv[1:]]),
           "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY") if a.omp_wait_policy == "inherit" else a.omp_wait_policy,
           "results": [],
           "precision_comparison": [], "dense_graph_gb": {str(n): n * n * 4 / 1e9 for n in sizes}}
    a.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = None
    if a.data_dir is None:  # generated files: outside the checkout, removed at the end
        tmp = tempfile.TemporaryDirectory(prefix="vlsg_scale_data_")
        a.data_dir = tmp.name
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
    if tmp is not None:
        tmp.cleanup()
    summary(a.out)


def summary(path: Path) -> None:
    d = json.loads(Path(path).read_text())
    m = d["machine"]
    print(f"{m['cpu']}, {m['usable_cores']} cores, {m['threads']} threads, torch {m['torch']}\n")
    print("| N | precision | graph | graph s | graph peak MB | train epoch s | val s (embed + k-means) | total s "
          "| peak RSS MB | peak / N KB | (peak − imports) / N KB | Δpeak / ΔN KB | recall@10 | dense N×N fp32 GB |")
    print("|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    prev = None
    for r in sorted(d["results"], key=lambda r: r["N"]):
        slope = f"{(r['peak_rss_mb'] - prev['peak_rss_mb']) * 1024 / (r['N'] - prev['N']):.2f}" if prev else "–"
        recall = r.get("neighbours", {}).get("recall")
        print(f"| {r['N']:,} | {r['precision']} | {r.get('search', 'exact')} | {r['graph_s']:.1f} "
              f"| {r['graph_peak_rss_mb']:.0f} | {r['epoch_train_s']:.1f} "
              f"| {r['epoch_val_s']:.1f} ({r['epoch_embed_s']:.1f} + {r['epoch_kmeans_s']:.1f}) "
              f"| {r['total_s']:.1f} | {r['peak_rss_mb']:.0f} | {r['peak_rss_mb'] * 1024 / r['N']:.2f} "
              f"| {(r['peak_rss_mb'] - r['import_rss_mb']) * 1024 / r['N']:.2f} | {slope} "
              f"| {'–' if recall is None else f'{recall:.3f}'} | {r['dense_graph_gb']:.2f} |")
        prev = r
    r0 = d["results"][0]
    fit = f" fitted on {r0['kmeans_fit_size']:,} samples" if r0.get("kmeans_fit_size") else ""
    fit += f" (embeddings kept in {r0['embedding_dtype']})" if r0.get("embedding_dtype", "float32") != "float32" else ""
    print(f"\nviews {r0.get('dims', list(DIMS))}, batch size {r0['batch_size']} (eval {r0['eval_batch_size']}), "
          f"k-means n_init {r0['kmeans_init']} on {r0['cluster_on']}{fit}, "
          f"k = 10, one epoch incl. validation; total = everything after generating the file "
          f"(CLI, read, graph, train, val); imports (torch, Lightning) take {r0['import_rss_mb']:.0f} MB; generate s: "
          + ", ".join(f"{r['N']:,}: {r['generate_s']:.1f}" for r in d["results"]))
    for r in d["results"]:
        nb = r.get("neighbours") or {}
        if nb:
            print(f"N={r['N']:,}: recall@10 {nb['recall']:.3f} on {nb['rows']:.0f} rows; neighbours sharing the row's "
                  f"label {nb['label_agreement']:.3f} (exact neighbours {nb['exact_label_agreement']:.3f}); "
                  f"val ACC {r['val_scores'].get('ACC', float('nan')):.3f}; load average at start "
                  f"{r.get('loadavg_start', ['?'])[0]}")
    for r in d.get("precision_comparison", []):
        print(f"precision check at N={r['N']:,}: {r['precision']}: train {r['epoch_train_s']:.1f} s, "
              f"val {r['epoch_val_s']:.1f} s, peak {r['peak_rss_mb']:.0f} MB")


def plot(path: Path) -> Path:
    """Peak RSS and the stage times vs N (the saved JSON) as ``path`` with suffix ``.png``."""
    from matplotlib.figure import Figure
    from matplotlib.ticker import FuncFormatter

    rows = sorted(json.loads(Path(path).read_text())["results"], key=lambda r: r["N"])
    n = [r["N"] for r in rows]
    fig = Figure(figsize=(9, 3.6), layout="constrained")
    mem, tim = fig.subplots(1, 2)
    for key, label in (("peak_rss_mb", "peak RSS (whole run)"), ("graph_peak_rss_mb", "graph stage"),
                       ("val_peak_rss_mb", "validation (embed + k-means)")):
        mem.plot(n, [r[key] / 1024 for r in rows], "o-", label=label)
    mem.plot(n, [r["import_rss_mb"] / 1024 for r in rows], ":", color="gray", label="imports (torch, Lightning)")
    mem.axhline(12e9 / 2**30, color="red", lw=0.8, ls="--", label="goal 12 GB")
    mem.set(xlabel="N samples", ylabel="GiB", title="peak resident memory")
    for key, label in (("graph_s", "graph"), ("epoch_train_s", "train epoch"), ("epoch_embed_s", "embed (validation)"),
                       ("epoch_kmeans_s", "clustering"), ("total_s", "total")):
        tim.plot(n, [r[key] / 60 for r in rows], "o-", label=label)
    tim.axhline(30, color="red", lw=0.8, ls="--", label="goal 30 min")
    tim.set(xlabel="N samples", ylabel="minutes", title=f"time ({rows[0]['threads']} threads, 2 CPU cores)")
    for ax in (mem, tim):
        ax.set_xlim(0, max(n) * 1.05)
        ax.set_ylim(bottom=0)
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v / 1e6:g}M" if v >= 1e6 else f"{v / 1e3:g}k"))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    png = Path(path).with_suffix(".png")
    fig.savefig(png, dpi=110)
    return png


def main() -> None:
    sys.path.insert(0, str(ROOT))  # measure this checkout's lightning_kd, not another installed copy
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("what", choices=["run", "summary", "plot", "_job"])
    p.add_argument("--sizes", type=int, nargs="+", default=[10_000, 50_000, 100_000])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", type=Path, default=OUT)
    p.add_argument("--precision", default="auto", choices=["auto", *PRECISIONS])
    p.add_argument("--batch_size", type=int, default=512)
    p.add_argument("--eval_batch_size", type=int, default=None, help="validation batch size (default: batch_size)")
    p.add_argument("--kmeans_init", type=int, default=10, help="k-means restarts (the configs use 10)")
    p.add_argument("--cluster_on", default="latent", choices=["labels", "features", "latent"])
    p.add_argument("--dims", type=int, nargs="+", default=list(DIMS), help="features of every view")
    p.add_argument("--clusters", type=int, default=CLUSTERS)
    p.add_argument("--search", default="exact", choices=["exact", "ivf", "hnsw"], help="semantic_graph.search")
    p.add_argument("--nlist", type=int, default=None, help="semantic_graph.ann.nlist (default 4 sqrt(N))")
    p.add_argument("--nprobe", type=int, default=None, help="semantic_graph.ann.nprobe (default the config's)")
    p.add_argument("--kmeans_fit_size", type=int, default=None, help="k-means fitted on this many samples")
    p.add_argument("--embedding_dtype", default="float32", choices=["float32", "float16"],
                   help="model.init_args.embedding_dtype: the embeddings kept for k-means")
    p.add_argument("--recall_sample", type=int, default=1000, help="rows of the recall@10 check (0: none)")
    p.add_argument("--data_dir", default=None, help="generated files (kept); default a temporary folder in /tmp")
    p.add_argument("--omp_wait_policy", default="passive", choices=["passive", "active", "inherit"],
                   help="OMP_WAIT_POLICY of the children: passive (default) keeps idle OpenMP threads (torch, "
                        "faiss, scikit-learn) from spinning, which on 2 cores shared with another job slowed a "
                        "training epoch 3-4x; inherit = the caller's environment")
    p.add_argument("--n", type=int, help=argparse.SUPPRESS)
    p.add_argument("--path", help=argparse.SUPPRESS)
    p.add_argument("--generate_s", type=float, help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.what == "_job":
        print(json.dumps(job(a.n, a)), flush=True)
    elif a.what == "run":
        run(a)
        print(f"plot: {plot(a.out)}")
    elif a.what == "plot":
        print(plot(a.out))
    else:
        summary(a.out)


if __name__ == "__main__":
    main()
