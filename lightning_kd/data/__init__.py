"""Shared data layer: batch type, in-memory datamodules, on-disk format readers and generators."""

from lightning_kd.data.batch import Batch
from lightning_kd.data.datamodule import InMemoryDataModule
from lightning_kd.data.errors import DataFileNotFoundError, DataFormatError
from lightning_kd.data.formats.mmsa import MMSADataModule, read_mmsa
from lightning_kd.data.split import SplitTensors
from lightning_kd.data.synthetic import SyntheticMMSADataModule, write_mmsa_pickle

__all__ = [
    "Batch",
    "DataFileNotFoundError",
    "DataFormatError",
    "InMemoryDataModule",
    "MMSADataModule",
    "SplitTensors",
    "SyntheticMMSADataModule",
    "read_mmsa",
    "write_mmsa_pickle",
]
