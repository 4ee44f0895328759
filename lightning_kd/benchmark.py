"""``lightning-kd benchmark``: one protocol across methods, data sets and seeds.

A suite file (``configs/benchmark/<suite>.yaml``)::

    name: sentiment
    seeds: [1111, 1112, 1113]
    args: [--trainer.max_epochs, "3"]            # every trial (optional)
    datasets:
      mosi_generated:
        args: [--data.init_args.path, data/bench/mosi/aligned_50.pkl]
        prepare: [generate, mmsa, --out, data/bench/mosi/aligned_50.pkl]   # `lightning-kd` arguments, run once
        creates: data/bench/mosi/aligned_50.pkl                           # ... unless this path exists
    methods:
      fusion: {configs: [configs/fusion/synthetic.yaml]}                  # one config: `fit`
      corrkd: {configs: [configs/corrkd/synthetic_teacher.yaml, configs/corrkd/synthetic_student.yaml]}  # a pipeline
    conditions:                                   # evaluation conditions of the trained model (optional)
      complete: []                                # the fit's own test (test_after_fit)
      missing_0.5: [--data.init_args.eval_missing, "{rate: 0.5}"]   # `lightning-kd test` of the best checkpoint
    metrics: [Has0_acc_2, MAE]                    # the columns of results.md (results.csv holds every metric)

A **trial** is (method, data set, seed), numbered in that order (``--list``); it runs in its own process through the
same CLI (``python -m lightning_kd.cli fit|pipeline ... --seed_everything SEED``), its run directories kept under
``OUT/runs/<method>/<dataset>/s<seed>/``, then each condition other than ``complete`` tests the best checkpoint of
the last stage under that condition. ``trial.json`` marks a finished trial: a re-run skips it (resume after a crash
or a kill; a pipeline trial also resumes stage by stage). Results: ``OUT/results.csv`` (one row per trial and
condition, every test metric), ``OUT/results.md`` (mean +- std over seeds per method x data set x condition) and
``OUT/results.png``.

Scale-out uses existing engines, not a scheduler of ours: ``--trial N`` runs one trial, so a wandb sweep (``--sweep``
writes ``OUT/sweep.yaml``: a grid over the trial ids whose command is this one; ``wandb agent`` on any number of
machines runs them) or a SLURM job array (``--slurm`` writes ``OUT/benchmark.sbatch``, ``--array=0-(N-1)``) fans the
suite out; ``--collect`` then writes the results from what the trials left.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lightning_kd.checkpoint import ConfigError
from lightning_kd.io import atomic_write_text

__all__ = ["Suite", "Trial", "collect", "load_suite", "main", "run_trial", "trials"]

TRIAL_FILE = "trial.json"
COMPLETE = "complete"


@dataclass(frozen=True)
class Trial:
    """One (method, data set, seed) of a suite; ``index`` is its trial id."""

    index: int
    method: str
    dataset: str
    seed: int

    @property
    def name(self) -> str:
        return f"{self.method}/{self.dataset}/s{self.seed}"


@dataclass
class Suite:
    """A parsed suite file (module docstring)."""

    path: Path
    name: str
    seeds: list[int]
    methods: dict[str, dict[str, Any]]
    datasets: dict[str, dict[str, Any]]
    conditions: dict[str, list[str]] = field(default_factory=lambda: {COMPLETE: []})
    args: list[str] = field(default_factory=list)
    metrics: list[str] = field(default_factory=list)


def _strings(value: Any, where: str) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, (str, int, float)) for v in value):
        raise ConfigError(f"{where} must be a list of command-line arguments (strings), got {value!r}")
    return [str(v) for v in value]


def load_suite(path: str | Path) -> Suite:
    """Read and check a suite file; every problem is one line naming the file and the key."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"benchmark suite {path} does not exist. Fix: pass a suite file, e.g. "
                          "configs/benchmark/sentiment.yaml")
    try:
        doc = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise ConfigError(f"benchmark suite {path} is not valid YAML ({e}). Fix: correct the file.") from None
    if not isinstance(doc, dict):
        raise ConfigError(f"benchmark suite {path} must be a mapping with seeds, datasets and methods")
    missing = [k for k in ("seeds", "datasets", "methods") if not doc.get(k)]
    if missing:
        raise ConfigError(f"benchmark suite {path} lacks {', '.join(missing)}. Fix: add them (see "
                          "configs/benchmark/sentiment.yaml).")
    unknown = sorted(set(doc) - {"name", "seeds", "datasets", "methods", "conditions", "args", "metrics"})
    if unknown:
        raise ConfigError(f"benchmark suite {path} has unknown key(s) {unknown}; known: name, seeds, datasets, "
                          "methods, conditions, args, metrics")
    methods = {}
    for name, m in doc["methods"].items():
        configs = _strings((m or {}).get("configs"), f"{path}: methods.{name}.configs")
        if not configs:
            raise ConfigError(f"{path}: methods.{name} names no configs. Fix: set methods.{name}.configs to one "
                              "config (fit) or the stage configs of a pipeline.")
        args = _strings((m or {}).get("args"), f"{path}: methods.{name}.args")
        methods[str(name)] = {"configs": configs, "args": args}
    datasets = {}
    for name, d in doc["datasets"].items():
        d = d or {}
        datasets[str(name)] = {"args": _strings(d.get("args"), f"{path}: datasets.{name}.args"),
                               "prepare": _strings(d.get("prepare"), f"{path}: datasets.{name}.prepare"),
                               "creates": d.get("creates")}
    conditions = {str(k): _strings(v, f"{path}: conditions.{k}") for k, v in (doc.get("conditions") or {}).items()}
    if COMPLETE not in conditions:
        conditions = {COMPLETE: [], **conditions}
    if conditions[COMPLETE]:
        raise ConfigError(f"{path}: conditions.{COMPLETE} is the fit's own test and takes no arguments")
    seeds = doc["seeds"]
    if not isinstance(seeds, list) or not all(isinstance(s, int) for s in seeds):
        raise ConfigError(f"{path}: seeds must be a list of integers, got {seeds!r}")
    return Suite(path, str(doc.get("name") or path.stem), list(seeds), methods, datasets, conditions,
                 _strings(doc.get("args"), f"{path}: args"), _strings(doc.get("metrics"), f"{path}: metrics"))


