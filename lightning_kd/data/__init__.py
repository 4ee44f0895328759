"""Shared data layer: batch type, in-memory datamodules, on-disk format readers and generators."""

from lightning_kd.data.batch import Batch
from lightning_kd.data.datamodule import InMemoryDataModule
from lightning_kd.data.errors import DataFileNotFoundError, DataFormatError
from lightning_kd.data.formats.mmsa import MMSADataModule, read_mmsa
from lightning_kd.data.formats.mult import MulTDataModule, read_mult
from lightning_kd.data.formats.multiview import MultiViewDataModule, read_multiview_mat
from lightning_kd.data.missing import MissingAugmentation, MissingCondition
from lightning_kd.data.split import SplitTensors
from lightning_kd.data.synthetic import SyntheticMMSADataModule, write_mmsa_pickle
from lightning_kd.data.synthetic_mult import SyntheticMulTDataModule, write_mult_pickle

__all__ = [
    "Batch",
    "DataFileNotFoundError",
    "DataFormatError",
    "InMemoryDataModule",
    "MMSADataModule",
    "MissingAugmentation",
    "MissingCondition",
    "MulTDataModule",
    "MultiViewDataModule",
    "SplitTensors",
    "SyntheticMMSADataModule",
    "SyntheticMulTDataModule",
    "read_mmsa",
    "read_mult",
    "read_multiview_mat",
    "write_mmsa_pickle",
    "write_mult_pickle",
]
