"""DMD: Decoupled Multimodal Distilling for emotion recognition (Li, Wang, Cui; CVPR 2023)."""

from lightning_kd.methods.dmd.losses import DMDLossOptions
from lightning_kd.methods.dmd.model import DMDNetOptions
from lightning_kd.methods.dmd.module import DMD, EDGE_NAMES

__all__ = ["DMD", "DMDLossOptions", "DMDNetOptions", "EDGE_NAMES"]
