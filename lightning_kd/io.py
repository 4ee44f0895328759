"""File helpers used by every layer: atomic writes and content hashes (one copy for the whole package).

Atomic: the bytes go to a temporary file in the target's folder, which is fsync-ed and renamed over the
target, so a reader never sees a half-written file and a killed writer leaves at most its temporary file,
which :func:`atomic_write_binary` removes on any exception (KeyboardInterrupt and SystemExit included).
"""

from __future__ import annotations

import hashlib
import os
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any, BinaryIO

__all__ = ["atomic_write_binary", "atomic_write_text", "file_sha256"]


def _atomic_write(path: str | Path, write: Callable[[IO[Any]], None], mode: str, **open_kwargs: Any) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    for _ in range(100):
        # The name is chosen before the file exists, so an exception raised the instant it is created (e.g. the
        # SystemExit of a SIGTERM handler) still removes it. Exclusive create: FileExistsError = not ours.
        tmp = path.parent / f".{path.name}.{secrets.token_hex(8)}.tmp"
        try:
            try:
                f = open(tmp, mode.replace("w", "x"), **open_kwargs)
            except FileExistsError:
                continue
            with f:
                write(f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return path
    raise FileExistsError(f"{path}: no free temporary file name in {path.parent}")


def atomic_write_binary(path: str | Path, write: Callable[[BinaryIO], None]) -> Path:
    """Call ``write(f)`` on a binary temporary file next to ``path``, then rename it over ``path``."""
    return _atomic_write(path, write, "wb")


def atomic_write_text(path: str | Path, write: Callable[[IO[str]], None]) -> Path:
    """Text (UTF-8, no newline translation) counterpart of :func:`atomic_write_binary`."""
    return _atomic_write(path, write, "w", encoding="utf-8", newline="")


_SHA_MEMO: dict[tuple[str, int, int], str] = {}


def file_sha256(path: str | Path, chunk: int = 1 << 22) -> str:
    """Hex sha256 of a file's bytes, read in chunks (memoised per path, size and mtime within the process)."""
    p = Path(path).resolve()
    st = p.stat()
    memo = (str(p), st.st_size, st.st_mtime_ns)
    if memo not in _SHA_MEMO:
        h = hashlib.sha256()
        with p.open("rb") as f:
            while block := f.read(chunk):
                h.update(block)
        _SHA_MEMO[memo] = h.hexdigest()
    return _SHA_MEMO[memo]
