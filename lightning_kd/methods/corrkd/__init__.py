"""CorrKD: correlation-decoupled knowledge distillation under missing modalities (Li et al., CVPR 2024)."""

from lightning_kd.methods.corrkd.losses import CorrKDLossOptions, CorrKDObjective
from lightning_kd.methods.corrkd.model import CorrKDNet, CorrKDNetOptions, CorrKDOutput
from lightning_kd.methods.corrkd.module import CorrKD

__all__ = ["CorrKD", "CorrKDLossOptions", "CorrKDNet", "CorrKDNetOptions", "CorrKDObjective", "CorrKDOutput"]
