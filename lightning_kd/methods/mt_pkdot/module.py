"""LightningModule of MT-PKDOT (Aslam et al., arXiv 2408.09035): one class for every stage, chosen by ``role``.

What each role learns (networks: :mod:`lightning_kd.methods.mt_pkdot.model`; losses:
:mod:`lightning_kd.methods.mt_pkdot.losses`); the stages chain through ``teacher_ckpts`` (``lightning-kd pipeline``
passes them from ``teacher_stages``), and a stage copies the parts it builds on from its teachers, frozen:

* ``visual`` / ``privileged``: a unimodal backbone + head, task loss (``visual`` alone is the visual-only baseline).
* ``fusion`` (teachers: ``visual``, ``privileged``): frozen backbones, the fusion transformer, task loss.
* ``align`` (teacher: ``fusion``): frozen backbones; the fusion transformer (trained on, as released) and the
  adapters with the self-distillation loss ``0.5 (cosdist(A_v v, joint) + cosdist(A_p p, joint)) + 0.5 (task(joint)
  + 0.5 task_v + 0.5 task_p)``.
* ``hallucination`` (teachers: ``visual``, ``privileged``): frozen backbones; ``h`` with ``MSE(h(v), p)``.
* ``student`` (teachers: ``align`` (or ``fusion`` for PKDOT's joint teacher) and ``hallucination``): the visual
  backbone (frozen unless ``train_visual``) and ``h`` (frozen) copied from them; a fresh fusion transformer over
  ``(v_S, h(v_S))``. Per batch the candidate teacher with the lowest task loss is selected (counts in
  ``distill_stats`` as ``selected/<name>``, logged per epoch by :class:`~lightning_kd.callbacks.DistillationStats`),
  and ``loss = ce_weight task + kd_weight KD + centroid_weight centroid`` (``kd: ot`` structural OT between the
  batch similarity structures; ``cosine`` / ``mse`` direct feature KD; ``none``).

The student reads the visual input only: validate / test / predict need neither the privileged input nor the
teacher files. Frozen parts stay in eval mode and out of the optimiser.

Validation / test: ``<stage>/loss`` (task loss; MSE of ``h(v)`` for ``hallucination``) and, for classes ``acc`` /
``F1`` (weighted), for valence / arousal ``ccc_valence`` / ``ccc_arousal`` / ``ccc_mean``; ``hallucination``
reports ``mse`` and ``cos`` (mean cosine of ``h(v)`` and ``p``).
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor
from torchmetrics import MeanMetric, Metric, MetricCollection
from torchmetrics.classification import MulticlassAccuracy, MulticlassF1Score

from lightning_kd.checkpoint import ConfigError
from lightning_kd.data.batch import Batch
from lightning_kd.data.contract import DataNeeds
from lightning_kd.distill.alignment import alignment_loss
from lightning_kd.distill.structural_ot import StructuralOT
from lightning_kd.distill.teacher import TeacherError, TeacherMixin
from lightning_kd.distill.teacher_selection import select_teacher
from lightning_kd.methods.base import MethodModule
from lightning_kd.methods.mt_pkdot.losses import (
    MTPKDOTLossOptions,
    feature_kd,
    loss_options,
    student_loss,
    task_loss,
)
from lightning_kd.methods.mt_pkdot.model import (
    SOURCES,
    MTPKDOTNet,
    MTPKDOTNetOptions,
    MTPKDOTOutput,
    net_options,
    role_inputs,
)
from lightning_kd.metrics.ccc import ValenceArousalCCC
from lightning_kd.metrics.classification import ClassificationMetrics

__all__ = ["MTPKDOT"]

Role = Literal["visual", "privileged", "fusion", "align", "hallucination", "student"]
#: parts each role keeps frozen (copied from its teachers); the student's visual encoder unless ``train_visual``
_FROZEN = {"visual": (), "privileged": (), "fusion": ("encoders",), "align": ("encoders",),
           "hallucination": ("encoders",), "student": ("encoders", "hallucination")}
_TAUGHT = ("fusion", "align", "hallucination", "student")


class MTPKDOT(TeacherMixin, MethodModule):
    """An MT-PKDOT stage (module docstring).

    Args:
        feature_dims: linked from the datamodule (input name -> feature size; ``bio``: channels).
        seq_lens: linked from the datamodule (the biosignal ``envelope`` encoder reads the window length).
        role: ``visual``, ``privileged``, ``fusion``, ``align``, ``hallucination`` or ``student``.
        teacher_ckpts: the earlier stages this one builds on (see the module docstring); required for ``fusion``,
            ``align``, ``hallucination`` and ``student``.
        save_teacher: also store the teachers' weights in this model's checkpoints.
        train_visual: the student fine-tunes its visual backbone (released: frozen).
        init_fusion: the student's fusion transformer starts ``fresh`` (released) or from the multimodal
            ``teacher``'s (a warm start: ``(v, h(v))`` stands in for ``(v, p)``).
        net: :class:`~lightning_kd.methods.mt_pkdot.model.MTPKDOTNetOptions`.
        loss: :class:`~lightning_kd.methods.mt_pkdot.losses.MTPKDOTLossOptions`.
        lr, weight_decay, lr_factor, lr_patience, lr_scheduler: Adam (+ optional plateau schedule on ``val/loss``).
    """

    teacher_methods = ("lightning_kd.methods.mt_pkdot.module.MTPKDOT",)

    @classmethod
    def data_needs(cls, hparams: Mapping[str, Any]) -> DataNeeds:
        """The role's inputs (the student: the visual one, plus the privileged one for its teachers when fitting);
        classes (``task: ce``) or valence / arousal."""
        role = str(hparams.get("role", "visual"))
        net = net_options(hparams.get("net"))
        task = loss_options(hparams.get("loss")).task
        privileged = (net.privileged_input,) if role == "student" else ()
        targets = ("binary", "class_index") if task == "ce" else ("valence_arousal",)
        return DataNeeds(inputs=role_inputs(role, net.visual_input, net.privileged_input), privileged=privileged,
                         targets=targets)

    def __init__(
        self,
        feature_dims: dict[str, int],
        seq_lens: dict[str, int] | None = None,
        role: Role = "visual",
        teacher_ckpts: list[str] | None = None,
        save_teacher: bool = False,
        train_visual: bool = False,
        init_fusion: Literal["fresh", "teacher"] = "fresh",
        net: MTPKDOTNetOptions = MTPKDOTNetOptions(),  # noqa: B008 - frozen dataclass, shown by --print_config
        loss: MTPKDOTLossOptions = MTPKDOTLossOptions(),  # noqa: B008
        lr: float = 5e-4,
        weight_decay: float = 0.0,
        lr_factor: float = 0.5,
        lr_patience: int = 5,
        lr_scheduler: Literal["plateau", "none"] = "none",
    ) -> None:
        super().__init__(lr, weight_decay, lr_factor, lr_patience, lr_scheduler)
        net_o, loss_o = net_options(net), loss_options(loss)
        self.save_hyperparameters()
        self.save_options(net=net_o, loss=loss_o)
        if init_fusion not in ("fresh", "teacher"):
            raise ConfigError(f"model.init_args.init_fusion must be 'fresh' or 'teacher', got {init_fusion!r}")
        self.role, self.loss_options, self.train_visual = role, loss_o, bool(train_visual)
        self.init_fusion = init_fusion
        self.net = MTPKDOTNet(feature_dims, role, net_o, seq_lens)
        self.frozen = [p for p in _FROZEN[role] if not (role == "student" and p == "encoders" and train_visual)]
        for part in self.frozen:  # Lightning keeps each submodule's mode as set here (it never calls .train())
            getattr(self.net, part).requires_grad_(False).eval()
        self.structural_ot = StructuralOT(loss_o.ot) if role == "student" and loss_o.kd == "ot" else None
        self.init_teachers(teacher_ckpts, save_teacher)
        self._mm_teacher: int | None = None  # index of the multimodal teacher (student)
        self.val_metrics, self.test_metrics = self._metrics(), self._metrics()

    def _metrics(self) -> Metric:
        if self.role == "hallucination":
            return MetricCollection({"mse": MeanMetric(), "cos": MeanMetric()})
        if self.loss_options.task != "ce":
            return ValenceArousalCCC()
        k = self.net.options.outputs
        if k == 2:
            return ClassificationMetrics("binary")
        return MetricCollection({"acc": MulticlassAccuracy(k, average="micro"),
                                 "F1": MulticlassF1Score(k, average="weighted")})

    # -- stages: teachers give the parts this role builds on -------------------------------------------------
    def setup(self, stage: str) -> None:
        if stage == "fit" and self.role in _TAUGHT and not self.teacher_ckpts:
            need = " and ".join("/".join(r) for r in SOURCES[self.role])
            raise ConfigError(f"MT-PKDOT role {self.role!r} builds on the {need} stage(s): set "
                              "model.init_args.teacher_ckpts to their best checkpoints, or run the stage configs with "
                              "`lightning-kd pipeline` (configs/mt_pkdot/*_[0-9]*.yaml)")
        if stage == "fit" and self.role not in _TAUGHT and self.teacher_ckpts:
            raise ConfigError(f"MT-PKDOT role {self.role!r} trains without teachers: remove "
                              "model.init_args.teacher_ckpts")
        super().setup(stage)
        if stage == "fit" and self.frozen:  # the frozen parts are in eval mode on purpose: Lightning's notice is noise
            warnings.filterwarnings("ignore", message=r"Found \d+ module\(s\) in eval mode at the start of training",
                                    category=UserWarning)
        if stage == "fit" and self.teacher_ckpts:
            self.init_from_teachers()

    def _teacher_of(self, roles: tuple[str, ...]) -> int:
        found = [i for r in roles for i, t in enumerate(self.teachers) if getattr(t, "role", None) == r]
        if not found:
            have = [f"{self.teacher_ckpts[i]} ({getattr(t, 'role', '?')})" for i, t in enumerate(self.teachers)]
            raise TeacherError(f"MT-PKDOT role {self.role!r} needs a teacher of role {' or '.join(roles)}; "
                               f"model.init_args.teacher_ckpts holds {', '.join(have)}. Fix: add that stage's best "
                               "checkpoint (configs/mt_pkdot/*_[0-9]*.yaml, in order).")
        return found[0]

    def init_from_teachers(self) -> None:
        """Copy the parts of :data:`~lightning_kd.methods.mt_pkdot.model.SOURCES` from the teachers into this
        network (a resumed fit then restores its own checkpoint over them)."""
        own = self.net.state_dict()
        sources = dict(SOURCES[self.role])
        if self.role == "student" and self.init_fusion == "teacher":
            sources[("align", "fusion")] = (*sources[("align", "fusion")], "fusion.")
        for roles, prefixes in sources.items():
            i = self._teacher_of(roles)
            teacher, path = self.teachers[i], self.teacher_ckpts[i]
            theirs = teacher.net.state_dict()
            for prefix in prefixes:
                want = {k: v for k, v in own.items() if k.startswith(prefix)}
                got = {k: v for k, v in theirs.items() if k.startswith(prefix)}
                bad = sorted(set(want) ^ set(got)) or [k for k in want if want[k].shape != got[k].shape]
                if bad:
                    raise TeacherError(f"teacher {path} ({teacher.role}) holds {prefix.rstrip('.')} of another size or "
                                       f"architecture than this {self.role} stage (first difference: {bad[0]}). Fix: "
                                       "give every stage the same model.init_args.net (layer the same -c files on "
                                       "all of them).")
                self.net.load_state_dict(got, strict=False)
        if self.role == "student":
            self._mm_teacher = self._teacher_of(("align", "fusion"))
            mm = self.teachers[self._mm_teacher]
            if mm.role == "fusion" and any(t != "joint" for t in self.loss_options.teachers):
                raise TeacherError(f"teacher {self.teacher_ckpts[self._mm_teacher]} is a fusion stage: it has the "
                                   "joint teacher only, not the adapted ones. Fix: set model.init_args.loss.teachers "
                                   "to [joint] (PKDOT), or teach with the align stage's checkpoint.")

    def train(self, mode: bool = True) -> Any:
        """Frozen parts stay in eval mode (BatchNorm statistics, dropout)."""
        out = super().train(mode)
        for part in getattr(self, "frozen", ()):
            getattr(self.net, part).eval()
        return out

    # -- forward ----------------------------------------------------------------------------------------------
    def forward(self, batch: Batch) -> MTPKDOTOutput:
        return self.net(batch.inputs, batch.masks)

    def predictions(self, batch: Batch) -> Tensor:
        """Class logits ``(B, C)`` or valence / arousal ``(B, 2)`` of the role's prediction."""
        return self(batch).logits

    # -- training ---------------------------------------------------------------------------------------------
    def _task(self, logits: Tensor, target: Tensor) -> Tensor:
        return task_loss(logits, target, self.loss_options.task)

    def training_losses(self, batch: Batch) -> dict[str, Tensor]:
        o, y = self.loss_options, batch.target
        out = self(batch)
        if self.role == "hallucination":
            mse = F.mse_loss(out.embeddings["hallucinated"].float(), out.embeddings["privileged"].detach().float())
            return {"loss": mse}
        if self.role == "align":
            e, z = out.embeddings, out.logits_by_name
            t = alignment_loss(e["adapted_visual"], e["adapted_privileged"], e["joint"], z["joint"],
                               z["adapted_visual"], z["adapted_privileged"], y, o.align_weight, o.task_weight,
                               o.head_weight, task_loss=self._task)
            return {"loss": t.total, "align/visual": t.align_v.detach(), "align/privileged": t.align_p.detach(),
                    "task/joint": t.task_joint.detach(), "task/visual": t.task_v.detach(),
                    "task/privileged": t.task_p.detach()}
        task = self._task(out.logits, y)
        if self.role != "student":
            return {"loss": task}
        terms = {"task": task.detach()}
        kd = centroid = None
        if o.kd != "none":
            _, emb_t = self.selected_teacher(batch)
            emb_s = out.embeddings["joint"]
            if o.kd == "ot":
                st = self.structural_ot(emb_t, emb_s)
                kd, centroid = st.ot, st.centroid
                terms["centroid"] = centroid.detach()
            else:
                kd = feature_kd(emb_t, emb_s, o.kd)
            terms["kd"] = kd.detach()
            self.distill_stats.add("kd", kd)
        terms["loss"] = student_loss(task, kd, centroid, o)
        return terms

    def selected_teacher(self, batch: Batch) -> tuple[Tensor, Tensor]:
        """The candidate teacher with the lowest task loss on the batch (counted in ``distill_stats``) and its
        embedding ``(B, dim)`` (no graph)."""
        if self._mm_teacher is None:  # teachers attached outside trainer.fit (attach_teachers)
            self._mm_teacher = self._teacher_of(("align", "fusion"))
        teacher = self.teachers[self._mm_teacher]
        names = self.loss_options.teachers
        with torch.no_grad():
            if teacher.training:
                teacher.eval()
            t = teacher(batch)
        logits = [t.logits_by_name[n] for n in names]
        index, _ = select_teacher(logits, batch.target, self.distill_stats, loss_fn=self._task, prefix="selected/",
                                  names=names)
        emb = torch.stack([t.embeddings[n] for n in names])[index]
        return index, emb

    # -- evaluation -------------------------------------------------------------------------------------------
    def _eval_step(self, batch: Batch, stage: str, metrics: Metric) -> None:
        out = self(batch)
        n = len(batch)
        if self.role == "hallucination":
            h, p = out.embeddings["hallucinated"].float(), out.embeddings["privileged"].float()
            mse = F.mse_loss(h, p)
            self.log(f"{stage}/loss", mse, on_step=False, on_epoch=True, batch_size=n, sync_dist=True)
            metrics["mse"].update(mse, n)
            metrics["cos"].update(F.cosine_similarity(h, p, dim=1).mean(), n)
            return
        self.log(f"{stage}/loss", self._task(out.logits, batch.target), on_step=False, on_epoch=True,
                 batch_size=n, sync_dist=True)
        if self.loss_options.task == "ce":
            metrics.update(out.logits.argmax(-1), batch.target.long())
        else:
            metrics.update(out.logits.float(), batch.target.float())

    def predict_step(self, batch: Batch, batch_idx: int) -> dict[str, Tensor]:
        """Predicted class, or predicted (valence, arousal), per sample."""
        with torch.no_grad():
            z = self.predictions(batch)
        pred = z.argmax(-1).float() if self.loss_options.task == "ce" else z.float()
        return {"index": batch.index, "prediction": pred, "target": batch.target}
