"""Shared data layer: batch type, in-memory datamodules, on-disk format readers and generators."""

from lightning_kd.checkpoint import DataFileNotFoundError, DataFormatError
from lightning_kd.data.affwild2_data import AffWild2DataModule
from lightning_kd.data.batch import Batch
from lightning_kd.data.datamodule import InMemoryDataModule
from lightning_kd.data.eeg_face_data import EEGFaceDataModule
from lightning_kd.data.formats.biovid import BiovidDataModule, read_biovid_samples
from lightning_kd.data.formats.deap import DEAPDataModule, read_deap
from lightning_kd.data.formats.digits import DigitsCLIPDataModule
from lightning_kd.data.formats.mahnob import MAHNOBDataModule, read_mahnob
from lightning_kd.data.formats.mfeat import MfeatDataModule, read_mfeat
from lightning_kd.data.formats.mmsa import MMSADataModule, read_mmsa
from lightning_kd.data.formats.mult import MulTDataModule, read_mult
from lightning_kd.data.formats.multiview import MultiViewDataModule, read_multiview_mat
from lightning_kd.data.generate.mmsa import SyntheticMMSADataModule, write_mmsa_pickle
from lightning_kd.data.generate.mult import SyntheticMulTDataModule, write_mult_pickle
from lightning_kd.data.generate.multiview import SyntheticMultiViewDataModule, write_multiview_mat
from lightning_kd.data.missing import MissingAugmentation, MissingCondition, ModalityLayout
from lightning_kd.data.semantic_graph import SemanticGraph
from lightning_kd.data.split import SplitTensors

__all__ = [
    "AffWild2DataModule",
    "Batch",
    "BiovidDataModule",
    "DataFileNotFoundError",
    "DEAPDataModule",
    "DataFormatError",
    "DigitsCLIPDataModule",
    "EEGFaceDataModule",
    "InMemoryDataModule",
    "MAHNOBDataModule",
    "MMSADataModule",
    "MfeatDataModule",
    "MissingAugmentation",
    "MissingCondition",
    "ModalityLayout",
    "MulTDataModule",
    "MultiViewDataModule",
    "SemanticGraph",
    "SplitTensors",
    "SyntheticMMSADataModule",
    "SyntheticMulTDataModule",
    "SyntheticMultiViewDataModule",
    "read_biovid_samples",
    "read_deap",
    "read_mahnob",
    "read_mmsa",
    "read_mult",
    "read_mfeat",
    "read_multiview_mat",
    "write_mmsa_pickle",
    "write_mult_pickle",
    "write_multiview_mat",
]
