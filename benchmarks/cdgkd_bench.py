"""CDGKD on the generated DEAP layout: the paper's comparison (Wu et al., IJCAI 2025, Table 2) re-run here.

    python benchmarks/cdgkd_bench.py run --targets arousal valence --epochs 10           # the README's first table
    python benchmarks/cdgkd_bench.py run --targets valence --epochs 10 --rating-noise 0.5  # noisy self-reports
    python benchmarks/cdgkd_bench.py summary            # table from the saved test metrics
    python benchmarks/cdgkd_bench.py timing             # one full chain on 2 threads + student throughput

``run`` generates one DEAP folder (``lightning-kd generate deap``, 12 participants, 11 with face video, seed 0:
every run seed trains on the same data) and, per seed and target, runs ONE ``lightning-kd pipeline`` of the
nine stage configs below, each layered with ``configs/cdgkd/tiny.yaml`` (small encoders) and ``--epochs``.
Subject-independent protocol, fold 0 of 5 (test = held-out participants; validation from the training
participants' trials); every stage tests its best-validation checkpoint.

| row | stage config | taught by |
|---|---|---|
| teacher (EEG + face, rebalanced) | deap_teacher | - |
| EEG only | deap_eeg | - |
| student alone (video only) | deap_video | - |
| student + plain KD | deap_student_kd | teacher (no drops) |
| TAKD chain | deap_ta2_takd, deap_student_takd | TA1 <- teacher, TA2 <- TA1, student <- TA2 (TA1 is CDGKD's) |
| CDGKD | deap_ta1, deap_ta2, deap_student | TA1 <- T; TA2 <- T, TA1; student <- T, TA1, TA2 (p = 0.5) |

Seeds run in parallel processes with one thread each (``--workers``). Results:
``benchmarks/results/cdgkd_deap.json`` (one row per stage x seed x target: acc, F1, run directory) and a markdown
table (mean +- std over seeds) on stdout (``cdgkd_deap_rn<x>.json`` with ``--rating-noise x``: a second generated
folder whose ratings are noisy self-reports of the felt emotion, ``write_deap(rating_noise=x)``); ``timing`` writes
``benchmarks/results/cdgkd_timing.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

from parallel import run_jobs

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
WORK = ROOT / "runs" / "bench_cdgkd"
DATA = WORK / "data" / "deap"
#: ``--rating-noise`` > 0: a second generated folder whose ratings are noisy self-reports of the felt emotion
RATING_NOISE = 0.0
STAGES = ("deap_teacher", "deap_eeg", "deap_video", "deap_ta1", "deap_ta2", "deap_student", "deap_student_kd",
          "deap_ta2_takd", "deap_student_takd")
ROWS = {"deap_teacher": "teacher (EEG + face, rebalanced)", "deap_eeg": "EEG only",
        "deap_video": "student alone (video only)", "deap_student_kd": "student + plain KD",
        "deap_student_takd": "student, TAKD chain", "deap_student": "student, CDGKD",
        "deap_ta1": "TA1 (CDGKD chain)", "deap_ta2": "TA2 (CDGKD chain)", "deap_ta2_takd": "TA2 (TAKD chain)"}
QUIET = ["--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false"]


def _data() -> Path:
    return DATA if not RATING_NOISE else DATA.with_name(f"deap_rn{RATING_NOISE:g}")


def _ensure_data(subjects: int = 12) -> None:
    if not (_data() / "metadata_csv").exists():
        from lightning_kd.data.generate.deap import write_deap

        write_deap(_data(), subjects=subjects, seed=0, rating_noise=RATING_NOISE)


def _save_dir(seed: int, target: str) -> Path:
    return WORK / (f"{target}_s{seed}" if not RATING_NOISE else f"rn{RATING_NOISE:g}_{target}_s{seed}")


def _pipeline_args(seed: int, target: str, epochs: int, stages: tuple[str, ...] = STAGES) -> list[str]:
    return ["pipeline", *[f"configs/cdgkd/{s}.yaml" for s in stages], "--", "-c", "configs/cdgkd/tiny.yaml",
            "--data.init_args.root", str(_data()), "--data.init_args.target", target, "--seed_everything", str(seed),
            "--trainer.max_epochs", str(epochs), "--trainer.logger.init_args.save_dir", str(_save_dir(seed, target)),
            *QUIET]


def run(seeds: list[int], targets: list[str], epochs: int, workers: int) -> None:
    os.chdir(ROOT)
    _ensure_data()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "WANDB_MODE": "disabled"}
    run_jobs([(f"{t} seed {s}", [sys.executable, "-m", "lightning_kd.cli", *_pipeline_args(s, t, epochs)],
               _save_dir(s, t).with_suffix(".log")) for t in targets for s in seeds], env, workers)
    print(summary(seeds, targets, epochs))


def _stage_result(save_dir: Path, stage: str) -> dict | None:
    """The test metrics of the stage's run recorded in the pipeline manifest (the run it would skip to)."""
    manifest = save_dir / "cdgkd" / "pipeline.json"
    if not manifest.exists():
        return None
    entry = json.loads(manifest.read_text())["stages"].get(stage)
    if not entry:
        return None
    run_dir = Path(entry["run_dir"])
    metrics = json.loads((run_dir / "test_metrics.json").read_text())["metrics"]
    return {"acc": metrics["acc"], "F1": metrics["F1"], "run_dir": str(run_dir.relative_to(ROOT))}


