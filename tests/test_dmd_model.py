"""DMDNet, MulTEncoder and BertTextEncoder (tiny sizes, CPU)."""

from __future__ import annotations

import math

import pytest
import torch

from lightning_kd.methods.dmd.model import DMDNet, DMDOutput
from lightning_kd.nn.mult import MulTEncoder, future_mask, sinusoidal_positions
from lightning_kd.nn.text import BertTextEncoder

D = 8  # hidden
DIMS = {"text": 12, "audio": 5, "vision": 7}
KERNELS = (3, 1, 2)  # text, audio, vision
ALIGNED = {"text": 10, "audio": 10, "vision": 10}
UNALIGNED = {"text": 10, "audio": 12, "vision": 9}


def make_net(seq_lens=ALIGNED, **kw) -> DMDNet:
    torch.manual_seed(0)
    return DMDNet(DIMS, seq_lens, hidden=D, heads=2, layers=1, kernel_sizes=KERNELS, **kw)


def make_inputs(seq_lens=ALIGNED, batch: int = 4) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return {m: torch.randn(batch, seq_lens[m], DIMS[m], generator=g) for m in ("text", "audio", "vision")}


@pytest.mark.parametrize("seq_lens", [ALIGNED, UNALIGNED], ids=["aligned", "unaligned"])
def test_output_shapes(seq_lens):
    net, B = make_net(seq_lens), 4
    out = net(make_inputs(seq_lens, B))
    assert isinstance(out, DMDOutput)
    for name in ("prediction", "logits_c"):
        assert getattr(out, name).shape == (B,)
    assert out.logits_homo.shape == (3, B) and out.logits_hetero.shape == (3, B)
    assert out.reprs_homo.shape == (3, B, D) and out.reprs_hetero.shape == (3, B, 2 * D)
    assert out.shared_sim.shape == (3, B, D)
    k = dict(zip(("text", "audio", "vision"), KERNELS))
    expected = [(B, D, seq_lens[m] - k[m] + 1) for m in ("text", "vision", "audio")]  # [L, V, A]
    for name in ("proj", "private", "shared", "private_recon", "recon"):
        assert [tuple(t.shape) for t in getattr(out, name)] == expected, name


def test_eval_is_deterministic_and_train_is_stochastic():
    net, x = make_net(UNALIGNED), make_inputs(UNALIGNED)
    net.eval()
    with torch.no_grad():
        a, b = net(x), net(x)
    for name, ta in a._asdict().items():
        tb = getattr(b, name)
        for u, v in zip(ta if isinstance(ta, tuple) else (ta,), tb if isinstance(tb, tuple) else (tb,)):
            assert torch.equal(u, v), name
    net.train()
    assert not torch.equal(net(x).prediction, net(x).prediction)  # dropout is active


