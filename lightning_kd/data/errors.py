"""Errors raised by the on-disk format readers."""

from __future__ import annotations


class DataFormatError(ValueError):
    """A data file is missing, unreadable or does not follow its format.

    Messages name the file, the split and key where relevant, what is wrong and how to fix it.
    """


class DataFileNotFoundError(DataFormatError, FileNotFoundError):
    """The data file does not exist (also a :class:`FileNotFoundError`)."""
