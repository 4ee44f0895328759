"""MT-PKDOT teacher blocks: fusion transformer (gated cross-attention), adapters, the self-distillation (alignment)
loss and the biosignal encoders, checked by hand on tiny sizes."""

import math

import pytest
import torch
from torch import nn

from lightning_kd.checkpoint import ConfigError
from lightning_kd.distill.alignment import alignment_loss, cosine_distance
from lightning_kd.nn.biosignal import BiosignalEncoder, log_spectrogram
from lightning_kd.nn.fusion_transformer import Adapter, FusionTransformer

TINY = {"dim": 8, "heads": 2, "ff": 16}


def _fusion(**kw) -> FusionTransformer:
    torch.manual_seed(0)
    return FusionTransformer(3, opts=TINY, **kw).eval()


def test_shapes_vectors_sequences_and_projections() -> None:
    m = _fusion()
    out = m(torch.randn(4, 8), torch.randn(4, 8))
    assert out.logits.shape == (4, 3) and out.joint.shape == (4, 8) and out.gate.shape == (4, 1, 1)
    out = m(torch.randn(4, 5, 8), torch.randn(4, 5, 8))
    assert out.joint.shape == (4, 8) and out.gate.shape == (4, 5, 1)
    proj = FusionTransformer(2, visual_dim=6, privileged_dim=10, opts=TINY, gate="vector")
    out = proj(torch.randn(4, 6), torch.randn(4, 10))
    assert out.logits.shape == (4, 2) and out.gate.shape == (4, 1, 8)
    with pytest.raises(ValueError, match="same"):
        m(torch.randn(4, 5, 8), torch.randn(4, 3, 8))
    with pytest.raises(ConfigError, match="divide"):
        FusionTransformer(2, opts=TINY, heads=3)


def _value_path(attn: nn.MultiheadAttention, x: torch.Tensor) -> torch.Tensor:
    """Attention over ONE key: softmax = 1, the output is out_proj(value_proj(key/value))."""
    d = attn.embed_dim
    w, b = attn.in_proj_weight[2 * d:], attn.in_proj_bias[2 * d:]
    return attn.out_proj(x @ w.T + b)


@pytest.mark.parametrize("bias, weight_v", [(50.0, 1.0), (-50.0, 0.0), (0.0, 0.5)])
def test_gated_combination_by_hand(bias: float, weight_v: float) -> None:
    m = _fusion()
    with torch.no_grad():
        m.gate.weight.zero_()
        m.gate.bias.fill_(bias)  # g = sigmoid(bias): 1, 0, 0.5
    v, p = torch.randn(4, 8), torch.randn(4, 8)
    with torch.no_grad():
        out = m(v, p)
        ve, pe = m.self_v(v.unsqueeze(1)), m.self_p(p.unsqueeze(1))
        c_v = _value_path(m.cross_v, ve).squeeze(1)  # c_v = Attn(q=p, k=v=v): the visual content
        c_p = _value_path(m.cross_p, pe).squeeze(1)
    joint = weight_v * c_v + (1 - weight_v) * c_p
    assert torch.allclose(out.joint, joint, atol=1e-5)
    assert torch.allclose(out.logits, m.head(joint), atol=1e-5)


def test_attention_stays_within_a_sample() -> None:
    # the released code attends across the batch; here sample 0 does not depend on the others
    m = _fusion()
    v, p = torch.randn(4, 3, 8), torch.randn(4, 3, 8)
    v2, p2 = v.clone(), p.clone()
    v2[1:], p2[1:] = torch.randn(3, 3, 8), torch.randn(3, 3, 8)
    with torch.no_grad():
        assert torch.allclose(m(v, p).joint[0], m(v2, p2).joint[0], atol=1e-6)
        assert not torch.allclose(m(v, p).joint[1], m(v2, p2).joint[1], atol=1e-3)


