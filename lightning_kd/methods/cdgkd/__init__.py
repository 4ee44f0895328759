"""CDGKD: cross-modal densely guided knowledge distillation with modality rebalancing (Wu et al., IJCAI 2025)."""

from lightning_kd.methods.cdgkd.losses import (
    CDGKDLossOptions,
    dense_guidance,
    prototype_loss,
    prototype_probabilities,
    teacher_keep_mask,
)
from lightning_kd.methods.cdgkd.model import ROLES, CDGKDNet, CDGKDNetOptions, CDGKDOutput
from lightning_kd.methods.cdgkd.module import CDGKD

__all__ = ["CDGKD", "ROLES", "CDGKDLossOptions", "CDGKDNet", "CDGKDNetOptions", "CDGKDOutput", "dense_guidance",
           "prototype_loss", "prototype_probabilities", "teacher_keep_mask"]
