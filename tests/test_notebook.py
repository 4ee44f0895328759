"""The notebooks run top to bottom (nbclient), on generated data, without writing into the checkout."""

from __future__ import annotations

import json
import re
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from conftest import ROOT


@pytest.mark.slow
def test_quickstart_notebook_executes(tmp_path: Path) -> None:
    # The notebook works under the folder it runs in (its parent when that is notebooks/): data/ and runs/ go
    # there. Run it in tmp_path, with the repository's configs linked in, so nothing lands in the checkout.
    (tmp_path / "configs").symlink_to(ROOT / "configs", target_is_directory=True)
    nb = nbformat.read(ROOT / "notebooks" / "quickstart.ipynb", as_version=4)
    NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    outputs = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))
    assert "Corr" in outputs and "MAE" in outputs
    images = [o for c in nb.cells for o in c.get("outputs", []) if "image/png" in o.get("data", {})]
    assert images, "the edge-weight heatmap was not drawn"
    assert list((tmp_path / "runs" / "notebook").rglob("test_metrics.json")), "the run did not write under tmp_path"
    assert list((tmp_path / "data").rglob("*.pkl")), "the generated data did not go under tmp_path"


@pytest.mark.slow
def test_cdgkd_notebook_executes(tmp_path: Path) -> None:
    # generate -> chain -> rebalancing curve, in tmp_path (configs linked in): data/ and runs/ land there
    (tmp_path / "configs").symlink_to(ROOT / "configs", target_is_directory=True)
    nb = nbformat.read(ROOT / "notebooks" / "cdgkd.ipynb", as_version=4)
    NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    outputs = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))
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
    (tmp_path / "configs").symlink_to(ROOT / "configs", target_is_directory=True)
    nb = nbformat.read(ROOT / "notebooks" / "mt_pkdot.ipynb", as_version=4)
    NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    outputs = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))
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