def trials(suite: Suite) -> list[Trial]:
    """Every trial of the suite, numbered methods x data sets x seeds (in file order)."""
    out = []
    for m in suite.methods:
        for d in suite.datasets:
            for s in suite.seeds:
                out.append(Trial(len(out), m, d, s))
    return out


def _cli() -> list[str]:
    return [sys.executable, "-m", "lightning_kd.cli"]


def _prepare(suite: Suite, dataset: str, out: Path, log) -> None:
    """Run the data set's ``prepare`` command unless ``creates`` exists; one trial at a time (a lock file under
    ``OUT``), so side-by-side trials (``--workers``, sweep agents and array tasks sharing ``OUT``) never write the
    same files at once."""
    import fcntl

    d = suite.datasets[dataset]
    creates = d.get("creates")
    if not d["prepare"] or (creates and Path(creates).exists()):
        return
    out.mkdir(parents=True, exist_ok=True)
    with open(out / f".prepare-{dataset}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        if creates and Path(creates).exists():  # written by the trial that held the lock before us
            return
        proc = subprocess.run([*_cli(), *d["prepare"]], stdout=log, stderr=subprocess.STDOUT)
    if proc.returncode:
        raise ConfigError(f"preparing data set {dataset} of {suite.path} failed (`lightning-kd "
                          f"{' '.join(d['prepare'])}`, exit {proc.returncode}); see the trial log")


def _last_metrics(save_dir: Path, stage: str) -> tuple[dict[str, float], Path]:
    """The test metrics and run directory of the newest run of ``stage`` (a config stem) under ``save_dir``."""
    found = sorted((p for p in save_dir.rglob("test_metrics.json") if p.parent.parent.name == stage),
                   key=lambda p: p.stat().st_mtime)
    if not found:
        raise ConfigError(f"no test_metrics.json of stage {stage} under {save_dir}: the run did not test (set "
                          "test_after_fit: true in the config)")
    doc = json.loads(found[-1].read_text())
    return {k: float(v) for k, v in doc["metrics"].items()}, found[-1].parent


def run_trial(suite: Suite, trial: Trial, out: Path) -> dict[str, Any]:
    """Run one trial (unless its ``trial.json`` says it is done) and return that record."""
    tdir = out / "trials" / trial.name
    marker = tdir / TRIAL_FILE
    if _done(out, trial):
        return json.loads(marker.read_text())
    tdir.mkdir(parents=True, exist_ok=True)
    save_dir = out / "runs" / trial.name
    method, data = suite.methods[trial.method], suite.datasets[trial.dataset]
    shared = [*suite.args, *data["args"], *method["args"], "--seed_everything", str(trial.seed),
              "--trainer.logger.init_args.save_dir", str(save_dir), "--trainer.enable_progress_bar=false",
              "--trainer.enable_model_summary=false"]
    configs = method["configs"]
    cmd = [*_cli(), "fit", *[a for c in configs for a in ("-c", c)], *shared] if len(configs) == 1 else \
        [*_cli(), "pipeline", *configs, "--", *shared]
    t0 = time.time()
    env = {**os.environ, "WANDB_MODE": os.environ.get("WANDB_MODE", "disabled")}
    with open(tdir / "trial.log", "a") as log:
        _prepare(suite, trial.dataset, out, log)
        log.write(f"$ {' '.join(cmd)}\n")
        log.flush()
        rc = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, env=env).returncode
        if rc:
            raise ConfigError(f"trial {trial.index} ({trial.name}) failed with exit {rc}; see {tdir / 'trial.log'}")
        stage = Path(configs[-1]).stem
        metrics, run_dir = _last_metrics(save_dir, stage)
        results = {COMPLETE: metrics}
        best = json.loads((run_dir / "test_metrics.json").read_text()).get("ckpt_path")
        for cond, args in suite.conditions.items():
            if cond == COMPLETE:
                continue
            cond_dir = out / "runs" / f"{trial.name}_{cond}"
            test = [*_cli(), "test", "-c", str(run_dir / "config.yaml"), *(["--ckpt_path", best] if best else []),
                    *args, "--trainer.logger.init_args.save_dir", str(cond_dir)]
            log.write(f"$ {' '.join(test)}\n")
            log.flush()
            rc = subprocess.run(test, stdout=log, stderr=subprocess.STDOUT, env=env).returncode
            if rc:
                raise ConfigError(f"trial {trial.index} ({trial.name}), condition {cond}: test failed with exit "
                                  f"{rc}; see {tdir / 'trial.log'}")
            results[cond], _ = _last_metrics(cond_dir, stage)
    record = {"status": "done", "index": trial.index, "method": trial.method, "dataset": trial.dataset,
              "seed": trial.seed, "seconds": time.time() - t0, "run_dir": str(run_dir), "results": results}
    atomic_write_text(marker, lambda f: f.write(json.dumps(record, indent=1) + "\n"))
    return record


