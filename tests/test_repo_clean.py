"""The session check of tests/repo_clean.py sees files written into a checkout and ignores bytecode caches."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from repo_clean import new_entries, tree_entries

pytestmark = pytest.mark.skipif(shutil.which("git") is None, reason="needs git")


def test_new_files_in_a_checkout_are_reported(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    subprocess.run(["git", "init", "-q"], cwd=repo, check=True)
    (repo / ".gitignore").write_text("/runs/\n")
    (repo / "tracked.txt").write_text("a\n")
    subprocess.run(["git", "add", "-A"], cwd=repo, check=True)
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "init"], cwd=repo,
                   check=True)
    (repo / "runs").mkdir()
    (repo / "runs" / "old.txt").write_text("there before\n")
    before = tree_entries(repo)
    assert before == {"!! runs/old.txt"}

    (repo / "runs" / "notebook").mkdir()
    (repo / "runs" / "notebook" / "metrics.json").write_text("{}")  # inside an already ignored folder
    (repo / "stray.csv").write_text("x\n")  # untracked
    (repo / "tracked.txt").write_text("b\n")  # changed
    (repo / "pkg" / "__pycache__").mkdir(parents=True)
    (repo / "pkg" / "__pycache__" / "m.cpython-311.pyc").write_bytes(b"")  # bytecode: ignored
    assert new_entries(before, tree_entries(repo)) == [" M tracked.txt", "!! runs/notebook/metrics.json",
                                                       "?? stray.csv"]


def test_outside_a_checkout_there_is_nothing_to_compare(tmp_path: Path) -> None:
    assert tree_entries(tmp_path) is None
    assert new_entries(None, {"?? x"}) == [] and new_entries({"?? x"}, None) == []
