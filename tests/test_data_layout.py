"""The data layer's import structure: readers never depend on generators, every module imports alone."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[1] / "lightning_kd"
READERS = sorted((PKG / "data" / "formats").glob("*.py"))


def _imported_modules(source: Path) -> set[str]:
    """Every module named by an ``import`` / ``from ... import`` anywhere in the file (also inside functions)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(source.read_text(), filename=str(source))):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative import: resolve against the file's package
                parts = source.relative_to(PKG.parent).with_suffix("").parts[: -node.level]
                base = ".".join(parts + ((node.module,) if node.module else ()))
            else:
                base = node.module or ""
            names.add(base)
            names.update(f"{base}.{a.name}" for a in node.names)
    return names


def test_readers_import_nothing_from_generate() -> None:
    assert len(READERS) >= 6  # the walk really sees the reader sources
    offenders = {
        p.name: sorted(m for m in _imported_modules(p) if m.startswith("lightning_kd.data.generate"))
        for p in READERS
    }
    assert {k: v for k, v in offenders.items() if v} == {}


def test_import_walk_sees_generate_imports() -> None:
    """The walk above would notice an offending import (absolute, relative or inside a function)."""
    mods = _imported_modules(PKG / "data" / "generate" / "command.py")
    assert "lightning_kd.data.generate.mmsa" in mods


def test_no_reader_imports_metrics() -> None:
    """Constants of a format (e.g. the IEMOCAP emotions) live with its reader; metrics import them from there."""
    assert {p.name for p in READERS if any(m.startswith("lightning_kd.metrics") for m in _imported_modules(p))} == set()


MODULES = [
    "lightning_kd.data.formats.mmsa", "lightning_kd.data.formats.mult", "lightning_kd.data.formats.multiview",
    "lightning_kd.data.formats.mfeat", "lightning_kd.data.formats.digits", "lightning_kd.data.formats.common",
    "lightning_kd.data.generate", "lightning_kd.data.generate.base", "lightning_kd.data.generate.mmsa",
    "lightning_kd.data.generate.mult", "lightning_kd.data.generate.multiview", "lightning_kd.data.generate.mfeat",
    "lightning_kd.data.generate.command", "lightning_kd.metrics.classification", "lightning_kd.data",
]

_IMPORT_EACH_FIRST = """
import importlib, sys
for name in sys.argv[1:]:
    for k in [k for k in sys.modules if k == "lightning_kd" or k.startswith("lightning_kd.")]:
        del sys.modules[k]  # the package starts from nothing; torch & co stay loaded (only speed)
    try:
        importlib.import_module(name)
    except Exception as e:
        print(f"{name}: {type(e).__name__}: {e}")
        sys.exit(1)
"""


@pytest.mark.slow
def test_each_module_imports_first() -> None:
    """Each module imported first into an empty package (an import circle fails with a partial module)."""
    r = subprocess.run([sys.executable, "-c", _IMPORT_EACH_FIRST, *MODULES], capture_output=True, text=True,
                       timeout=300, cwd=PKG.parent)
    assert r.returncode == 0, (r.stdout + r.stderr)[-2000:]


def test_old_generator_modules_are_gone() -> None:
    """No compatibility shims: the generators live in lightning_kd.data.generate only."""
    assert not (PKG / "data" / "synthetic.py").exists()
    assert not (PKG / "data" / "synthetic_mult.py").exists()
    assert not (PKG / "data" / "synthetic_multiview.py").exists()


def test_public_names_still_exported() -> None:
    import lightning_kd.data as data
    from lightning_kd.data.generate import mmsa, mult, multiview

    assert data.SyntheticMMSADataModule is mmsa.SyntheticMMSADataModule
    assert data.SyntheticMulTDataModule is mult.SyntheticMulTDataModule
    assert data.SyntheticMultiViewDataModule is multiview.SyntheticMultiViewDataModule
    assert data.write_mmsa_pickle is mmsa.write_mmsa_pickle
    for name in data.__all__:
        assert hasattr(data, name), name