def _mean_std(values: Sequence[float]) -> str:
    values = [v for v in values if not math.isnan(v)]
    if not values:
        return "-"
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.4f} ± {sd:.4f}"


def collect(suite: Suite, out: Path) -> list[dict[str, Any]]:
    """Write ``results.csv``, ``results.md`` and ``results.png`` from the finished trials; return the CSV rows."""
    rows: list[dict[str, Any]] = []
    for t in trials(suite):
        marker = out / "trials" / t.name / TRIAL_FILE
        if not marker.is_file():
            continue
        rec = json.loads(marker.read_text())
        for cond, metrics in rec["results"].items():
            rows.append({"trial": t.index, "method": t.method, "dataset": t.dataset, "condition": cond,
                         "seed": t.seed, "seconds": round(rec["seconds"], 1), "run_dir": rec["run_dir"], **metrics})
    keys = ["trial", "method", "dataset", "condition", "seed", "seconds", "run_dir"]
    metric_keys = sorted({k for r in rows for k in r} - set(keys))
    out.mkdir(parents=True, exist_ok=True)

    def write_csv(f) -> None:
        w = csv.DictWriter(f, fieldnames=keys + metric_keys, restval="")
        w.writeheader()
        w.writerows(rows)

    atomic_write_text(out / "results.csv", write_csv)
    shown = [m for m in (suite.metrics or metric_keys) if m in metric_keys]
    lines = [f"# {suite.name}: {len({r['trial'] for r in rows})} of {len(trials(suite))} trials", "",
             f"Mean ± std over seeds {suite.seeds} (n = seeds finished); every value from results.csv.", ""]
    for d in suite.datasets:
        for cond in suite.conditions:
            sub = [r for r in rows if r["dataset"] == d and r["condition"] == cond]
            if not sub:
                continue
            lines += [f"## {d}, {cond}", "", "| method | n | " + " | ".join(shown) + " |",
                      "|---|---|" + "---|" * len(shown)]
            for m in suite.methods:
                rs = [r for r in sub if r["method"] == m]
                if rs:
                    cells = [_mean_std([float(r[k]) for r in rs if k in r]) for k in shown]
                    lines.append(f"| {m} | {len(rs)} | " + " | ".join(cells) + " |")
            lines.append("")
    atomic_write_text(out / "results.md", lambda f: f.write("\n".join(lines)))
    if rows and shown:
        _plot(suite, rows, shown[0], out / "results.png")
    return rows


