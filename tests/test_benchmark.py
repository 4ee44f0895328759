"""`lightning-kd benchmark`: suite files, trial numbering, resume, results files, and the wandb sweep path (the
agent's own command building, offline)."""

from __future__ import annotations

import csv
import json
import statistics
from pathlib import Path

import pytest
import yaml

from conftest import ROOT
from lightning_kd.benchmark import load_suite, trials
from lightning_kd.checkpoint import ConfigError
from lightning_kd.cli import main


@pytest.mark.parametrize("name", ["sentiment", "clustering", "cdgkd", "mt_pkdot"])
def test_shipped_suites_parse_and_name_existing_configs(name: str) -> None:
    suite = load_suite(ROOT / f"configs/benchmark/{name}.yaml")
    assert suite.name == name and len(suite.seeds) == 3
    for m in suite.methods.values():
        for cfg in m["configs"]:
            assert (ROOT / cfg).is_file(), cfg
    for d in suite.datasets.values():
        files = [a for a in d["args"] if a.endswith(".yaml")]
        assert all((ROOT / f).is_file() for f in files), files
    ts = trials(suite)
    assert len(ts) == len(suite.methods) * len(suite.datasets) * len(suite.seeds)
    assert [t.index for t in ts] == list(range(len(ts)))


@pytest.mark.parametrize(("doc", "match"), [
    ({"seeds": [1], "methods": {"a": {"configs": ["x.yaml"]}}}, "lacks datasets"),
    ({"seeds": [1], "datasets": {"d": {}}, "methods": {"a": {}}}, "methods.a names no configs"),
    ({"seeds": [1], "datasets": {"d": {"args": "--x 1"}}, "methods": {"a": {"configs": ["x"]}}}, "list of command"),
    ({"seeds": ["a"], "datasets": {"d": {}}, "methods": {"a": {"configs": ["x"]}}}, "seeds must be"),
    ({"seeds": [1], "datasets": {"d": {}}, "methods": {"a": {"configs": ["x"]}}, "trails": 1}, "unknown key"),
    ({"seeds": [1], "datasets": {"d": {}}, "methods": {"a": {"configs": ["x"]}}, "conditions": {"complete": ["-x"]}},
     "takes no arguments"),
])
def test_bad_suites_are_one_line(tmp_path: Path, doc: dict, match: str) -> None:
    path = tmp_path / "suite.yaml"
    path.write_text(yaml.safe_dump(doc))
    with pytest.raises(ConfigError, match=match):
        load_suite(path)
    with pytest.raises(ConfigError, match="does not exist"):
        load_suite(tmp_path / "none.yaml")


