"""A restricted unpickler for data files: numpy arrays, dtypes, scalars and plain containers only.

A pickle names every callable it needs as a global (``module.name``) and the stock unpickler imports and calls
whatever it is told, so a data file can run code (``os.system`` through ``__reduce__``). :class:`DataUnpickler`
resolves a global only when it is on :data:`ALLOWED_GLOBALS` and refuses any other before anything is called:

* numpy arrays: ``numpy.core.multiarray._reconstruct`` (and ``numpy._core...``, numpy >= 2), ``numpy.ndarray``,
  ``numpy.core.numeric._frombuffer`` (protocol 5), ``numpy.dtype``; scalars: ``numpy.core.multiarray.scalar``.
  numpy 1.x and 2.x module names both resolve to the installed numpy's functions;
* ``_codecs.encode`` restricted to latin-1 (how Python 3 writes ``bytes`` at protocol 2, e.g. array buffers);
* inert builtin containers written through globals at low protocols: ``set``, ``frozenset``, ``bytearray``.

dict, list, tuple, str, bytes, int, float, bool and None have their own opcodes and need no global. An object
array's elements are unpickled through the same filter.
"""

from __future__ import annotations

import importlib
import importlib.util
import io
import pickle
from _compat_pickle import IMPORT_MAPPING, NAME_MAPPING
from typing import IO, Any

import numpy as np

__all__ = ["ALLOWED_GLOBALS", "DataUnpickler", "RefusedGlobalError", "restricted_load", "restricted_loads"]


class RefusedGlobalError(pickle.UnpicklingError):
    """The pickle asked for a global outside :data:`ALLOWED_GLOBALS` (``.qualname`` names it)."""

    def __init__(self, module: str, name: str) -> None:
        self.qualname = f"{module}.{name}"
        super().__init__(f"the pickle needs the global {self.qualname!r}, which a data file may not use")


_LATIN1 = {"latin1", "latin-1", "latin_1", "iso-8859-1", "iso8859-1", "l1"}


def _latin1_encode(obj: str, encoding: str = "utf-8", errors: str = "strict") -> bytes:
    """``_codecs.encode`` as protocol-2 pickles of ``bytes`` use it (latin-1 only; no other codec)."""
    if not isinstance(obj, str) or str(encoding).lower() not in _LATIN1:
        raise pickle.UnpicklingError(f"_codecs.encode is admitted only for str to latin-1, got encoding {encoding!r}")
    return obj.encode("latin-1", errors)


def _numpy_globals() -> dict[tuple[str, str], Any]:
    core = "numpy._core" if importlib.util.find_spec("numpy._core") is not None else "numpy.core"
    multiarray = importlib.import_module(f"{core}.multiarray")
    numeric = importlib.import_module(f"{core}.numeric")
    out: dict[tuple[str, str], Any] = {("numpy", "ndarray"): np.ndarray, ("numpy", "dtype"): np.dtype}
    for name in ("numpy.core", "numpy._core"):  # numpy 1.x writes numpy.core, numpy 2.x numpy._core
        out[(f"{name}.multiarray", "_reconstruct")] = multiarray._reconstruct
        out[(f"{name}.multiarray", "scalar")] = multiarray.scalar
        out[(f"{name}.numeric", "_frombuffer")] = numeric._frombuffer
    return out


#: (module, name) -> the object a data pickle may use
ALLOWED_GLOBALS: dict[tuple[str, str], Any] = {
    **_numpy_globals(),
    ("_codecs", "encode"): _latin1_encode,
    ("builtins", "set"): set,
    ("builtins", "frozenset"): frozenset,
    ("builtins", "bytearray"): bytearray,
}


class DataUnpickler(pickle.Unpickler):
    """:class:`pickle.Unpickler` that resolves only :data:`ALLOWED_GLOBALS`; anything else raises
    :class:`RefusedGlobalError` before it is imported or called. Python 2 module names are mapped first
    (as ``fix_imports`` does), so ``__builtin__.set`` is ``builtins.set``."""

    def find_class(self, module: str, name: str) -> Any:
        asked = (module, name)
        if (module, name) in NAME_MAPPING:  # Python 2 names (no Python 3 module has them), without importing
            module, name = NAME_MAPPING[(module, name)]
        elif module in IMPORT_MAPPING:
            module = IMPORT_MAPPING[module]
        found = ALLOWED_GLOBALS.get((module, name))
        if found is None:
            raise RefusedGlobalError(*asked)
        return found

    def persistent_load(self, pid: Any) -> Any:
        raise pickle.UnpicklingError("persistent ids are not admitted in a data file")


def restricted_load(file: IO[bytes], encoding: str = "ASCII", errors: str = "strict") -> Any:
    """``pickle.load`` through :class:`DataUnpickler` (``encoding="latin1"`` for Python 2 numpy pickles)."""
    return DataUnpickler(file, encoding=encoding, errors=errors).load()


def restricted_loads(data: bytes, encoding: str = "ASCII", errors: str = "strict") -> Any:
    """``pickle.loads`` through :class:`DataUnpickler`."""
    return restricted_load(io.BytesIO(data), encoding=encoding, errors=errors)


