"""MT-PKDOT on the generated BioVid and Aff-Wild2 layouts: the paper's comparison (Aslam et al., 2024) re-run here.

    python benchmarks/mt_pkdot_bench.py run --datasets biovid affwild2     # the README's table (3 seeds)
    python benchmarks/mt_pkdot_bench.py summary                           # table + selection plot from saved runs
    python benchmarks/mt_pkdot_bench.py timing                            # one BioVid pipeline on 2 threads + student
                                                                          # throughput
    python benchmarks/mt_pkdot_bench.py encoders                          # the EMG stage with each biosignal encoder

``run`` generates one folder per data set (``lightning-kd generate biovid --subjects 30`` / ``generate affwild2
--train-videos 12 --valid-videos 6``, seed 0: every run seed trains on the same data) and, per seed and data set,
runs ONE ``lightning-kd pipeline`` of the stage configs below, each layered with ``configs/mt_pkdot/tiny.yaml``
(32-d embeddings) and ``--epochs``. BioVid: BL1 vs PA4, subject-disjoint fold 0 of 5 (test = held-out subjects,
validation = other held-out subjects); Aff-Wild2: test = the Validation_Set videos, validation = whole Train_Set
videos. Every stage tests its best-validation checkpoint.

| row | stage config | taught by |
|---|---|---|
| visual-only baseline | ``<ds>_baseline`` | - |
| MT-PKDOT (OT) | ``<ds>_0_visual`` .. ``<ds>_5_student`` | joint + adapted visual + adapted privileged (selected per batch) |
| PKDOT (single joint teacher, CE + 0.6 OT) | ``<ds>_pkdot`` | the fusion teacher's joint embedding |
| MT-PKDOT without OT (cosine feature KD) | ``<ds>_no_ot`` | as MT-PKDOT |
| student network, no KD | ``<ds>_no_kd`` | - (frozen visual backbone + hallucination + fusion) |
| MT-PKDOT, visual backbone fine-tuned | ``<ds>_finetune`` | as MT-PKDOT (``train_visual: true``) |
| MT-PKDOT, fusion started from the teacher's | ``<ds>_warm`` | as MT-PKDOT (``init_fusion: teacher``) |

Seeds run in parallel processes with one thread each (``--workers``). Results:
``benchmarks/results/mt_pkdot.json`` (one row per stage x seed x data set: metrics, run directory), a markdown table
(mean +- std over seeds) on stdout, ``benchmarks/results/mt_pkdot_selection.png`` (how often each teacher is selected
per epoch, MT-PKDOT student, mean over seeds) and, from ``timing``, ``benchmarks/results/mt_pkdot_timing.json``.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from parallel import run_jobs

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
WORK = ROOT / "runs" / "bench_mt_pkdot"
DATASETS = ("biovid", "affwild2")
STAGES = ("0_visual", "1_privileged", "2_fusion", "3_align", "4_hallucination", "5_student", "baseline", "pkdot",
          "no_ot", "no_kd", "finetune", "warm")
ROWS = {"baseline": "visual-only baseline", "5_student": "MT-PKDOT (OT)", "pkdot": "PKDOT (joint teacher, OT)",
        "no_ot": "MT-PKDOT without OT (cosine KD)", "no_kd": "student network, no KD",
        "finetune": "MT-PKDOT, visual backbone fine-tuned", "warm": "MT-PKDOT, fusion started from the teacher's",
        "0_visual": "teacher: visual", "1_privileged": "teacher: privileged", "2_fusion": "teacher: fusion (joint)",
        "3_align": "teacher: fusion after alignment"}
METRICS = {"biovid": ("acc", "F1"), "affwild2": ("ccc_valence", "ccc_arousal", "ccc_mean")}
QUIET = ["--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false"]


def _data(ds: str) -> Path:
    return WORK / "data" / ds


def _ensure_data(ds: str) -> None:
    if ds == "biovid" and not (_data(ds) / "samples.csv").exists():
        from lightning_kd.data.generate.biovid import write_biovid

        write_biovid(_data(ds), subjects=30, seed=0)
    if ds == "affwild2" and not (_data(ds) / "VA_Estimation_Challenge").exists():
        from lightning_kd.data.generate.affwild2 import write_affwild2

        write_affwild2(_data(ds), train_videos=12, valid_videos=6, seed=0)


def _save_dir(seed: int, ds: str) -> Path:
    return WORK / f"{ds}_s{seed}"


def _pipeline_args(seed: int, ds: str, epochs: int) -> list[str]:
    extra = ["--data.init_args.cache_dir", str(WORK / "cache" / ds)] if ds == "affwild2" else []
    return ["pipeline", *[f"configs/mt_pkdot/{ds}_{s}.yaml" for s in STAGES], "--", "-c", "configs/mt_pkdot/tiny.yaml",
            "--data.init_args.root", str(_data(ds)), "--seed_everything", str(seed), "--trainer.max_epochs",
            str(epochs), "--trainer.logger.init_args.save_dir", str(_save_dir(seed, ds)), *extra, *QUIET]


def run(seeds: list[int], datasets: list[str], epochs: int, workers: int) -> None:
    os.chdir(ROOT)
    for ds in datasets:
        _ensure_data(ds)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "WANDB_MODE": "disabled"}
    run_jobs([(f"{ds} seed {s}", [sys.executable, "-m", "lightning_kd.cli", *_pipeline_args(s, ds, epochs)],
               _save_dir(s, ds).with_suffix(".log")) for ds in datasets for s in seeds], env, workers)
    print(summary(seeds, datasets, epochs))


def _stage_entry(save_dir: Path, stage: str) -> dict | None:
    manifest = save_dir / "mt_pkdot" / "pipeline.json"
    if not manifest.exists():
        return None
    return json.loads(manifest.read_text())["stages"].get(stage)


def _selection(run_dir: Path) -> dict[int, dict[str, float]]:
    """epoch -> teacher -> share of the epoch's steps that selected it (from distillation_stats.csv)."""
    counts: dict[int, dict[str, float]] = {}
    path = run_dir / "distillation_stats.csv"
    if not path.exists():
        return {}
    for row in csv.DictReader(path.open()):
        if row["name"].startswith("selected/"):
            counts.setdefault(int(row["epoch"]), {})[row["name"].split("/", 1)[1]] = float(row["value"])
    return {e: {k: v / max(1.0, sum(c.values())) for k, v in c.items()} for e, c in counts.items()}