def summary(seeds: list[int], targets: list[str], epochs: int | None = None) -> str:
    rows = []
    for t in targets:
        for s in seeds:
            for stage in STAGES:
                r = _stage_result(_save_dir(s, t), stage)
                if r is not None:
                    rows.append({"stage": stage, "target": t, "seed": s, **r})
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = {"protocol": "generated DEAP layout (12 participants, 11 with face video, data seed 0, rating noise "
                       f"{RATING_NOISE:g}), subject-independent fold 0 of 5, configs/cdgkd/<stage>.yaml + "
                       "configs/cdgkd/tiny.yaml", "rating_noise": RATING_NOISE, "epochs": epochs, "seeds": seeds,
           "rows": rows}
    name = "cdgkd_deap.json" if not RATING_NOISE else f"cdgkd_deap_rn{RATING_NOISE:g}.json"
    (RESULTS / name).write_text(json.dumps(out, indent=2) + "\n")
    return table(rows, targets)


def table(rows: list[dict], targets: list[str]) -> str:
    head = "| model | " + " | ".join(f"{t} acc | {t} F1" for t in targets) + " |"
    lines = [head, "|---" * (1 + 2 * len(targets)) + "|"]
    for stage in ("deap_teacher", "deap_eeg", "deap_video", "deap_student_kd", "deap_student_takd", "deap_student",
                  "deap_ta1", "deap_ta2", "deap_ta2_takd"):
        cells = []
        for t in targets:
            for key in ("acc", "F1"):
                vals = [r[key] for r in rows if r["stage"] == stage and r["target"] == t]
                sd = statistics.stdev(vals) if len(vals) > 1 else 0.0
                cells.append(f"{statistics.mean(vals):.4f} ± {sd:.4f}" if vals else "n/a")
        lines.append(f"| {ROWS[stage]} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def timing(epochs: int, seed: int = 1111) -> dict:
    """One full chain (teacher -> TA1 -> TA2 -> student) on 2 threads, then the student's inference throughput."""
    import torch

    from lightning_kd.cli import main
    from lightning_kd.distill.teacher import load_teacher

    os.chdir(ROOT)
    _ensure_data()
    torch.set_num_threads(2)
    save = WORK / "timing"
    chain = ("deap_teacher", "deap_ta1", "deap_ta2", "deap_student")
    args = _pipeline_args(seed, "arousal", epochs, chain)
    args[args.index(str(_save_dir(seed, "arousal")))] = str(save)
    if save.exists():
        import shutil

        shutil.rmtree(save)
    t0 = time.perf_counter()
    main(args)
    chain_s = time.perf_counter() - t0
    manifest = json.loads((save / "cdgkd" / "pipeline.json").read_text())["stages"]
    student, _ = load_teacher(manifest["deap_student"]["checkpoint"], ("lightning_kd.methods.cdgkd.module.CDGKD",))
    face_dim = student.hparams["feature_dims"]["face"]
    from lightning_kd.data.batch import Batch

    out = {"chain_seconds": chain_s, "epochs": epochs, "threads": torch.get_num_threads()}
    for bs in (1, 256):
        batch = Batch(inputs={"face": torch.randn(bs, 5, face_dim)})
        with torch.inference_mode():
            for _ in range(5):
                student.class_logits(batch)
            n, t1 = 0, time.perf_counter()
            while time.perf_counter() - t1 < 3.0:
                student.class_logits(batch)
                n += bs
        out[f"student_samples_per_s_batch{bs}"] = n / (time.perf_counter() - t1)
    out["student_parameters"] = sum(p.numel() for p in student.parameters())
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "cdgkd_timing.json").write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps(out, indent=2))
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("what", choices=["run", "summary", "timing"])
    p.add_argument("--seeds", type=int, nargs="+", default=[1111, 1112, 1113])
    p.add_argument("--targets", nargs="+", default=["arousal"], choices=["arousal", "valence"])
    p.add_argument("--epochs", type=int, default=15)
    p.add_argument("--workers", type=int, default=3)
    p.add_argument("--rating-noise", dest="rating_noise", type=float, default=0.0,
                   help="generate (and use) a folder whose ratings are noisy self-reports (write_deap rating_noise)")
    a = p.parse_args()
    global RATING_NOISE
    RATING_NOISE = a.rating_noise
    if a.what == "run":
        run(a.seeds, a.targets, a.epochs, a.workers)
    elif a.what == "summary":
        print(summary(a.seeds, a.targets, a.epochs))
    else:
        timing(a.epochs)


if __name__ == "__main__":
    main()
