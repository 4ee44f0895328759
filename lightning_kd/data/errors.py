"""Errors raised by the on-disk format readers (defined once in :mod:`lightning_kd.checkpoint`)."""

from lightning_kd.checkpoint import DataFileNotFoundError, DataFormatError

__all__ = ["DataFileNotFoundError", "DataFormatError"]
