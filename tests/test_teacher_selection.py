"""MT-PKDOT per-batch teacher selection (lowest head loss), checked by hand, and its per-epoch counts."""

import math

import pytest
import torch
import torch.nn.functional as F

from lightning_kd.distill import DistillStats
from lightning_kd.distill.teacher_selection import select_teacher

# three heads on a 2-sample batch: confident-right (margin 2), uninformative, confident-right (margin 5)
HEADS = [torch.tensor([[2.0, 0.0], [0.0, 2.0]]), torch.zeros(2, 2), torch.tensor([[5.0, 0.0], [0.0, 5.0]])]


def test_lowest_cross_entropy_wins_by_hand() -> None:
    index, ces = select_teacher(HEADS, torch.tensor([0, 1]))
    # CE of a right answer with margin m: log(1 + e^-m); a wrong one: log(1 + e^m); zero logits: log 2
    assert ces.tolist() == pytest.approx([math.log1p(math.exp(-2)), math.log(2), math.log1p(math.exp(-5))])
    assert int(index) == 2 and index.ndim == 0
    index, ces = select_teacher(HEADS, torch.tensor([1, 0]))  # both confident heads are now wrong
    assert ces.tolist() == pytest.approx([math.log1p(math.exp(2)), math.log(2), math.log1p(math.exp(5))])
    assert int(index) == 1


def test_ties_go_to_the_first_teacher_and_nothing_is_differentiated() -> None:
    heads = [torch.zeros(3, 4, requires_grad=True), torch.zeros(3, 4, requires_grad=True)]
    index, ces = select_teacher(heads, torch.tensor([0, 1, 2]))
    assert int(index) == 0 and not ces.requires_grad
    assert ces.tolist() == pytest.approx([math.log(4)] * 2)


def test_counts_per_teacher_including_zeros() -> None:
    stats = DistillStats()
    for labels in ([0, 1], [1, 0], [0, 1]):
        select_teacher(HEADS, torch.tensor(labels), stats)
    select_teacher(HEADS[:2], torch.tensor([0, 1]), stats)  # heads 0 and 1 only: 0 wins
    assert stats.kinds == {f"selected/teacher_{i}": "count" for i in range(3)}
    assert stats.compute() == {"selected/teacher_0": 1.0, "selected/teacher_1": 1.0, "selected/teacher_2": 2.0}


def test_regression_heads_with_another_loss() -> None:
    target = torch.tensor([[0.5, -0.5], [0.0, 1.0]])
    heads = [target + 0.3, target - 0.1, torch.zeros(2, 2)]
    index, losses = select_teacher(heads, target, loss_fn=F.mse_loss)
    assert losses.tolist() == pytest.approx([0.09, 0.01, (0.25 + 0.25 + 0 + 1) / 4])
    assert int(index) == 1


def test_no_teacher_is_an_error() -> None:
    with pytest.raises(ValueError, match="at least one"):
        select_teacher([], torch.tensor([0]))


def test_counts_by_name() -> None:
    stats = DistillStats()
    select_teacher(HEADS, torch.tensor([1, 0]), stats, prefix="selected/", names=("joint", "vis", "phy"))
    assert stats.compute() == {"selected/joint": 0.0, "selected/vis": 1.0, "selected/phy": 0.0}
    with pytest.raises(ValueError, match="2 names for 3"):
        select_teacher(HEADS, torch.tensor([1, 0]), stats, names=("a", "b"))
