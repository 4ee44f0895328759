"""LightningModule of CorrKD (Li et al., CVPR 2024): one class for both stages.

``role: teacher`` trains :class:`CorrKDNet` on complete data with cross-entropy. ``role: student``
trains a fresh :class:`CorrKDNet` on missing-modality batches (``data.init_args.train_missing``) with
cross-entropy plus SCD, CPD and RCD against the frozen teacher (``teacher_ckpt``), which sees the same
samples complete (``batch.complete()``). Only the student runs at test time.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from torch import Tensor

from lightning_kd.checkpoint import ConfigError
from lightning_kd.data.batch import Batch
from lightning_kd.data.contract import DataNeeds
from lightning_kd.distill.logit_kd import LogitKDMixin, LogitKDOptions
from lightning_kd.distill.teacher import TeacherMixin
from lightning_kd.methods.base import MethodModule
from lightning_kd.methods.corrkd.losses import CorrKDLossOptions, CorrKDObjective
from lightning_kd.methods.corrkd.model import CorrKDNet, CorrKDNetOptions, CorrKDOutput
from lightning_kd.metrics.classification import EMOTIONS, ClassificationMetrics
from lightning_kd.options import options, plain

__all__ = ["CorrKD"]

_TASKS = {"binary_sentiment": 1, "emotion": len(EMOTIONS)}


class CorrKD(LogitKDMixin, TeacherMixin, MethodModule):
    """CorrKD teacher or student.

    Args:
        feature_dims / seq_lens: linked from the datamodule by the CLI (``seq_lens`` is unused: positions
            are computed for any length).
        role: ``teacher`` (complete data, task loss only) or ``student`` (needs ``teacher_ckpt``).
        teacher_ckpt: checkpoint of a trained CorrKD teacher (student only).
        save_teacher: also store the teacher's weights in student checkpoints.
        task: ``binary_sentiment`` (MOSI/MOSEI; class = score >= 0, Has0/Non0 accuracy and weighted F1)
            or ``emotion`` (IEMOCAP; four binary emotion decisions, per-emotion accuracy and weighted F1).
        net: the :class:`CorrKDNetOptions` (architecture; teacher and student configs share them).
        loss: the :class:`CorrKDLossOptions` (distillation weights; used by the student).
        lr, weight_decay: Adam. lr_scheduler: ``"none"`` (default) = plain Adam at a constant lr. HRLF
            (NeurIPS 2024, same authors and setup; the source of the configs' lr / batch / epochs) reports
            Adam with lr 1e-3 / 2e-3 / 4e-3 (MOSI / MOSEI / IEMOCAP) and no learning-rate schedule; the
            CorrKD paper reports no optimiser settings. ``"plateau"`` adds ReduceLROnPlateau on validation
            cross-entropy with ``lr_factor`` / ``lr_patience`` (not in either paper; kept for experiments).
        teacher_ckpts: several teachers (instead of ``teacher_ckpt``). A student's CorrKD terms (SCD, CPD, RCD)
            use the first; plain logit KD uses all.
        logit_kd: plain logit KD (:class:`~lightning_kd.distill.logit_kd.LogitKDOptions`, ``configs/kd/plain.yaml``)
            from the teachers: ``loss = a * objective + (1 - a) * KD``. With ``role: teacher`` (the task loss alone)
            this is the "student + plain KD" baseline, and the teachers may be of any classification method with
            the same tasks; the teachers see complete data, as CorrKD's do.
    """

    teacher_methods = ("lightning_kd.methods.corrkd.module.CorrKD",)

    @classmethod
    def data_needs(cls, hparams: Mapping[str, Any]) -> DataNeeds:
        """Text, audio and vision; scores or binary labels (``binary_sentiment``) or emotions (``emotion``)."""
        emotion = hparams.get("task") == "emotion"
        return DataNeeds(inputs=("text|text_bert", "audio", "vision"),
                         targets=("emotions",) if emotion else ("score", "binary"))

    def __init__(
        self,
        feature_dims: dict[str, int],
        seq_lens: dict[str, int] | None = None,
        role: Literal["teacher", "student"] = "teacher",
        teacher_ckpt: str | None = None,
        save_teacher: bool = False,
        task: Literal["binary_sentiment", "emotion"] = "binary_sentiment",
        net: CorrKDNetOptions = CorrKDNetOptions(),  # noqa: B008 - frozen dataclass, shown by --print_config
        loss: CorrKDLossOptions = CorrKDLossOptions(),  # noqa: B008
        lr: float = 1e-3,
        weight_decay: float = 0.0,
        lr_factor: float = 0.5,
        lr_patience: int = 5,
        lr_scheduler: Literal["plateau", "none"] = "none",
        teacher_ckpts: list[str] | None = None,
        logit_kd: LogitKDOptions | None = None,
    ) -> None:
        super().__init__(lr, weight_decay, lr_factor, lr_patience, lr_scheduler)
        if task not in _TASKS:
            raise ValueError(f"task must be one of {sorted(_TASKS)}, got {task!r}")
        net, loss = options(CorrKDNetOptions, net), options(CorrKDLossOptions, loss)
        self.save_hyperparameters()
        self.save_options(net=net, loss=loss)
        self.role, self.task = role, task
        tasks = _TASKS[task]
        self.net = CorrKDNet(feature_dims, net, tasks=tasks, classes=2)
        self.objective = CorrKDObjective(tasks, 2, loss)
        if role == "teacher":
            self.objective.rcd.requires_grad_(False)  # unused without a teacher: keep it out of DDP and Adam
        self.init_teachers(teacher_ckpts, save_teacher, teacher_ckpt=teacher_ckpt)
        self.init_logit_kd(logit_kd)
        if self.logit_kd is not None:
            self.hparams["logit_kd"] = plain(self.logit_kd)
        self.val_metrics = ClassificationMetrics(task)
        self.test_metrics = ClassificationMetrics(task)

    def setup(self, stage: str) -> None:
        """Check the role before fitting (here, not in ``__init__``, so the CLI prints the message as one line)."""
        if stage == "fit":
            self.check_role()
        super().setup(stage)

    def check_role(self) -> None:
        """A student needs a teacher; a teacher must not have one (unless it learns from one by plain logit KD)."""
        role, teacher_ckpt = self.role, self.teacher_ckpt
        if role == "student" and not teacher_ckpt:
            raise ConfigError("CorrKD role 'student' distils from a teacher: set model.init_args.teacher_ckpt to the "
                              "checkpoint of a CorrKD teacher (configs/corrkd/*_teacher.yaml), or use "
                              "`lightning-kd pipeline` to run both stages")
        if role == "teacher" and teacher_ckpt and self.logit_kd is None:
            raise ConfigError("CorrKD role 'teacher' trains without a teacher: remove model.init_args.teacher_ckpt "
                              "(or teacher_ckpts), set model.init_args.role student, or add plain logit KD "
                              "(-c configs/kd/plain.yaml)")

    def allowed_teacher_methods(self) -> tuple[str, ...]:
        """A student's CorrKD terms read a CorrKD teacher's representation; plain logit KD alone (``role: teacher``
        + ``logit_kd``) takes any method with ``class_logits``."""
        return () if self.role == "teacher" else self.teacher_methods

    def kd_teacher_batch(self, batch: Batch) -> Batch:
        """The teachers see the complete batch (as in CorrKD's distillation)."""
        return batch.complete()

    def class_logits(self, batch: Batch) -> Tensor:
        """``(B, tasks, 2)`` class logits (the hook plain logit KD reads from students and teachers)."""
        return self(batch).logits

    # -- labels and predictions ---------------------------------------------------------------------
    def class_labels(self, target: Tensor) -> Tensor:
        """``(B, tasks)`` class indices: binary sentiment = score >= 0; emotions are given as 0/1."""
        if self.task == "binary_sentiment":
            return (target.reshape(-1) >= 0).long()[:, None] if target.is_floating_point() else target.reshape(-1, 1).long()
        return target.long()

    def forward(self, batch: Batch) -> CorrKDOutput:
        return self.net(batch.inputs, batch.masks)

    @staticmethod
    def _classes(logits: Tensor) -> Tensor:
        pred = logits.argmax(-1)  # (B, tasks)
        return pred[:, 0] if pred.shape[1] == 1 else pred

    # -- steps ------------------------------------------------------------------------------------------
    def training_losses(self, batch: Batch) -> dict[str, Tensor]:
        """The objective's terms on the (augmented) batch; a student's teacher sees the complete batch."""
        labels = self.class_labels(batch.target)
        student = self(batch)
        teacher = None
        if self.role == "student":
            full = batch.complete()
            teacher = self.teacher_forward(lambda t: t.net(full.inputs, full.masks))
        return {**self.objective(student, labels, teacher), "class_logits": student.logits}

    def _eval_step(self, batch: Batch, stage: str, metrics: ClassificationMetrics) -> None:
        out = self(batch)
        self.log(f"{stage}/loss", self.objective.task_loss(out, self.class_labels(batch.target)), on_step=False,
                 on_epoch=True, batch_size=len(batch), sync_dist=True)
        metrics.update(self._classes(out.logits), batch.target)

    def predict_step(self, batch: Batch, batch_idx: int) -> dict[str, Tensor]:
        """Predicted class per sample (binary sentiment: 1 = non-negative; IEMOCAP: 0/1 per emotion)."""
        return {"index": batch.index, "prediction": self._classes(self(batch).logits).float(), "target": batch.target}

    def on_train_start(self) -> None:
        if self.role == "student":
            dm = self.trainer.datamodule
            aug = getattr(dm, "train_missing", None)
            if aug is None or aug.is_identity:
                from lightning.pytorch.utilities import rank_zero_warn

                rank_zero_warn("CorrKD student without data.init_args.train_missing: it sees complete data like its "
                               "teacher, so the distillation only regularises; set train_missing (see "
                               "configs/corrkd/synthetic_student.yaml).")


