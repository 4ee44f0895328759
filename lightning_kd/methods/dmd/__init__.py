"""DMD: Decoupled Multimodal Distilling for emotion recognition (Li, Wang, Cui; CVPR 2023)."""

from lightning_kd.methods.dmd.module import DMD, EDGE_NAMES

__all__ = ["DMD", "EDGE_NAMES"]
