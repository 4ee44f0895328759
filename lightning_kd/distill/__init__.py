from lightning_kd.distill.alignment import AlignmentTerms, alignment_loss
from lightning_kd.distill.contrastive import SampleContrastiveDistillation
from lightning_kd.distill.gd_unit import EDGES, HETERO_PRIOR_LOGITS, HOMO_PRIOR_LOGITS, GDLoss, GDUnit
from lightning_kd.distill.logit_kd import LogitKDMixin, LogitKDOptions, kd_kl
from lightning_kd.distill.mutual_info import JSMutualInformation, ResponseDisentangledDistillation
from lightning_kd.distill.prototype import PrototypeDistillation
from lightning_kd.distill.stats import DistillStats
from lightning_kd.distill.structural_ot import StructuralOT, StructuralOTOptions, StructuralOTTerms, sinkhorn_divergence
from lightning_kd.distill.teacher import TeacherError, TeacherMixin, TeacherNotFoundError, load_teacher
from lightning_kd.distill.teacher_selection import select_teacher
