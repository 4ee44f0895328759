"""Grouped MulT encoders (``MulTEncoder(groups=G)``): G encoders run as one batched encoder must equal G separate
ones, keep one attention dropout rate per group, and old per-encoder checkpoints of DMD must still load."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import lightning_kd.nn.mult as mult
from lightning_kd.methods.dmd.model import CROSS_PAIRS, MODALITIES, DMDNet
from lightning_kd.nn.mult import MulTEncoder, future_mask, stack_encoder_state

D, H = 8, 2


def _separate_and_group(rates: tuple[float, ...], layers: int = 2, **kw) -> tuple[list[MulTEncoder], MulTEncoder]:
    torch.manual_seed(0)
    singles = [MulTEncoder(D, H, layers, attn_dropout=p, **kw) for p in rates]
    state = {f"g.{i}.{k}": v for i, enc in enumerate(singles) for k, v in enc.state_dict().items()}
    stack_encoder_state(state, "g", [str(i) for i in range(len(rates))])
    group = MulTEncoder(D, H, layers, attn_dropout=rates, groups=len(rates), **kw)
    group.load_state_dict({k[2:]: v for k, v in state.items()})
    return singles, group


def test_group_equals_separate_encoders_forward_and_backward() -> None:
    singles, group = _separate_and_group((0.0, 0.0, 0.0))
    g = torch.Generator().manual_seed(1)
    xs = [torch.randn(6, 3, D, generator=g, requires_grad=True) for _ in range(3)]
    kvs = [torch.randn(5, 3, D, generator=g) for _ in range(3)]
    ref = [enc(x, kv) for enc, x, kv in zip(singles, xs, kvs)]  # training mode, no dropout configured
    ref_grads = torch.autograd.grad(sum((r ** 2).sum() for r in ref), xs)
    out = group.forward_each(xs, kvs)
    grads = torch.autograd.grad(sum((o ** 2).sum() for o in out), xs)
    for a, b in zip(ref + list(ref_grads), out + list(grads)):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
    # the parameters' gradients land in their own group's slice
    sum((o ** 2).sum() for o in group.forward_each(xs, kvs)).backward()
    sum((r ** 2).sum() for r in (enc(x, kv) for enc, x, kv in zip(singles, xs, kvs))).backward()
    torch.testing.assert_close(group.layers[1].fc2_weight.grad[2], singles[2].layers[1].fc2_weight.grad[0],
                               atol=1e-5, rtol=1e-5)


def test_group_with_unequal_lengths_runs_group_by_group() -> None:
    singles, group = _separate_and_group((0.0, 0.0))
    group.eval()
    g = torch.Generator().manual_seed(2)
    xs = [torch.randn(6, 2, D, generator=g), torch.randn(9, 2, D, generator=g)]
    with torch.no_grad():
        out = group.forward_each(xs)
        for enc, x, o in zip(singles, xs, out):
            torch.testing.assert_close(enc.eval()(x), o)
    with pytest.raises(ValueError, match="expected 2 inputs"):
        group.forward_each(xs[:1])


def test_each_group_keeps_its_own_attention_dropout_rate() -> None:
    _, group = _separate_and_group((0.0, 0.6))
    x = torch.randn(2, 7, 4, D)
    group.train()
    torch.manual_seed(3)
    trained = group(x)
    with torch.no_grad():
        evaluated = group.eval()(x)
    torch.testing.assert_close(trained[0], evaluated[0])  # rate 0: no dropout in group 0
    assert not torch.allclose(trained[1], evaluated[1], atol=1e-3)  # rate 0.6 drops attention in group 1


def test_chunked_dropout_attention_equals_one_pass(monkeypatch: pytest.MonkeyPatch) -> None:
    """Row chunks (forced down to one row) change neither the values nor the gradients; a rate that drops
    nothing reproduces SDPA."""
    g = torch.Generator().manual_seed(4)
    q, k, v = (torch.randn(6, 2, 5, 4, generator=g, requires_grad=True) for _ in range(3))
    allowed = future_mask(5, 5)
    rates = (1e-9, 1e-9)  # threshold rounds to 0: every entry kept, scale 1 / (1 - 1e-9)
    expected = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed)
    expected_grads = torch.autograd.grad(expected.square().sum(), (q, k, v))
    for budget in (mult.ATTENTION_CHUNK_BYTES, 1):
        monkeypatch.setattr(mult, "ATTENTION_CHUNK_BYTES", budget)
        out = mult._grouped_dropout_attention(q, k, v, allowed, rates)
        grads = torch.autograd.grad(out.square().sum(), (q, k, v))
        torch.testing.assert_close(out, expected, atol=1e-6, rtol=1e-6)
        for a, b in zip(grads, expected_grads):
            torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


def _old_layout(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A DMDNet state dict as written before grouped encoders (one MulTEncoder per modality / pair)."""
    renames = {f"{m}_{n}": f"{m}.{n}" for m in ("in_proj", "out_proj", "fc1", "fc2", "norm_attn", "norm_ffn")
               for n in ("weight", "bias")} | {"norm_weight": "norm.weight", "norm_bias": "norm.bias"}
    members = {"shared_attention": list(MODALITIES), "cross": [f"{t}.{s}" for t, s in CROSS_PAIRS],
               "hetero_memory": list(MODALITIES)}
    old = {}
    for key, value in state.items():
        group, _, rest = key.partition(".")
        if group not in members:
            old[key] = value
            continue
        head, _, leaf = rest.rpartition(".")
        leaf_old = renames[rest if not head else leaf]
        name = leaf_old if not head else f"{head}.{leaf_old}"
        for i, member in enumerate(members[group]):
            old[f"{group}.{member}.{name}"] = value[i]
    return old