def _plot(suite: Suite, rows: list[dict[str, Any]], metric: str, path: Path) -> None:
    from matplotlib.figure import Figure  # no pyplot: the caller's backend is left alone

    groups = [(d, c) for d in suite.datasets for c in suite.conditions
              if any(r["dataset"] == d and r["condition"] == c for r in rows)]
    fig = Figure(figsize=(4 * len(groups), 3.2))
    axes = fig.subplots(1, len(groups), squeeze=False)
    for ax, (d, c) in zip(axes[0], groups):
        names, means, sds = [], [], []
        for m in suite.methods:
            v = [float(r[metric]) for r in rows if r["dataset"] == d and r["condition"] == c and r["method"] == m
                 and metric in r]
            if v:
                names.append(m)
                means.append(statistics.mean(v))
                sds.append(statistics.stdev(v) if len(v) > 1 else 0.0)
        ax.bar(names, means, yerr=sds, capsize=4)
        ax.set_title(f"{d}, {c}")
        ax.set_ylabel(metric)
        ax.tick_params(axis="x", rotation=30)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=90)
    os.replace(tmp, path)


def write_sweep(suite: Suite, out: Path) -> Path:
    """``OUT/sweep.yaml``: a wandb grid over the trial ids whose command runs ``--trial <id>`` of this suite."""
    import yaml

    n = len(trials(suite))
    doc = {"name": f"lightning-kd benchmark {suite.name}", "method": "grid", "program": "lightning-kd",
           "parameters": {"trial": {"values": list(range(n))}},
           "command": ["${env}", "lightning-kd", "benchmark", "-c", str(suite.path), "--out", str(out), "${args}"]}
    path = out / "sweep.yaml"
    atomic_write_text(path, lambda f: f.write(yaml.safe_dump(doc, sort_keys=False)))
    return path