def test_gradients_reach_the_parameters_that_should_learn():
    net, x = make_net(UNALIGNED), make_inputs(UNALIGNED)
    net(x).prediction.sum().backward()
    on_path = ("proj.", "encoder_private.", "encoder_shared.", "cross.", "hetero_memory.", "shared_attention.",
               "gate.", "gate_shared.", "fusion_head.")
    off_path = ("decoder.", "align_shared.", "homo_head.", "hetero_head.", "shared_head.")
    for name, p in net.named_parameters():
        if name.startswith(on_path):
            assert p.grad is not None and p.grad.abs().sum() > 0, name
        else:
            assert name.startswith(off_path), name
            assert p.grad is None, name

    # every output together trains every parameter
    net.zero_grad(set_to_none=True)
    out = net(x)
    total = sum(t.sum() for v in out for t in (v if isinstance(v, tuple) else (v,)))
    total.backward()
    missing = [n for n, p in net.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert not missing


def _tiny_bert(path):
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    cfg = BertConfig(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
                     vocab_size=100, max_position_embeddings=32)
    BertModel(cfg).save_pretrained(path)
    return str(path)


def _ids(batch: int, length: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(2)
    ids = torch.randint(1, 100, (batch, length), generator=g)
    mask = torch.ones(batch, length, dtype=torch.long)
    mask[:, -2:] = 0
    return torch.stack([ids * mask, mask, torch.zeros_like(ids)], dim=1)  # (B, 3, L)


def test_bert_text_path(tmp_path):
    path = _tiny_bert(tmp_path / "bert")
    torch.manual_seed(0)
    net = DMDNet({"text_bert": 3, "audio": 5, "vision": 7}, {"text_bert": 10, "audio": 12, "vision": 9},
                 hidden=D, heads=2, layers=1, kernel_sizes=KERNELS, text_encoder=path)
    x = make_inputs(UNALIGNED)
    x.pop("text")
    x["text_bert"] = _ids(4, 10)
    out = net(x)
    assert out.prediction.shape == (4,) and out.proj[0].shape == (4, D, 10 - KERNELS[0] + 1)
    out.prediction.sum().backward()
    bert_grads = [p.grad for p in net.text_model.parameters()]
    assert all(g is not None for g in bert_grads)  # fine-tuned (and no unused pooler)

    enc = BertTextEncoder(path, finetune=False)
    assert enc.hidden_size == 16
    assert not any(p.requires_grad for p in enc.parameters())
    assert enc(_ids(2, 10)).shape == (2, 10, 16)


def test_missing_text_encoder_path_is_a_clear_error(tmp_path):
    missing = tmp_path / "no_such_bert"
    with pytest.raises(FileNotFoundError) as err:
        BertTextEncoder(str(missing))
    msg = str(err.value)
    assert str(missing) in msg and "--model.init_args.net.text_encoder" in msg and "never downloaded" in msg
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="--model.init_args.net.text_encoder"):
        DMDNet({"text_bert": 3, "audio": 5, "vision": 7}, {"text_bert": 10, "audio": 12, "vision": 9},
               hidden=D, heads=2, layers=1, text_encoder=str(tmp_path / "empty"))


def test_mult_causal_self_attention_ignores_the_future():
    torch.manual_seed(0)
    enc = MulTEncoder(D, 2, layers=2).eval()
    x = torch.randn(9, 3, D)
    y = x.clone()
    t = 4
    y[t + 1:] = torch.randn_like(y[t + 1:])
    with torch.no_grad():
        a, b = enc(x), enc(y)
    torch.testing.assert_close(a[: t + 1], b[: t + 1])
    assert not torch.allclose(a[t + 1:], b[t + 1:])
    full = MulTEncoder(D, 2, layers=2, causal=False).eval()
    with torch.no_grad():
        assert not torch.allclose(full(x)[:t + 1], full(y)[:t + 1])


def test_mult_cross_attention_mask_matches_official_buffered_future_mask():
    for lq, lk in [(5, 5), (3, 7), (7, 3)]:
        # official: triu(-inf * ones(Lq, Lk), 1 + |Lk - Lq|)
        ref = torch.triu(torch.full((lq, lk), float("-inf")), 1 + abs(lk - lq))
        assert torch.equal(future_mask(lq, lk), ref == 0)
    enc = MulTEncoder(D, 2, layers=1).eval()
    with torch.no_grad():
        assert enc(torch.randn(7, 2, D), torch.randn(3, 2, D)).shape == (7, 2, D)


def test_sinusoidal_positions_match_fairseq_positions_from_one():
    L, dim = 6, 10
    half = dim // 2
    freq = torch.exp(torch.arange(half) * -(math.log(10000) / (half - 1)))
    ang = torch.arange(L + 1, dtype=torch.float)[:, None] * freq[None]
    table = torch.cat([ang.sin(), ang.cos()], 1)  # official get_embedding; row 0 is the padding position
    torch.testing.assert_close(sinusoidal_positions(L, dim), table[1:])
    assert sinusoidal_positions(L, 7)[:, -1].abs().sum() == 0  # odd width: zero last column
