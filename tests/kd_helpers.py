"""A tiny test-only classification method (binary sentiment from mean-pooled inputs of its choice) with teachers
and plain logit KD, for the multi-teacher, pipeline and logit-KD tests; and writers of its stage configs."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
import yaml
from torch import Tensor, nn

from lightning_kd.data.batch import Batch
from lightning_kd.data.contract import DataNeeds
from lightning_kd.distill.logit_kd import LogitKDMixin, LogitKDOptions
from lightning_kd.distill.teacher import TeacherMixin
from lightning_kd.methods.base import MethodModule
from lightning_kd.metrics.classification import ClassificationMetrics
from lightning_kd.options import plain

METHOD = "kd_helpers.TinyClassifier"
ALL = ("text", "audio", "vision")


class TinyClassifier(LogitKDMixin, TeacherMixin, MethodModule):
    """Linear-ReLU-linear on the time means of ``inputs``; class = score >= 0."""

    @classmethod
    def data_needs(cls, hparams: Mapping[str, Any]) -> DataNeeds:
        return DataNeeds(inputs=tuple(hparams.get("inputs") or ALL), targets=("score", "binary"))

    def __init__(self, feature_dims: dict[str, int], seq_lens: dict[str, int] | None = None,
                 inputs: Sequence[str] = ALL, hidden: int = 8, teacher_ckpt: str | None = None,
                 teacher_ckpts: list[str] | None = None, save_teacher: bool = False,
                 logit_kd: LogitKDOptions | None = None, lr: float = 1e-2) -> None:
        super().__init__(lr=lr, lr_scheduler="none")
        self.save_hyperparameters()
        self.inputs = list(inputs)
        self.net = nn.Sequential(nn.Linear(sum(feature_dims[m] for m in self.inputs), hidden), nn.ReLU(),
                                 nn.Linear(hidden, 2))
        self.init_teachers(teacher_ckpts, save_teacher, teacher_ckpt=teacher_ckpt)
        self.init_logit_kd(logit_kd)
        self.hparams["logit_kd"] = plain(self.logit_kd)
        self.val_metrics = ClassificationMetrics("binary_sentiment")
        self.test_metrics = ClassificationMetrics("binary_sentiment")

    @staticmethod
    def labels(batch: Batch) -> Tensor:
        return (batch.target.reshape(-1) >= 0).long()

    def class_logits(self, batch: Batch) -> Tensor:
        return self.net(torch.cat([batch.inputs[m].float().mean(1) for m in self.inputs], -1))

    def training_losses(self, batch: Batch) -> dict[str, Tensor]:
        logits = self.class_logits(batch)
        return {"loss": F.cross_entropy(logits, self.labels(batch)), "class_logits": logits}

    def _eval_step(self, batch: Batch, stage: str, metrics: ClassificationMetrics) -> None:
        logits = self.class_logits(batch)
        self.log(f"{stage}/loss", F.cross_entropy(logits, self.labels(batch)), on_step=False, on_epoch=True,
                 batch_size=len(batch))
        metrics.update(logits.argmax(-1), batch.target)


def write_stage(path: Path, data: Path, inputs: Sequence[str] = ALL, teacher_stages: list[str] | None = None,
                logit_kd: dict[str, float] | None = None, method: str = "tiny", extra: dict | None = None) -> Path:
    """A stage config for :class:`TinyClassifier` on an MMSA file: best + last checkpoints, test after fit."""
    cfg: dict[str, Any] = {
        "seed_everything": 7, "test_after_fit": True,
        "trainer": {"accelerator": "cpu", "devices": 1, "max_epochs": 1, "limit_train_batches": 2,
                    "limit_val_batches": 1, "limit_test_batches": 1, "num_sanity_val_steps": 0,
                    "enable_progress_bar": False, "enable_model_summary": False, "log_every_n_steps": 1,
                    "logger": {"class_path": "lightning.pytorch.loggers.CSVLogger",
                               "init_args": {"save_dir": "runs", "name": f"{method}/{path.stem}"}},
                    "callbacks": [
                        {"class_path": "lightning.pytorch.callbacks.ModelCheckpoint",
                         "init_args": {"monitor": "val/loss", "mode": "min", "save_top_k": 1}},
                        {"class_path": "lightning.pytorch.callbacks.ModelCheckpoint",
                         "init_args": {"filename": "last", "monitor": None, "enable_version_counter": False}}]},
        "model": {"class_path": METHOD, "init_args": {"inputs": list(inputs), "logit_kd": logit_kd}},
        "data": {"class_path": "lightning_kd.data.formats.mmsa.MMSADataModule",
                 "init_args": {"path": str(data), "batch_size": 8}},
    }
    if teacher_stages is not None:
        cfg["teacher_stages"] = teacher_stages
    for k, v in (extra or {}).items():
        cfg[k] = v
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path