def test_dmd_loads_a_checkpoint_from_before_grouped_encoders() -> None:
    dims, lens = {"text": 12, "audio": 5, "vision": 7}, {"text": 10, "audio": 10, "vision": 10}
    torch.manual_seed(0)
    net = DMDNet(dims, lens, hidden=D, heads=H, layers=2).eval()
    old = _old_layout(net.state_dict())
    assert "cross.text.audio.layers.1.in_proj.weight" in old and "cross.in_proj_weight" not in old
    torch.manual_seed(5)
    fresh = DMDNet(dims, lens, hidden=D, heads=H, layers=2).eval()
    fresh.load_state_dict(old)  # strict
    x = {m: torch.randn(3, 10, dims[m]) for m in dims}
    with torch.no_grad():
        torch.testing.assert_close(fresh(x).prediction, net(x).prediction, atol=0, rtol=0)


def test_single_encoder_loads_its_layout_from_before_groups() -> None:
    """A ``groups=1`` encoder (the fusion baseline's) reads keys written before groups: ``layers.0.in_proj.weight
    (3D, D)``, ``norm.weight (D,)``."""
    torch.manual_seed(0)
    enc = MulTEncoder(D, H, 2).eval()
    old = {}
    for key, value in enc.state_dict().items():
        head, _, leaf = key.rpartition(".")
        module, _, name = leaf.rpartition("_")
        old[f"{head}.{module}.{name}" if head else f"{module}.{name}"] = value[0]
    assert "layers.1.fc2.weight" in old and "norm.bias" in old
    torch.manual_seed(9)
    fresh = MulTEncoder(D, H, 2).eval()
    fresh.load_state_dict(old)  # strict
    x = torch.randn(6, 3, D)
    with torch.no_grad():
        torch.testing.assert_close(fresh(x), enc(x), atol=0, rtol=0)


