"""The checkpoint tag, safe checkpoint loading and every user-facing error class (the lowest layer: imports
nothing of the package).

Every layer (data readers, distillation blocks, methods, the CLI) raises these; ``lightning-kd`` prints any
of them as one line ``lightning-kd: error: <message>`` and exits with status 2. Messages name the file or
option that is wrong and the fix.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

#: key of the entry ``{"method": "<module>.<class>", "version": ...}`` that every lightning_kd checkpoint holds
#: the fix named when a --ckpt_path (or a checkpoint to export) is unusable
CKPT_FIX = "Fix: pass a checkpoint written by `lightning-kd fit` (runs/<name>/version_N/checkpoints/*.ckpt)."
CHECKPOINT_KEY = "lightning_kd"


class UserError(Exception):
    """Base of the errors whose message is the whole story (what is wrong, where, and the fix)."""


class ConfigError(UserError, ValueError):
    """Options contradict each other or name something unusable (e.g. a student without a teacher)."""


class CheckpointMismatchError(UserError, RuntimeError):
    """A checkpoint written by another method (or not by lightning_kd), truncated, or not a checkpoint."""


class DataFormatError(UserError, ValueError):
    """A data file is missing, unreadable or does not follow its format.

    Messages name the file, the split and key where relevant, what is wrong and how to fix it.
    """


class DataFileNotFoundError(DataFormatError, FileNotFoundError):
    """The data file does not exist (also a :class:`FileNotFoundError`)."""


class WeightsError(UserError, ValueError):
    """A local weights file is missing, unreadable, or does not fit the requested architecture."""


class CheckpointNotFoundError(CheckpointMismatchError, FileNotFoundError):
    """The checkpoint file does not exist (also a :class:`FileNotFoundError`)."""


class DataMismatchError(ConfigError):
    """The datamodule does not provide what the configured method needs (inputs by name, kind of target)."""


class OutputPathError(ConfigError):
    """An output location (``save_dir``, ``default_root_dir``, ``--out``) is a file or cannot be written."""


# -- loading checkpoints without running code -------------------------------------------------------------
# A checkpoint is a pickle. ``torch.load(weights_only=True)`` unpickles only tensors, plain containers and
# primitives plus the allowlisted classes below, so a file from elsewhere cannot run code while it is read.
# Checkpoints written by ``lightning-kd`` hold only those: their hyper-parameters come from the resolved
# config as plain YAML values (LightningCLI's instantiator). The classes below are what a module built in
# Python may add to its hyper-parameters; every one is data only (rebuilt from its fields, no code runs).

#: classes a lightning_kd checkpoint may hold beyond tensors, containers and primitives
SAFE_GLOBALS: list[type] = []
_registered: set[type] = set()


def checkpoint_safe(cls: type) -> type:
    """Class decorator: allow a data-only class (a dataclass of options, an Enum) in checkpoints.

    Use it for any class that may appear in a module's hyper-parameters, e.g. an options dataclass given to a
    LightningModule in Python. It must not run code when rebuilt (no custom ``__reduce__`` / ``__setstate__``).
    """
    if cls not in SAFE_GLOBALS:
        SAFE_GLOBALS.append(cls)
    if _registered:  # already registered once: add the newcomer too
        register_safe_globals()
    return cls


def _default_safe_globals() -> list[type]:
    import pathlib

    from jsonargparse import Namespace  # hyper-parameters of a module given a nested jsonargparse config

    return [pathlib.PosixPath, pathlib.WindowsPath, pathlib.PurePosixPath, pathlib.PureWindowsPath, Namespace]


def register_safe_globals() -> None:
    """Allow :data:`SAFE_GLOBALS` in every ``torch.load(weights_only=True)`` of this process (idempotent).

    Called by the CLI and by :func:`load_checkpoint`, so Lightning's own loads (``--ckpt_path``,
    ``load_from_checkpoint``) accept the same classes as the teacher loader.
    """
    import torch

    if not _registered:
        for cls in _default_safe_globals():
            if cls not in SAFE_GLOBALS:
                SAFE_GLOBALS.append(cls)
    new = [c for c in SAFE_GLOBALS if c not in _registered]
    if new:
        torch.serialization.add_safe_globals(new)
        _registered.update(new)


def load_checkpoint(
    path: str | os.PathLike[str],
    *,
    what: str = "checkpoint",
    fix: str = "Fix: pass a checkpoint written by `lightning-kd fit` (runs/<name>/version_N/checkpoints/*.ckpt).",
    error: type[CheckpointMismatchError] = CheckpointMismatchError,
    not_found: type[CheckpointMismatchError] = CheckpointNotFoundError,
    mmap: bool = False,
) -> dict[str, Any]:
    """Read a Lightning checkpoint on the CPU with ``weights_only=True`` (nothing in the file can run code).

    Args:
        path: the checkpoint file.
        what: how messages name it (``"checkpoint"``, ``"teacher checkpoint"``).
        fix: the last sentence of every message (what to do instead).
        error / not_found: the classes raised (subclasses of :class:`CheckpointMismatchError`).
        mmap: map the tensors instead of reading them (for a look at the tag and hyper-parameters only).

    Returns:
        The checkpoint dict (it has a ``state_dict``).

    Raises:
        not_found: no such file (or a directory).
        error: the file needs a class outside the allowlist (refused unread), is truncated or not written
            by ``torch.save``, or is not a Lightning checkpoint (no ``state_dict``).
    """
    import pickle

    import torch

    file = Path(path).expanduser()
    if not file.is_file():
        hint = "it is a directory, not a file" if file.is_dir() else "no such file"
        raise not_found(f"{what} {file} not found ({hint}). {fix}")
    register_safe_globals()
    try:
        try:
            checkpoint = torch.load(file, map_location="cpu", weights_only=True, mmap=mmap)
        except RuntimeError as e:
            if not (mmap and "mmap" in str(e)):
                raise
            checkpoint = torch.load(file, map_location="cpu", weights_only=True)  # legacy (non-zip) format
    except MemoryError:
        raise
    except pickle.UnpicklingError as e:
        found = re.search(r"GLOBAL (\S+)", str(e))
        needs = f"`{found.group(1)}`" if found else "an object that is not a tensor or plain value"
        raise error(f"{what} {file} was refused unread: it needs {needs}, which is not allowed in a checkpoint "
                    f"(unpickling it could run code; only tensors, plain values and lightning_kd's data classes "
                    f"are). {fix}") from e
    except Exception as e:  # noqa: BLE001 - truncated / foreign files raise many types (RuntimeError, KeyError, ...)
        reason = (str(e).strip().splitlines() or [""])[0].split(". ")[0][:160]  # the first sentence is the story
        raise error(f"{what} {file} cannot be read ({type(e).__name__}: {reason}): it is truncated or not a "
                    f"file written by torch.save. {fix}") from e
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint:
        raise error(f"{what} {file} is not a Lightning checkpoint (no 'state_dict'). {fix}")
    return checkpoint
