"""Reusable Lightning callbacks."""

from lightning_kd.callbacks.config import RunDirSaveConfig
from lightning_kd.callbacks.distillation import DistillationStats, RobustnessAfterFit
from lightning_kd.callbacks.embedding_plot import EmbeddingPlot
from lightning_kd.callbacks.official_accumulation import SummedAccumulationClipping
from lightning_kd.callbacks.outputs import PredictionCSVWriter, TestMetricsWriter
from lightning_kd.callbacks.rebalancing import ModalityRebalancing
from lightning_kd.callbacks.run_dir import run_dir
from lightning_kd.callbacks.seeding import EpochSeed

__all__ = ["DistillationStats", "EmbeddingPlot", "EpochSeed", "ModalityRebalancing", "PredictionCSVWriter",
           "RobustnessAfterFit", "RunDirSaveConfig", "SummedAccumulationClipping", "TestMetricsWriter", "run_dir"]