@pytest.mark.parametrize("causal", [True, False])
def test_inference_mode_products_equal_the_sdpa_path(causal: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    """In inference mode (and export) attention runs as chunked explicit products: the same function as SDPA."""
    monkeypatch.setattr(mult, "ATTENTION_CHUNK_BYTES", 2 * H * 9 * 9 * 4)  # 2 samples per chunk
    _, group = _separate_and_group((0.1, 0.0, 0.3), causal=causal)
    group.eval()
    g = torch.Generator().manual_seed(5)
    xs = [torch.randn(9, 5, D, generator=g) for _ in range(3)]
    kvs = [torch.randn(L, 5, D, generator=g) for L in (9, 9, 9)]
    unequal = [torch.randn(L, 5, D, generator=g) for L in (4, 9, 7)]
    for kv in (None, kvs, unequal):
        with torch.no_grad():
            expected = group.forward_each(xs, kv)
        with torch.inference_mode():
            got = group.forward_each(xs, kv)
        for a, b in zip(got, expected):
            assert torch.isfinite(a).all()
            torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


def test_chunked_attention_with_a_mask_equals_sdpa() -> None:
    g = torch.Generator().manual_seed(6)
    q, k, v = (torch.randn(7, 3, L, 5, generator=g) for L in (6, 8, 8))
    allowed = future_mask(6, 8)
    torch.testing.assert_close(mult.chunked_attention(q, k, v, allowed),
                               F.scaled_dot_product_attention(q, k, v, attn_mask=allowed), atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize("causal", [True, False])
@pytest.mark.parametrize("len_q,len_k", [(9, None), (6, 11), (11, 6), (1, None)])
def test_last_only_equals_the_last_step_of_the_full_output(causal: bool, len_q: int, len_k: int | None) -> None:
    """``last_only`` (the last layer computes the last query only) gives the full encoder's last step: values and
    the gradients that reach the inputs and the parameters (no dropout configured, so both draw nothing)."""
    torch.manual_seed(3)
    enc = MulTEncoder(D, H, 3, causal=causal, groups=2)
    g = torch.Generator().manual_seed(4)
    x = torch.randn(2, len_q, 3, D, generator=g, requires_grad=True)
    kv = None if len_k is None else torch.randn(2, len_k, 3, D, generator=g, requires_grad=True)
    inputs = [x] if kv is None else [x, kv]
    full = enc(x, kv)[:, -1:]
    last = enc(x, kv, last_only=True)
    assert last.shape == (2, 1, 3, D)
    torch.testing.assert_close(last, full, atol=1e-6, rtol=1e-5)
    params = [enc.layers[-1].in_proj_weight, enc.layers[-1].fc1_weight, enc.layers[0].in_proj_weight]
    ref = torch.autograd.grad((full ** 2).sum(), inputs + params)
    got = torch.autograd.grad((last ** 2).sum(), inputs + params)
    for a, b in zip(ref, got):
        torch.testing.assert_close(b, a, atol=1e-5, rtol=1e-4)
    with torch.inference_mode():  # the inference kernels (chunked_attention) take the one-row mask too
        torch.testing.assert_close(enc.eval()(x.detach(), None if kv is None else kv.detach(), last_only=True),
                                   enc(x.detach(), None if kv is None else kv.detach())[:, -1:], atol=1e-6, rtol=1e-5)


def test_last_only_of_unequal_groups_and_a_single_encoder() -> None:
    _, group = _separate_and_group((0.0, 0.0))
    group.eval()
    xs = [torch.randn(6, 2, D), torch.randn(9, 2, D)]
    with torch.no_grad():
        for full, last in zip(group.forward_each(xs), group.forward_each(xs, last_only=True)):
            torch.testing.assert_close(last, full[-1:])
        single = MulTEncoder(D, H, 2).eval()
        torch.testing.assert_close(single(xs[1], last_only=True), single(xs[1])[-1:])


def test_last_only_draws_dropout_for_the_last_step_only() -> None:
    """In training the one computed row still gets its attention dropout (a one-layer encoder: its only random
    draw), and without dropout the row is deterministic."""
    torch.manual_seed(5)
    x = torch.randn(1, 8, 4, D)
    with torch.no_grad():
        enc = MulTEncoder(D, H, 1, attn_dropout=0.5)
        assert not torch.equal(enc(x, last_only=True), enc(x, last_only=True))
        enc = MulTEncoder(D, H, 1, attn_dropout=0.0)
        assert torch.equal(enc(x, last_only=True), enc(x, last_only=True))
