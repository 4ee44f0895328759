"""The quickstart notebook runs top to bottom (nbclient), on generated data, without writing into the checkout."""

from __future__ import annotations

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
