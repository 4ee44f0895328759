"""MT-PKDOT: multi-teacher privileged knowledge distillation with optimal transport (Aslam et al., arXiv
2408.09035)."""

from lightning_kd.methods.mt_pkdot.losses import CANDIDATES, MTPKDOTLossOptions, batch_ccc_loss, feature_kd, task_loss
from lightning_kd.methods.mt_pkdot.model import ROLES, MTPKDOTNet, MTPKDOTNetOptions, MTPKDOTOutput
from lightning_kd.methods.mt_pkdot.module import MTPKDOT

__all__ = ["CANDIDATES", "MTPKDOT", "ROLES", "MTPKDOTLossOptions", "MTPKDOTNet", "MTPKDOTNetOptions", "MTPKDOTOutput",
           "batch_ccc_loss", "feature_kd", "task_loss"]