def summary(seeds: list[int], datasets: list[str], epochs: int | None = None) -> str:
    rows = []
    for ds in datasets:
        for s in seeds:
            for stage in STAGES:
                entry = _stage_entry(_save_dir(s, ds), f"{ds}_{stage}")
                if entry is None:
                    continue
                run_dir = Path(entry["run_dir"])
                metrics = json.loads((run_dir / "test_metrics.json").read_text())["metrics"]
                row = {"dataset": ds, "stage": stage, "seed": s, "run_dir": str(run_dir.relative_to(ROOT))}
                row.update({k: metrics[k] for k in METRICS[ds] if k in metrics})
                if stage in ("5_student", "pkdot", "no_ot", "finetune", "warm"):
                    row["selection"] = _selection(run_dir)
                rows.append(row)
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / "mt_pkdot.json"
    doc = {"seeds": seeds, "epochs": epochs, "config_layer": "configs/mt_pkdot/tiny.yaml",
           "data": {"biovid": "lightning-kd generate biovid --subjects 30 (seed 0); BL1_vs_PA4, fold 0 of 5",
                    "affwild2": "lightning-kd generate affwild2 --train-videos 12 --valid-videos 6 (seed 0)"},
           "machine": "2 CPU cores, no GPU", "rows": rows}
    if rows:
        out.write_text(json.dumps(doc, indent=1) + "\n")
        _plot_selection(rows)
    return table(rows, seeds)


