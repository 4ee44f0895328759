"""Tests never write into the repository tree: a session fixture compares ``git status`` before and after."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

#: path components whose files Python and pytest themselves create (bytecode, the cache plugin)
IGNORED_PARTS = frozenset({"__pycache__", ".pytest_cache"})


def tree_entries(root: Path) -> set[str] | None:
    """Every untracked, ignored or changed path under ``root`` (one ``git status --porcelain`` line each, files
    inside untracked or ignored folders listed one by one); ``None`` when ``root`` is not a git checkout."""
    if shutil.which("git") is None or not (root / ".git").exists():
        return None
    proc = subprocess.run(["git", "status", "--porcelain", "--ignored", "--untracked-files=all"], cwd=root,
                          capture_output=True, text=True, timeout=120)
    if proc.returncode != 0:
        return None
    return {line for line in proc.stdout.splitlines() if not IGNORED_PARTS & set(Path(line[3:]).parts)}


def new_entries(before: set[str] | None, after: set[str] | None) -> list[str]:
    """Status lines present after the tests but not before (empty when either snapshot is missing)."""
    return [] if before is None or after is None else sorted(after - before)


@pytest.fixture(scope="session", autouse=True)
def repository_stays_clean() -> Iterator[None]:
    """Fails the session (an error at the last test's teardown) if the tests created or changed files in the
    checkout; write under ``tmp_path`` instead."""
    root = Path(__file__).resolve().parents[1]
    before = tree_entries(root)
    yield
    created = new_entries(before, tree_entries(root))
    if created:
        shown = ", ".join(line[3:] for line in created[:10]) + (" ..." if len(created) > 10 else "")
        pytest.fail(f"the tests wrote into the repository tree ({len(created)} paths: {shown}); use tmp_path",
                    pytrace=False)