def write_slurm(suite: Suite, out: Path) -> Path:
    """``OUT/benchmark.sbatch``: a SLURM job array, one task per trial id."""
    n = len(trials(suite))
    text = f"""#!/usr/bin/env bash
# One array task per trial of {suite.path} ({n} trials). Submit: sbatch {out / 'benchmark.sbatch'}
# When all tasks are done: lightning-kd benchmark -c {suite.path} --out {out} --collect
#SBATCH --job-name=lkd-{suite.name}
#SBATCH --array=0-{n - 1}
#SBATCH --cpus-per-task=2
#SBATCH --output={out}/slurm-%A_%a.log
export WANDB_MODE=${{WANDB_MODE:-offline}}
lightning-kd benchmark -c {suite.path} --out {out} --trial "$SLURM_ARRAY_TASK_ID"
"""
    path = out / "benchmark.sbatch"
    atomic_write_text(path, lambda f: f.write(text))
    return path


def main(argv: list[str]) -> None:
    """``lightning-kd benchmark -c SUITE [--out DIR] [--trial N ...] [--workers K] [--list | --collect | --sweep |
    --slurm]``."""
    ap = argparse.ArgumentParser(prog="lightning-kd benchmark", description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-c", "--config", required=True, help="suite file, e.g. configs/benchmark/sentiment.yaml")
    ap.add_argument("--out", default=None, help="output folder (default runs/benchmark/<suite name>)")
    ap.add_argument("--trial", type=int, action="append", default=None,
                    help="run only these trial ids (repeatable; wandb agents and SLURM array tasks pass one)")
    ap.add_argument("--workers", type=int, default=1, help="trials run side by side on this machine (default 1)")
    what = ap.add_mutually_exclusive_group()
    what.add_argument("--list", action="store_true", help="print the trials and exit")
    what.add_argument("--collect", action="store_true", help="only write results.csv / .md / .png")
    what.add_argument("--sweep", action="store_true", help="write OUT/sweep.yaml for `wandb sweep`")
    what.add_argument("--slurm", action="store_true", help="write OUT/benchmark.sbatch (a job array)")
    a = ap.parse_args(argv)
    suite = load_suite(a.config)
    out = Path(a.out or Path("runs") / "benchmark" / suite.name)
    all_trials = trials(suite)
    if a.list:
        for t in all_trials:
            print(f"{t.index:4d}  {t.name}{'  (done)' if _done(out, t) else ''}")
        return
    if a.sweep:
        print(f"wrote {write_sweep(suite, out)}: `wandb sweep` it, then `wandb agent <id>` on each machine")
        return
    if a.slurm:
        print(f"wrote {write_slurm(suite, out)}: `sbatch` it")
        return
    if not a.collect:
        chosen = all_trials
        if a.trial is not None:
            bad = [i for i in a.trial if not 0 <= i < len(all_trials)]
            if bad:
                raise ConfigError(f"trial id(s) {bad} out of range: {suite.path} has {len(all_trials)} trials "
                                  f"(0..{len(all_trials) - 1}; --list shows them)")
            chosen = [all_trials[i] for i in a.trial]
        _run(suite, chosen, out, max(1, a.workers))
    rows = collect(suite, out)
    print(f"lightning-kd benchmark: {len(rows)} result rows -> {out / 'results.csv'}, {out / 'results.md'}")


def _done(out: Path, trial: Trial) -> bool:
    marker = out / "trials" / trial.name / TRIAL_FILE
    return marker.is_file() and json.loads(marker.read_text()).get("status") == "done"


def _run(suite: Suite, chosen: list[Trial], out: Path, workers: int) -> None:
    for t in [t for t in chosen if _done(out, t)]:
        print(f"trial {t.index} {t.name}: skipped (done)", flush=True)
    chosen = [t for t in chosen if not _done(out, t)]
    if workers == 1:
        for t in chosen:
            print(f"trial {t.index} {t.name}", flush=True)
            rec = run_trial(suite, t, out)
            print(f"trial {t.index} {t.name}: done ({rec['seconds']:.0f} s)", flush=True)
        return
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(workers) as pool:  # each trial is its own process; threads only wait on them
        for rec in pool.map(lambda t: run_trial(suite, t, out), chosen):
            print(f"trial {rec['index']} {rec['method']}/{rec['dataset']}/s{rec['seed']}: done", flush=True)