def table(rows: list[dict], seeds: list[int]) -> str:
    lines = []
    for ds in DATASETS:
        names = METRICS[ds]
        sub = [r for r in rows if r["dataset"] == ds]
        if not sub:
            continue
        lines += ["", f"{ds} ({len(seeds)} seeds, mean +- std)", "",
                  "| row | " + " | ".join(names) + " | per seed (" + names[-1 if ds == "affwild2" else 0] + ") |",
                  "|---|" + "---|" * (len(names) + 1)]
        for stage in ("baseline", "5_student", "pkdot", "no_ot", "no_kd", "finetune", "warm", "0_visual", "1_privileged", "2_fusion",
                      "3_align"):
            rs = sorted((r for r in sub if r["stage"] == stage), key=lambda r: r["seed"])
            if not rs:
                continue
            cells = []
            for k in names:
                v = [r[k] for r in rs]
                sd = statistics.stdev(v) if len(v) > 1 else 0.0
                cells.append(f"{statistics.mean(v):.3f} +- {sd:.3f}")
            key = names[-1] if ds == "affwild2" else names[0]
            lines.append(f"| {ROWS[stage]} | " + " | ".join(cells) + " | "
                         + ", ".join(f"{r[key]:.3f}" for r in rs) + " |")
    return "\n".join(lines)


def _plot_selection(rows: list[dict]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(DATASETS), figsize=(10, 3.5), squeeze=False)
    for ax, ds in zip(axes[0], DATASETS):
        sel = [r["selection"] for r in rows if r["dataset"] == ds and r["stage"] == "5_student" and r["selection"]]
        if not sel:
            ax.set_visible(False)
            continue
        epochs = sorted(set().union(*[s.keys() for s in sel]))
        for name in ("joint", "adapted_visual", "adapted_privileged"):
            share = [statistics.mean(s.get(e, {}).get(name, 0.0) for s in sel) for e in epochs]
            ax.plot([e + 1 for e in epochs], share, marker="o", label=name)
        ax.set_title(f"{ds}: teacher selected (share of steps)")
        ax.set_xlabel("epoch")
        ax.set_ylim(-0.05, 1.05)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(RESULTS / "mt_pkdot_selection.png", dpi=90)
    plt.close(fig)


def timing(epochs: int) -> None:
    """One BioVid pipeline (stages 0-5) on 2 threads, and the student's inference throughput."""
    import torch

    os.chdir(ROOT)
    _ensure_data("biovid")
    env = {**os.environ, "OMP_NUM_THREADS": "2", "WANDB_MODE": "disabled"}
    save = WORK / "timing"
    cmd = [sys.executable, "-m", "lightning_kd.cli", "pipeline",
           *[f"configs/mt_pkdot/biovid_{s}.yaml" for s in STAGES[:6]], "--", "-c", "configs/mt_pkdot/tiny.yaml",
           "--data.init_args.root", str(_data("biovid")), "--trainer.max_epochs", str(epochs),
           "--trainer.logger.init_args.save_dir", str(save / f"t{time.time():.0f}"), *QUIET]
    t0 = time.perf_counter()
    subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL)
    chain = time.perf_counter() - t0
    from lightning_kd.methods.mt_pkdot import MTPKDOT

    ckpt = sorted(save.glob("t*/mt_pkdot/biovid_5_student/version_*/checkpoints/epoch*.ckpt"))[-1]
    torch.set_num_threads(2)
    model = MTPKDOT.load_from_checkpoint(ckpt, weights_only=True).eval()
    from lightning_kd.data.batch import Batch

    out = {"pipeline_seconds": chain, "stages": 6, "epochs": epochs, "threads": 2,
           "student_parameters": sum(p.numel() for p in model.parameters()), "machine": "2 CPU cores, no GPU"}
    for bs in (1, 256):
        video = torch.randn(bs, 16, 48)
        batch = Batch(inputs={"video": video}, masks={"video": torch.ones(bs, 16, dtype=torch.bool)},
                      target=torch.zeros(bs, dtype=torch.long), index=torch.arange(bs))
        with torch.no_grad():
            for _ in range(5):
                model.predictions(batch)
            n, t0 = 0, time.perf_counter()
            while time.perf_counter() - t0 < 3.0:
                model.predictions(batch)
                n += bs
        out[f"student_samples_per_s_batch{bs}"] = n / (time.perf_counter() - t0)
    (RESULTS / "mt_pkdot_timing.json").write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps(out, indent=2))