def _agent_command(sweep: dict, trial: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The command a `wandb agent` would start for this sweep run, built by wandb's own agent code."""
    from wandb import wandb_agent

    captured: dict[str, list[str]] = {}

    class Capture:
        def __init__(self, command=None, **kwargs) -> None:
            captured["command"] = command

    monkeypatch.setattr(wandb_agent, "AgentProcess", Capture)
    monkeypatch.setenv("WANDB_DIR", str(tmp_path / "wandb_dir"))
    monkeypatch.setenv("WANDB_SWEEP_ID", "sweep0")
    agent = object.__new__(wandb_agent.Agent)
    agent._sweep_command, agent._in_jupyter, agent._function = sweep["command"], False, None
    agent._run_processes, agent._forward_signals = {}, False
    agent._command_run({"run_id": "run0", "program": sweep["program"], "args": {"trial": {"value": trial}}})
    return captured["command"]


@pytest.mark.slow
def test_suite_runs_resumes_and_fans_out_as_a_wandb_sweep(tiny_mmsa_aligned: Path, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    suite_file = tmp_path / "tiny.yaml"
    suite_file.write_text(yaml.safe_dump({
        "name": "tiny", "seeds": [1, 2],
        "args": ["--trainer.max_epochs", "1", "--data.init_args.batch_size", "8"],
        "datasets": {"tiny_mmsa": {"args": ["--data.init_args.path", str(tiny_mmsa_aligned)]}},
        "methods": {"fusion": {"configs": [str(ROOT / "configs/fusion/synthetic.yaml")]}},
        "conditions": {"complete": [], "text_only": ["--data.init_args.eval_missing", "{rate: 0.0, available: l}"]},
        "metrics": ["Has0_acc_2", "MAE"]}))
    out = tmp_path / "out"
    monkeypatch.chdir(tmp_path)
    # the sweep file, and trial 1 run by the command wandb's agent builds from it
    main(["benchmark", "-c", str(suite_file), "--out", str(out), "--sweep"])
    sweep = yaml.safe_load((out / "sweep.yaml").read_text())
    assert sweep["method"] == "grid" and sweep["parameters"]["trial"]["values"] == [0, 1]
    command = _agent_command(sweep, 1, tmp_path, monkeypatch)
    assert command[:3] == ["/usr/bin/env", "lightning-kd", "benchmark"] and command[-1] == "--trial=1"
    main(command[2:])
    assert (out / "trials/fusion/tiny_mmsa/s2/trial.json").is_file()
    assert not (out / "trials/fusion/tiny_mmsa/s1").exists()
    # the whole suite: trial 1 is skipped (done), trial 0 runs
    capsys.readouterr()
    main(["benchmark", "-c", str(suite_file), "--out", str(out)])
    printed = capsys.readouterr().out
    assert "trial 0 fusion/tiny_mmsa/s1: done" in printed and "trial 1 fusion/tiny_mmsa/s2: skipped (done)" in printed
    rows = list(csv.DictReader((out / "results.csv").open()))
    assert sorted((r["seed"], r["condition"]) for r in rows) == [("1", "complete"), ("1", "text_only"),
                                                                 ("2", "complete"), ("2", "text_only")]
    for r in rows:  # every number is the run's own test_metrics.json
        runs = out / "runs" / f"fusion/tiny_mmsa/s{r['seed']}" if r["condition"] == "complete" else \
            out / "runs" / f"fusion/tiny_mmsa/s{r['seed']}_text_only"
        (metrics_file,) = runs.rglob("test_metrics.json")
        metrics = json.loads(metrics_file.read_text())["metrics"]
        assert float(r["MAE"]) == pytest.approx(metrics["MAE"]) and float(r["Corr"]) == pytest.approx(metrics["Corr"])
    complete = [float(r["MAE"]) for r in rows if r["condition"] == "complete"]
    md = (out / "results.md").read_text()
    assert f"{statistics.mean(complete):.4f} ± {statistics.stdev(complete):.4f}" in md
    assert "## tiny_mmsa, text_only" in md and (out / "results.png").is_file()
    capsys.readouterr()
    main(["benchmark", "-c", str(suite_file), "--out", str(out), "--list"])
    assert capsys.readouterr().out.count("(done)") == 2
    main(["benchmark", "-c", str(suite_file), "--out", str(out), "--slurm"])
    sbatch = (out / "benchmark.sbatch").read_text()
    assert "#SBATCH --array=0-1" in sbatch and '--trial "$SLURM_ARRAY_TASK_ID"' in sbatch
    with pytest.raises(SystemExit):
        main(["benchmark", "-c", str(suite_file), "--out", str(out), "--trial", "7"])
    assert "out of range" in capsys.readouterr().err


def test_side_by_side_trials_prepare_a_data_set_once(tmp_path: Path) -> None:
    """Two trials of one data set starting together: the second waits for the first's `generate` and reuses its
    file (without the lock its `generate` would refuse to overwrite the half-written folder or file)."""
    from concurrent.futures import ThreadPoolExecutor

    from lightning_kd.benchmark import _prepare

    data = tmp_path / "mosi.pkl"
    suite_file = tmp_path / "suite.yaml"
    suite_file.write_text(yaml.safe_dump({
        "seeds": [1, 2], "methods": {"fusion": {"configs": ["configs/fusion/synthetic.yaml"]}},
        "datasets": {"tiny": {"prepare": ["generate", "mmsa", "--out", str(data), "--n", "8", "4", "4", "--dims",
                                          "6", "3", "4", "--lengths", "5", "5", "5"], "creates": str(data)}}}))
    suite = load_suite(suite_file)
    paths = [tmp_path / "a.log", tmp_path / "b.log"]
    logs = [p.open("w") for p in paths]
    with ThreadPoolExecutor(2) as pool:
        list(pool.map(lambda log: _prepare(suite, "tiny", tmp_path / "out", log), logs))
    for log in logs:
        log.close()
    written = [p.read_text() for p in paths]
    assert data.is_file() and sum("wrote" in w for w in written) == 1, written  # one generate ran; the other reused
