import math

import pytest
import torch

from lightning_kd.distill.logit_kd import kd_kl


def test_kd_kl_by_hand():
    s = torch.tensor([[0.0, 2.0]], requires_grad=True)
    t = torch.tensor([[2.0, 0.0]])
    # T = 2: p_t = softmax([1, 0]) = (e/(e+1), 1/(e+1)); p_s = softmax([0, 1]) = (1/(e+1), e/(e+1))
    a, b = math.e / (math.e + 1), 1 / (math.e + 1)
    kl = a * math.log(a / b) + b * math.log(b / a)
    assert kd_kl(s, t, 2.0).item() == pytest.approx(4 * kl, rel=1e-6)
    kd_kl(s, t, 2.0).backward()
    # d/ds of T^2 KL = T * (p_s - p_t)
    assert torch.allclose(s.grad, torch.tensor([[2 * (b - a), 2 * (a - b)]]), atol=1e-6)


def test_kd_kl_zero_for_equal_logits_and_teacher_gets_no_gradient():
    s = torch.randn(4, 3, requires_grad=True)
    t = s.detach().clone().requires_grad_(True)
    loss = kd_kl(s, t, 3.0)
    assert loss.item() == pytest.approx(0.0, abs=1e-6)
    (kd_kl(s, t + 1.0 * torch.arange(3.0), 3.0)).backward()
    assert t.grad is None


def test_kd_kl_refuses_bad_input():
    with pytest.raises(ValueError, match="temperature"):
        kd_kl(torch.zeros(1, 2), torch.zeros(1, 2), 0.0)
    with pytest.raises(ValueError, match="shape"):
        kd_kl(torch.zeros(1, 2), torch.zeros(1, 3))