ENCODERS = {"envelope (log-RMS, MLP)": "{kind: envelope, widths: [64], hop: 128}",
            "1-D ResNet on the raw EMG": "{kind: resnet1d, widths: [16, 32, 64], blocks: 1, stem_kernel: 7}",
            "log-spectrogram + timm resnet10t": "{kind: spectrogram, backbone: resnet10t}"}


def encoders(epochs: int, seed: int = 1111) -> None:
    """The privileged (EMG) stage alone with each biosignal encoder, on the default generated BioVid folder
    (``lightning-kd generate biovid``: 10 subjects), fold 0: why the configs use the envelope encoder."""
    os.chdir(ROOT)
    data = WORK / "data" / "biovid_default"
    if not (data / "samples.csv").exists():
        from lightning_kd.data.generate.biovid import write_biovid

        write_biovid(data, seed=0)
    env = {**os.environ, "OMP_NUM_THREADS": "2", "WANDB_MODE": "disabled"}
    out = {"data": "lightning-kd generate biovid (defaults, seed 0), BL1_vs_PA4, fold 0 of 5", "epochs": epochs,
           "seed": seed, "machine": "2 CPU cores, no GPU", "rows": []}
    for name, opts in ENCODERS.items():
        save = WORK / "encoders" / f"e{len(out['rows'])}"
        cmd = [sys.executable, "-m", "lightning_kd.cli", "fit", "-c", "configs/mt_pkdot/biovid_1_privileged.yaml",
               "-c", "configs/mt_pkdot/tiny.yaml", "--data.init_args.root", str(data), "--seed_everything", str(seed),
               "--trainer.max_epochs", str(epochs), "--trainer.logger.init_args.save_dir", str(save),
               "--model.init_args.net.biosignal", opts, *QUIET]
        t0 = time.perf_counter()
        subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        (metrics_file,) = save.rglob("test_metrics.json")
        metrics = json.loads(metrics_file.read_text())["metrics"]
        out["rows"].append({"encoder": name, "options": opts, "test_acc": metrics["acc"], "test_F1": metrics["F1"],
                            "seconds": time.perf_counter() - t0})
        print(out["rows"][-1], flush=True)
    (RESULTS / "mt_pkdot_emg_encoders.json").write_text(json.dumps(out, indent=2) + "\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run")
    r.add_argument("--seeds", type=int, nargs="+", default=[1111, 1112, 1113])
    r.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=DATASETS)
    r.add_argument("--epochs", type=int, default=15)
    r.add_argument("--workers", type=int, default=2)
    s = sub.add_parser("summary")
    s.add_argument("--seeds", type=int, nargs="+", default=[1111, 1112, 1113])
    s.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=DATASETS)
    s.add_argument("--epochs", type=int, default=None)
    t = sub.add_parser("timing")
    t.add_argument("--epochs", type=int, default=15)
    e = sub.add_parser("encoders")
    e.add_argument("--epochs", type=int, default=15)
    a = ap.parse_args()
    if a.cmd == "run":
        run(a.seeds, a.datasets, a.epochs, a.workers)
    elif a.cmd == "summary":
        print(summary(a.seeds, a.datasets, a.epochs))
    elif a.cmd == "encoders":
        encoders(a.epochs)
    else:
        timing(a.epochs)


if __name__ == "__main__":
    main()
