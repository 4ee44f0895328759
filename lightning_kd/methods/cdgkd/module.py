"""LightningModule of CDGKD (Wu et al., IJCAI 2025): one class for every stage of the chain.

``role`` picks the network (:mod:`lightning_kd.methods.cdgkd.model`); what a role learns from:

* ``teacher`` (face + EEG): CE + ``alpha * (beta L_proto^face + gamma L_proto^eeg)``; ``beta`` / ``gamma`` come
  from :class:`lightning_kd.callbacks.rebalancing.ModalityRebalancing` (set in the config's callbacks), 0 without it.
* ``ta1`` / ``ta2`` (face + EEG, shrunk EEG branch) and ``student`` (face only): dense guidance from every
  checkpoint in ``teacher_ckpts`` (teacher, then TA1, ...): ``a CE + (1 - a) sum_{kept j} T^2 KL``; without
  teachers, plain CE (``student`` without teachers is the video-only reference). The assistants also add the
  rebalancing prototype terms when the callback is configured for them.
* ``eeg``: the EEG-only reference, CE.

Plain logit KD (Hinton et al., 2015) is this module with one teacher and ``loss.drop_prob: 0``
(``a CE + (1 - a) T^2 KL``, configs/cdgkd/deap_student_kd.yaml). The project's generic option
``logit_kd`` (:class:`~lightning_kd.distill.logit_kd.LogitKDMixin`, ``-c configs/kd/plain.yaml``) works here as on
every classification method: ``loss = a' * own loss + (1 - a') mean_k T'^2 KL`` from ``teacher_ckpts`` (any
lightning_kd method with ``class_logits``), on any role. With it the teachers serve plain KD only: the dense
guidance (itself a logit KD from the same teachers) is off, so the role's own loss is CE (+ the rebalancing terms of
a two-modality role), and ``-c configs/kd/plain.yaml`` on any stage config is exactly Hinton KD from the teachers.

Per training step the dense-guidance statistics go to ``distill_stats`` (logged per epoch by
:class:`~lightning_kd.callbacks.DistillationStats`): ``kd/teacher_j`` (mean KD value, kept or not),
``kept/teacher_j`` and ``dropped/teacher_j`` (counts of steps).

See :mod:`lightning_kd.methods.cdgkd.losses` for the formulas and the released code's defects we do not copy.
Validation / test: cross-entropy as ``<stage>/loss``, accuracy ``<stage>/acc`` and weighted F1 ``<stage>/F1``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

import torch
import torch.nn.functional as F
from lightning.pytorch.utilities import rank_zero_warn
from torch import Tensor, nn

from lightning_kd.checkpoint import ConfigError
from lightning_kd.data.batch import Batch
from lightning_kd.data.contract import DataNeeds
from lightning_kd.data.seeding import run_seed
from lightning_kd.distill.logit_kd import LogitKDMixin, LogitKDOptions
from lightning_kd.distill.teacher import TeacherMixin
from lightning_kd.methods.base import MethodModule
from lightning_kd.methods.cdgkd.losses import (
    CDGKDLossOptions,
    RunningPrototypes,
    dense_guidance,
    prototype_loss,
    teacher_keep_mask,
)
from lightning_kd.methods.cdgkd.model import CDGKDNet, CDGKDNetOptions, CDGKDOutput, role_inputs
from lightning_kd.metrics.classification import ClassificationMetrics
from lightning_kd.nn.tsception import TSceptionOptions
from lightning_kd.nn.visual_pyramid import VisualPyramidOptions
from lightning_kd.options import options, plain

__all__ = ["CDGKD"]

_NO_TEACHERS = ("teacher", "eeg")


class CDGKD(LogitKDMixin, TeacherMixin, MethodModule):
    """CDGKD teacher, teacher assistant, student or unimodal reference.

    Args:
        feature_dims / seq_lens: linked from the datamodule (``eeg``: channels / samples, ``face``: feature size /
            frames).
        role: ``teacher``, ``ta1``, ``ta2``, ``student`` or ``eeg`` (module docstring).
        teacher_ckpts: checkpoints of the earlier models that guide a ``ta1`` / ``ta2`` / ``student``
            (teacher first); refused for ``teacher`` and ``eeg`` unless ``logit_kd`` is set.
        save_teacher: also store the teachers' weights in this model's checkpoints.
        eeg: :class:`~lightning_kd.nn.tsception.TSceptionOptions` (the teacher's; the assistants shrink it by
            ``net.ta1_windows`` / ``net.ta2_windows`` / ``net.ta_spatial``).
        visual: :class:`~lightning_kd.nn.visual_pyramid.VisualPyramidOptions`.
        net: :class:`~lightning_kd.methods.cdgkd.model.CDGKDNetOptions` (head, assistants).
        loss: :class:`~lightning_kd.methods.cdgkd.losses.CDGKDLossOptions`.
        seed: key of the teacher-drop stream; ``None`` = the run's seed (``--seed_everything``).
        logit_kd: plain logit KD added to the objective (:class:`~lightning_kd.distill.logit_kd.LogitKDOptions`,
            ``configs/kd/plain.yaml``); None: none.
        lr, weight_decay, lr_factor, lr_patience, lr_scheduler: Adam (+ optional plateau schedule on ``val/loss``).
    """

    teacher_methods = ("lightning_kd.methods.cdgkd.module.CDGKD",)

    @classmethod
    def data_needs(cls, hparams: Mapping[str, Any]) -> DataNeeds:
        """``face`` and ``eeg`` (teacher, assistants), ``face`` (student), ``eeg`` (eeg); binary labels."""
        return DataNeeds(inputs=role_inputs(str(hparams.get("role", "teacher"))), targets=("binary",))

    def __init__(
        self,
        feature_dims: dict[str, int],
        seq_lens: dict[str, int] | None = None,
        role: Literal["teacher", "ta1", "ta2", "student", "eeg"] = "teacher",
        teacher_ckpts: list[str] | None = None,
        save_teacher: bool = False,
        eeg: TSceptionOptions = TSceptionOptions(),  # noqa: B008 - frozen dataclass, shown by --print_config
        visual: VisualPyramidOptions = VisualPyramidOptions(),  # noqa: B008
        net: CDGKDNetOptions = CDGKDNetOptions(),  # noqa: B008
        loss: CDGKDLossOptions = CDGKDLossOptions(),  # noqa: B008
        seed: int | None = None,
        lr: float = 1e-4,
        weight_decay: float = 0.0,
        lr_factor: float = 0.5,
        lr_patience: int = 5,
        lr_scheduler: Literal["plateau", "none"] = "none",
        logit_kd: LogitKDOptions | None = None,
    ) -> None:
        super().__init__(lr, weight_decay, lr_factor, lr_patience, lr_scheduler)
        eeg, visual = options(TSceptionOptions, eeg), options(VisualPyramidOptions, visual)
        net, loss = options(CDGKDNetOptions, net), options(CDGKDLossOptions, loss)
        self.save_hyperparameters()
        self.save_options(eeg=eeg, visual=visual, net=net, loss=loss)
        self.role, self.loss_options, self.seed = role, loss, seed
        self.net = CDGKDNet(feature_dims, seq_lens, role, eeg, visual, net)
        self.modalities = self.net.inputs
        self.init_teachers(teacher_ckpts, save_teacher)
        self.init_logit_kd(logit_kd)
        if self.logit_kd is not None:
            self.hparams["logit_kd"] = plain(self.logit_kd)
        # rebalancing: coefficients set by ModalityRebalancing; sums of p^m(true class) accumulated per epoch
        self.rebalance = dict.fromkeys(self.modalities, 0.0)
        self.prototypes = nn.ModuleDict()
        if len(self.modalities) > 1 and loss.alpha > 0 and loss.prototypes == "running":
            self.prototypes.update({m: RunningPrototypes(net.classes, self.net.encoders[m].out_dim, loss.momentum)
                                    for m in self.modalities})
        self._prob_sums: dict[str, list[Any]] = {m: [0.0, 0] for m in self.modalities}
        self.val_metrics = ClassificationMetrics("binary")
        self.test_metrics = ClassificationMetrics("binary")

    def setup(self, stage: str) -> None:
        """Check the role against the teachers before fitting (one line through the CLI)."""
        if stage == "fit" and self.role in _NO_TEACHERS and self.teacher_ckpts and self.logit_kd is None:
            raise ConfigError(f"CDGKD role {self.role!r} trains without teachers: remove "
                              "model.init_args.teacher_ckpts, set role to ta1, ta2 or student, or add plain logit KD "
                              "(-c configs/kd/plain.yaml)")
        super().setup(stage)

    def allowed_teacher_methods(self) -> tuple[str, ...]:
        """CDGKD checkpoints; with ``logit_kd``, any method with ``class_logits`` (the plain-KD contract)."""
        return () if self.logit_kd is not None else self.teacher_methods

    # -- rebalancing (lightning_kd.callbacks.rebalancing.Rebalanceable) ------------------------------------
    def true_class_prob_sums(self) -> dict[str, tuple[float, int]]:
        """Modality -> (sum of prototype p^m(true class), samples) over this epoch's training batches so far."""
        return {m: (float(s), int(n)) for m, (s, n) in self._prob_sums.items()} if len(self.modalities) > 1 else {}

    def reset_true_class_probs(self) -> None:
        self._prob_sums = {m: [0.0, 0] for m in self.modalities}

    def set_rebalance_coefficients(self, coefficients: Mapping[str, float]) -> None:
        unknown = sorted(set(coefficients) - set(self.modalities))
        if unknown:
            raise ConfigError(f"CDGKD role {self.role!r} has modalities {list(self.modalities)}, not {unknown}; set "
                              "ModalityRebalancing's init_args.modalities to them")
        self.rebalance.update({m: float(v) for m, v in coefficients.items()})

    # -- forward ------------------------------------------------------------------------------------------
    def forward(self, batch: Batch) -> CDGKDOutput:
        return self.net(batch.inputs)

    def class_logits(self, batch: Batch) -> Tensor:
        """``(B, 2)`` class logits (low / high), the interface of plain logit KD."""
        return self(batch).logits

    # -- training -----------------------------------------------------------------------------------------
    def drop_seed(self) -> int:
        return int(self.seed) if self.seed is not None else run_seed()

    def training_losses(self, batch: Batch) -> dict[str, Tensor]:
        labels = batch.target.long()
        out = self(batch)
        teachers: list[Tensor] = []
        if self.role not in _NO_TEACHERS and self.logit_kd is None and self.teachers:  # logit_kd: plain KD only
            teachers = self.teachers_forward(lambda t: t.class_logits(batch))
        o = self.loss_options
        keep = teacher_keep_mask(self.drop_seed(), self.global_step, len(teachers), o.drop_prob, out.logits.device)
        terms = dense_guidance(out.logits, labels, teachers, keep, o.ce_weight, o.temperature)
        stats = self.distill_stats
        for j in range(len(teachers)):
            stats.add(f"kd/teacher_{j}", terms[f"kd/teacher_{j}"])
            stats.count(f"kept/teacher_{j}", keep[j])
            stats.count(f"dropped/teacher_{j}", ~keep[j])
        if len(self.modalities) > 1 and o.alpha > 0:
            proto = out.logits.new_zeros(())
            for m in self.modalities:
                z = out.features[m]
                running = self.prototypes[m] if m in self.prototypes else None
                protos = running.current(z, labels) if running is not None else None
                term, p_true = prototype_loss(z, labels, self.net.net_options.classes, o.distance, protos)
                if running is not None:
                    running.update(z, labels)
                acc = self._prob_sums[m]
                acc[0] = acc[0] + p_true.sum().double()  # a tensor: no device sync per step
                acc[1] += int(p_true.numel())
                terms[f"proto/{m}"] = term.detach()
                terms[f"p_true/{m}"] = p_true.mean()
                proto = proto + self.rebalance[m] * term
            terms["loss"] = terms["loss"] + o.alpha * proto
        terms["class_logits"] = out.logits  # for logit_kd (same forward pass); not logged
        return terms

    def on_train_start(self) -> None:
        from lightning_kd.callbacks.rebalancing import ModalityRebalancing

        balanced = any(isinstance(cb, ModalityRebalancing) for cb in self.trainer.callbacks)
        if self.role == "teacher" and self.loss_options.alpha > 0 and not balanced:
            rank_zero_warn("CDGKD teacher without the ModalityRebalancing callback: beta = gamma = 0, so the "
                           "prototype terms never act; add lightning_kd.callbacks.rebalancing.ModalityRebalancing "
                           "to trainer.callbacks (see configs/cdgkd/*_teacher.yaml).")
        if self.role not in _NO_TEACHERS and not self.teachers:
            alone = " (the video-only reference)" if self.role == "student" else ""
            rank_zero_warn(f"CDGKD role {self.role!r} without teacher_ckpts trains on cross-entropy alone{alone}.")

    # -- evaluation ---------------------------------------------------------------------------------------
    def _eval_step(self, batch: Batch, stage: str, metrics: ClassificationMetrics) -> None:
        logits = self.class_logits(batch)
        self.log(f"{stage}/loss", F.cross_entropy(logits.float(), batch.target.long()), on_step=False,
                 on_epoch=True, batch_size=len(batch), sync_dist=True)
        metrics.update(logits.argmax(-1), batch.target)

    def predict_step(self, batch: Batch, batch_idx: int) -> dict[str, Tensor]:
        """Predicted class (1 = high rating) per sample."""
        with torch.no_grad():
            pred = self.class_logits(batch).argmax(-1)
        return {"index": batch.index, "prediction": pred.float(), "target": batch.target}
