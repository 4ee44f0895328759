"""The checkpoint tag and every user-facing error class (the lowest layer: imports nothing of the package).

Every layer (data readers, distillation blocks, methods, the CLI) raises these; ``lightning-kd`` prints any
of them as one line ``lightning-kd: error: <message>`` and exits with status 2. Messages name the file or
option that is wrong and the fix.
"""

from __future__ import annotations

#: key of the entry ``{"method": "<module>.<class>", "version": ...}`` that every lightning_kd checkpoint holds
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
