"""Missing-modality robustness of four models on generated MOSI-shaped data (issue: CorrKD figures).

    python benchmarks/corrkd_bench.py run [--seeds 1111 1112 1113] [--workers 2]
    python benchmarks/corrkd_bench.py summary          # table + figure from the saved CSVs

Models, each trained with its own published protocol under a capped epoch budget, then evaluated by
``lightning-kd robustness`` on the test split over p in {0.0, ..., 1.0} x 7 modality settings:

(a) ``fusion``          late-fusion baseline, complete training data (DMD protocol, ``--fusion_epochs``);
(b) ``fusion_missing``  the same baseline trained with the missing-data augmentation the CorrKD student sees;
(c) ``dmd``             DMD, complete training data (``--dmd_epochs``);
(d) ``corrkd``          CorrKD teacher (complete data) then student (missing data), ``--corrkd_epochs`` each;
(e) ``corrkd_net_missing`` ablation: the CorrKD network trained like the student (same augmentation, epochs)
                        but with cross-entropy only, no teacher: what the distillation adds;
(f) ``corrkd_compact``  CorrKD teacher then the compact student (configs/corrkd/synthetic_student_compact.yaml:
                        one Transformer layer, 2 heads; the deployable >= 5000 samples/s student);
(g) ``corrkd_compact_net_missing`` the compact network trained like (e): what distillation adds to it.

Every job runs in its own process with one thread (``--workers`` jobs at a time). Results:
``benchmarks/results/corrkd/<model>_s<seed>.csv`` (the robustness CSV of that run),
``benchmarks/results/corrkd_robustness.json`` and ``benchmarks/results/corrkd_robustness.png``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import time
from pathlib import Path

from parallel import run_jobs

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
CSV_DIR = RESULTS / "corrkd"
WORK = ROOT / "runs" / "bench_corrkd"
MODELS = ("fusion", "fusion_missing", "dmd", "corrkd", "corrkd_net_missing", "corrkd_compact",
          "corrkd_compact_net_missing")
LABELS = {"fusion": "(a) fusion, complete data", "fusion_missing": "(b) fusion + missing-data augmentation",
          "dmd": "(c) DMD", "corrkd": "(d) CorrKD student",
          "corrkd_net_missing": "(e) CorrKD net + augmentation, no distillation",
          "corrkd_compact": "(f) CorrKD compact student",
          "corrkd_compact_net_missing": "(g) compact net + augmentation, no distillation"}
# the student's augmentation (configs/corrkd/synthetic_student.yaml), reused for baseline (b)
AUGMENT = ["--data.init_args.train_missing.min_rate", "0.0", "--data.init_args.train_missing.max_rate", "1.0",
           "--data.init_args.train_missing.modality_prob", "0.5"]
MODEL_ORDER = ("dmd", "corrkd", "corrkd_compact", "corrkd_net_missing", "corrkd_compact_net_missing", "fusion_missing",
               "fusion")  # longest first


def _compact_net_args() -> list[str]:
    """The compact student's architecture (synthetic_student_compact.yaml's net block) as overrides, for (g)."""
    import yaml

    net = yaml.safe_load((ROOT / "configs/corrkd/synthetic_student_compact.yaml").read_text())["model.init_args.net"]
    return [arg for key, value in net.items() for arg in (f"--model.init_args.net.{key}", str(value))]
QUIET = ["--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false",
         "--test_after_fit", "false", "--data.init_args.eval_batch_size", "128"]


def _fit_args(model: str, seed: int, epochs: dict[str, int]) -> list[list[str]]:
    """The fit stages of one job (CorrKD has two)."""
    log = lambda name: ["--trainer.logger.init_args.save_dir", str(WORK), "--trainer.logger.init_args.name",  # noqa: E731
                        f"{name}/s{seed}"]
    common = ["--seed_everything", str(seed), *QUIET]
    if model in ("fusion", "fusion_missing"):
        extra = AUGMENT if model == "fusion_missing" else []
        return [["-c", "configs/fusion/synthetic.yaml", *common, *extra,
                 "--trainer.max_epochs", str(epochs["fusion"]), *log(model)]]
    if model in ("corrkd_net_missing", "corrkd_compact_net_missing"):
        net = _compact_net_args() if model == "corrkd_compact_net_missing" else []
        return [["-c", "configs/corrkd/synthetic_teacher.yaml", *common, *AUGMENT, *net, "--trainer.max_epochs",
                 str(epochs["corrkd"]), *log(model)]]
    if model == "dmd":
        return [["-c", "configs/dmd/synthetic.yaml", *common, "--trainer.max_epochs", str(epochs["dmd"]), *log(model)]]
    if model == "corrkd_compact":
        stages = (("synthetic_teacher", "corrkd_compact_teacher"), ("synthetic_student_compact", "corrkd_compact_student"))
    else:
        stages = (("synthetic_teacher", "corrkd_teacher"), ("synthetic_student", "corrkd_student"))
    return [["-c", f"configs/corrkd/{config}.yaml", *common, "--trainer.max_epochs", str(epochs["corrkd"]), *log(name)]
            for config, name in stages]


def job(model: str, seed: int, epochs: dict[str, int]) -> None:
    """Train one model (all its stages) and evaluate the best checkpoint over the robustness grid."""
    import torch

    from lightning_kd.callbacks.run_dir import run_dir
    from lightning_kd.cli import TEACHER_OPTION, build_cli

    torch.set_num_threads(1)
    best = None
    t0 = time.perf_counter()
    for stage in _fit_args(model, seed, epochs):
        chain = [TEACHER_OPTION, best] if best else []
        cli = build_cli(["fit", *stage, *chain])
        best = cli.trainer.checkpoint_callback.best_model_path
        cfg = run_dir(cli.trainer) / "config.yaml"
    fit_s = time.perf_counter() - t0
    rob = build_cli(["robustness", "-c", str(cfg), "--ckpt_path", best, "--trainer.enable_progress_bar", "false"])
    CSV_DIR.mkdir(parents=True, exist_ok=True)
    shutil.copy(run_dir(rob.trainer) / "robustness.csv", CSV_DIR / f"{model}_s{seed}.csv")
    meta = {"model": model, "seed": seed, "best_ckpt": best, "fit_seconds": fit_s,
            "robustness_seconds": time.perf_counter() - t0 - fit_s, "epochs": epochs}
    (CSV_DIR / f"{model}_s{seed}.json").write_text(json.dumps(meta, indent=2))


def run(seeds: list[int], workers: int, epochs: dict[str, int], models: list[str]) -> None:
    os.chdir(ROOT)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "WANDB_MODE": "disabled"}
    # longest jobs first so the two workers finish together
    order = sorted(((m, s) for s in seeds for m in models), key=lambda j: MODEL_ORDER.index(j[0]))
    run_jobs([(f"{m} seed {s}", [sys.executable, __file__, "job", m, str(s), "--epochs", json.dumps(epochs)],
               WORK / f"{m}_s{s}.log") for m, s in order], env, workers)
    summary(seeds, models)


def _f1_key(row: dict) -> str:
    from lightning_kd.robustness import headline

    return headline(list(row))


def summary(seeds: list[int], models: list[str]) -> dict:
    """Mean +- std over seeds of weighted F1 under the condition groups; figure of F1 vs p."""
    from lightning_kd.robustness import read_robustness_csv

    groups = {
        "complete (lav, p=0)": lambda r: r["setting"] == "lav" and r["rate"] == 0.0,
        "missing conditions (all 76 but complete)": lambda r: r["setting"] != "avg" and not (r["setting"] == "lav" and r["rate"] == 0.0),
        "inter-modality Avg (6 subsets, p=0)": lambda r: r["setting"] == "avg" and r["rate"] == 0.0,
        "intra-modality (lav, p=0.1..1.0)": lambda r: r["setting"] == "lav" and r["rate"] > 0.0,
    }
    out: dict = {"groups": {}, "per_rate": {}, "per_setting_p0": {}}
    for m in models:
        per_seed = []
        for s in seeds:
            f = CSV_DIR / f"{m}_s{s}.csv"
            if f.exists():
                per_seed.append(read_robustness_csv(f))
        if not per_seed:
            continue
        key = _f1_key(per_seed[0][0])
        out["f1_column"] = key
        out["groups"][m] = {}
        for g, sel in groups.items():
            vals = [statistics.fmean(r[key] for r in rows if sel(r)) for rows in per_seed]
            out["groups"][m][g] = {"mean": statistics.fmean(vals), "std": statistics.stdev(vals) if len(vals) > 1 else 0.0,
                                   "seeds": vals}
        rates = sorted({r["rate"] for r in per_seed[0]})
        out["per_rate"][m] = {f"{p:.1f}": statistics.fmean(
            statistics.fmean(r[key] for r in rows if r["rate"] == p and r["setting"] != "avg") for rows in per_seed)
            for p in rates}
        out["per_setting_p0"][m] = {st: statistics.fmean(
            next(r[key] for r in rows if r["setting"] == st and r["rate"] == 0.0) for rows in per_seed)
            for st in ("l", "a", "v", "la", "lv", "av", "avg", "lav")}
        out.setdefault("n_seeds", {})[m] = len(per_seed)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "corrkd_robustness.json").write_text(json.dumps(out, indent=2))
    _plot(out)
    print(markdown_table(out))
    return out


def markdown_table(out: dict) -> str:
    """The README table: weighted F1 mean +- std over seeds per condition group, then per setting at p = 0."""
    models = list(out["groups"])
    head = "| condition group | " + " | ".join(LABELS[m] for m in models) + " |"
    lines = [head, "|---" * (len(models) + 1) + "|"]
    for g in next(iter(out["groups"].values())):
        vals = [out["groups"][m][g] for m in models]
        best = max(v["mean"] for v in vals)
        cells = [("**%.4f ± %.4f**" if v["mean"] == best else "%.4f ± %.4f") % (v["mean"], v["std"]) for v in vals]
        lines.append(f"| {g} | " + " | ".join(cells) + " |")
    lines += ["", "| p = 0, available | " + " | ".join(LABELS[m] for m in models) + " |", "|---" * (len(models) + 1) + "|"]
    for st in ("l", "a", "v", "la", "lv", "av", "avg", "lav"):
        vals = [out["per_setting_p0"][m][st] for m in models]
        cells = [("**%.4f**" if v == max(vals) else "%.4f") % v for v in vals]
        name = "Avg (6 incomplete)" if st == "avg" else "{" + ",".join(st) + "}"
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _plot(out: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    for m, curve in out["per_rate"].items():
        ps = sorted(curve, key=float)
        ax.plot([float(p) for p in ps], [curve[p] for p in ps], marker="o", markersize=3, label=LABELS[m])
    ax.set_xlabel("frame-drop rate p")
    ax.set_ylabel("weighted F1, mean of 7 modality settings")
    ax.set_title("Generated MOSI-shaped data, test split, mean of seeds")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(RESULTS / "corrkd_robustness.png", dpi=110)
    plt.close(fig)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("what", choices=["run", "summary", "job"])
    p.add_argument("model", nargs="?")
    p.add_argument("seed", nargs="?", type=int)
    p.add_argument("--seeds", nargs="+", type=int, default=[1111, 1112, 1113])
    p.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--fusion_epochs", type=int, default=12)
    p.add_argument("--dmd_epochs", type=int, default=8)
    p.add_argument("--corrkd_epochs", type=int, default=20)
    p.add_argument("--epochs", type=json.loads, default=None, help=argparse.SUPPRESS)
    a = p.parse_args()
    epochs = a.epochs or {"fusion": a.fusion_epochs, "dmd": a.dmd_epochs, "corrkd": a.corrkd_epochs}
    if a.what == "job":
        os.chdir(ROOT)
        job(a.model, a.seed, epochs)
    elif a.what == "run":
        run(a.seeds, a.workers, epochs, a.models)
    else:
        summary(a.seeds, a.models)


if __name__ == "__main__":
    main()
