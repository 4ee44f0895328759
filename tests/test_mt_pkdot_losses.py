"""MT-PKDOT objectives against hand-computed values (the OT term itself: tests/test_structural_ot.py)."""

from __future__ import annotations

import math

import pytest
import torch

from lightning_kd.checkpoint import ConfigError
from lightning_kd.methods.mt_pkdot.losses import (
    MTPKDOTLossOptions,
    batch_ccc_loss,
    feature_kd,
    loss_options,
    student_loss,
    task_loss,
)


def test_batch_ccc_loss_by_hand() -> None:
    # column 0: pred = target -> CCC 1; column 1: x = (0, 1, 2), y = (1, 1, 4): means 1, 2; var_x 2/3, var_y 2,
    # cov ((-1)(-1) + 0 + (1)(2)) / 3 = 1; CCC = 2 / (2/3 + 2 + 1) = 6 / 11
    pred = torch.tensor([[0.1, 0.0], [0.5, 1.0], [-0.3, 2.0]])
    target = torch.tensor([[0.1, 1.0], [0.5, 1.0], [-0.3, 4.0]])
    assert float(batch_ccc_loss(pred, target)) == pytest.approx(1 - (1 + 6 / 11) / 2, abs=1e-6)
    assert float(task_loss(pred, target, "ccc")) == pytest.approx(1 - (1 + 6 / 11) / 2, abs=1e-6)
    assert float(task_loss(pred, target, "mse")) == pytest.approx((1 + 0 + 4) / 6)


def test_task_cross_entropy_by_hand() -> None:
    logits = torch.tensor([[2.0, 0.0], [0.0, 0.0]])
    expected = (math.log1p(math.exp(-2)) + math.log(2)) / 2
    assert float(task_loss(logits, torch.tensor([0, 1]), "ce")) == pytest.approx(expected)
    with pytest.raises(ConfigError, match="loss.task"):
        task_loss(logits, torch.tensor([0, 1]), "hinge")  # type: ignore[arg-type]


def test_feature_kd_by_hand_and_teacher_detached() -> None:
    teacher = torch.tensor([[1.0, 0.0], [0.0, 2.0]], requires_grad=True)
    student = torch.tensor([[1.0, 1.0], [0.0, -3.0]], requires_grad=True)
    # cos: 1/sqrt(2) and -1 -> mean(1 - cos) = (1 - 1/sqrt(2) + 2) / 2
    kd = feature_kd(teacher, student, "cosine")
    assert kd.item() == pytest.approx((3 - 1 / math.sqrt(2)) / 2)
    kd.backward()
    assert teacher.grad is None and student.grad is not None and student.grad.abs().sum() > 0
    assert feature_kd(teacher, student, "mse").item() == pytest.approx((0 + 1 + 0 + 25) / 4)


def test_student_loss_weights() -> None:
    task, kd, centroid = torch.tensor(0.5), torch.tensor(2.0), torch.tensor(3.0)
    o = MTPKDOTLossOptions()  # 0.8 task + 0.2 kd, centroid off (released student)
    assert float(student_loss(task, kd, centroid, o)) == pytest.approx(0.8 * 0.5 + 0.2 * 2.0)
    o = MTPKDOTLossOptions(centroid_weight=0.2)  # the paper's optional centroid term
    assert float(student_loss(task, kd, centroid, o)) == pytest.approx(0.4 + 0.4 + 0.6)
    o = MTPKDOTLossOptions(ce_weight=1.0, kd_weight=0.6)  # PKDOT
    assert float(student_loss(task, kd, None, o)) == pytest.approx(0.5 + 1.2)
    o = MTPKDOTLossOptions(kd="none")
    assert float(student_loss(task, None, None, o)) == pytest.approx(0.4)


def test_loss_options_from_plain_data_and_refusals() -> None:
    o = loss_options({"teachers": ["joint"], "ot": {"k": 5}})
    assert o.teachers == ("joint",) and o.ot.k == 5 and o.ot.blur == 0.1
    with pytest.raises(ConfigError, match="loss.teachers"):
        loss_options({"teachers": ["joint", "audio"]})
    with pytest.raises(ConfigError, match="loss.kd"):
        loss_options({"kd": "kl"})
    with pytest.raises(ConfigError, match="loss.task"):
        loss_options({"task": "bce"})
