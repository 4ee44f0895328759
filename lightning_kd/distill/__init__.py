from lightning_kd.distill.gd_unit import EDGES, HETERO_PRIOR_LOGITS, HOMO_PRIOR_LOGITS, GDLoss, GDUnit