def test_adapter_is_two_linear_layers_and_a_head() -> None:
    torch.manual_seed(1)
    a = Adapter(2, dim=6, hidden=3)
    x = torch.randn(5, 6)
    logits, adapted = a(x)
    l1, l2 = a.adapt[0], a.adapt[2]
    by_hand = (x @ l1.weight.T + l1.bias) @ l2.weight.T + l2.bias
    assert torch.allclose(adapted, by_hand, atol=1e-6)
    assert torch.allclose(logits, adapted @ a.head.weight.T + a.head.bias, atol=1e-6)
    assert l1.weight.shape == (3, 6) and l2.weight.shape == (6, 3)
    assert isinstance(Adapter(2, activation=True).adapt[1], nn.ReLU)


def test_alignment_loss_by_hand() -> None:
    joint = torch.tensor([[1.0, 0.0], [0.0, 1.0]], requires_grad=True)
    adapted_v = torch.tensor([[2.0, 0.0], [0.0, 3.0]])   # parallel: cos 1, distance 0
    adapted_p = torch.tensor([[0.0, 1.0], [-1.0, 0.0]])  # orthogonal: cos 0, distance 1
    labels = torch.tensor([0, 1])
    right = torch.tensor([[2.0, 0.0], [0.0, 2.0]])       # CE log(1 + e^-2)
    terms = alignment_loss(adapted_v, adapted_p, joint, right, torch.zeros(2, 2), right.flip(1), labels)
    terms.total.backward()
    assert joint.grad is not None and joint.grad.abs().sum() > 0  # the joint embedding is trained too
    terms = type(terms)(*(t.detach() for t in terms))
    assert float(terms.align_v) == pytest.approx(0.0, abs=1e-7) and float(terms.align_p) == pytest.approx(1.0)
    ce_right, ce_wrong = math.log1p(math.exp(-2)), math.log1p(math.exp(2))
    assert [float(terms.task_joint), float(terms.task_v), float(terms.task_p)] == pytest.approx(
        [ce_right, math.log(2), ce_wrong])
    expected = 0.5 * (0.0 + 1.0) + 0.5 * (ce_right + 0.5 * math.log(2) + 0.5 * ce_wrong)
    assert float(terms.total) == pytest.approx(expected)
    assert float(cosine_distance(-adapted_v, adapted_v)) == pytest.approx(2.0)


def test_log_spectrogram_peak_and_shape() -> None:
    t = torch.arange(512, dtype=torch.float32)
    x = torch.stack([torch.cos(2 * math.pi * 8 * t / 64), torch.cos(2 * math.pi * 3 * t / 64)]).unsqueeze(0)
    spec = log_spectrogram(x, n_fft=64, hop=16)
    assert spec.shape == (1, 2, 33, 1 + 512 // 16)
    assert int(spec[0, 0, :, 16].argmax()) == 8 and int(spec[0, 1, :, 16].argmax()) == 3


def test_biosignal_encoders_tiny() -> None:
    torch.manual_seed(2)
    x = torch.randn(3, 2, 512)
    enc = BiosignalEncoder(2, widths=(8, 16), blocks=1, out_dim=32)
    assert enc(x).shape == (3, 32)
    assert len([m for m in enc.modules() if m.__class__.__name__ == "BasicBlock1d"]) == 2
    spec = BiosignalEncoder(1, kind="spectrogram", backbone="resnet10t", out_dim=16, n_fft=64, hop=16)
    assert spec(x[:, :1]).shape == (3, 16)
    assert spec.body.default_cfg["architecture"] == "resnet10t"
    with pytest.raises(ValueError, match=r"\(B, 2, T\)"):
        enc(x[:, :1])
    with pytest.raises(ConfigError, match="kind"):
        BiosignalEncoder(1, kind="wavelet")
    with pytest.raises(ConfigError, match="not a timm model"):
        BiosignalEncoder(1, kind="spectrogram", backbone="no_such_net")
