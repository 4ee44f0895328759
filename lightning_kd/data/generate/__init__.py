"""Writers of synthetic data in the real on-disk formats, one module per format of :mod:`lightning_kd.data.formats`
(``mmsa``, ``mult``, ``multiview``, ``mfeat``, ``deap``, ``mahnob``, ``biovid``; ``video`` and ``eeg_face`` are shared by the EEG + face
writers), the synthetic datamodules that generate their file on first use,
and the ``lightning-kd generate`` subcommand (:mod:`~lightning_kd.data.generate.command`).

Generators may import a reader's constants (dims, key names), so that what is written is exactly what is read;
readers import nothing from here.
"""

from lightning_kd.data.generate.base import GeneratedOnFirstUse
from lightning_kd.data.generate.biovid import write_biovid
from lightning_kd.data.generate.deap import write_deap
from lightning_kd.data.generate.mfeat import write_mfeat_csvs
from lightning_kd.data.generate.mmsa import SyntheticMMSADataModule, write_mmsa_pickle
from lightning_kd.data.generate.mult import SyntheticMulTDataModule, write_mult_pickle
from lightning_kd.data.generate.multiview import SyntheticMultiViewDataModule, write_multiview_mat

__all__ = [
    "GeneratedOnFirstUse",
    "SyntheticMMSADataModule",
    "SyntheticMulTDataModule",
    "SyntheticMultiViewDataModule",
    "write_biovid",
    "write_deap",
    "write_mfeat_csvs",
    "write_mmsa_pickle",
    "write_mult_pickle",
    "write_multiview_mat",
]
