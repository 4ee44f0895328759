"""DMD LightningModule pieces: checkpoint method tag, edge matrices, fast dropout."""

from __future__ import annotations

from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch

from lightning_kd.checkpoint import CheckpointMismatchError
from lightning_kd.data.formats.mmsa import MMSADataModule
from lightning_kd.distill.gd_unit import EDGES
from lightning_kd.methods.dmd import DMD
from lightning_kd.methods.dmd.edges import edge_matrix, mean_edge_weights
from lightning_kd.methods.fusion import FusionBaseline
from lightning_kd.nn.mult import _DropoutAttention, fast_dropout, future_mask

TINY = dict(net=dict(hidden=8, heads=2, layers=1))


def _trainer(tmp_path: Path, **kw) -> pl.Trainer:
    return pl.Trainer(default_root_dir=tmp_path, accelerator="cpu", logger=False, enable_progress_bar=False,
                      enable_model_summary=False, **kw)


def test_checkpoint_of_another_method_is_refused(tiny_mmsa_aligned: Path, tmp_path: Path) -> None:
    dm = MMSADataModule(str(tiny_mmsa_aligned), batch_size=8)
    dmd = DMD(dm.feature_dims, dm.seq_lens, **TINY)
    trainer = _trainer(tmp_path, max_epochs=1, limit_train_batches=1, limit_val_batches=1)
    trainer.fit(dmd, datamodule=dm)
    ckpt = tmp_path / "dmd.ckpt"
    trainer.save_checkpoint(ckpt)

    fusion = FusionBaseline(dm.feature_dims, dm.seq_lens, **TINY)
    with pytest.raises(CheckpointMismatchError, match=r"dmd\.ckpt.*DMD.*FusionBaseline"):
        _trainer(tmp_path).test(fusion, datamodule=dm, ckpt_path=str(ckpt))
    # the right method loads it
    _trainer(tmp_path).test(DMD(dm.feature_dims, dm.seq_lens, **TINY), datamodule=dm, ckpt_path=str(ckpt))

    raw = torch.load(ckpt, weights_only=False)
    del raw["lightning_kd"]
    torch.save(raw, tmp_path / "foreign.ckpt")
    with pytest.raises(CheckpointMismatchError, match="not written by lightning_kd"):
        _trainer(tmp_path).test(DMD(dm.feature_dims, dm.seq_lens, **TINY), datamodule=dm,
                                ckpt_path=str(tmp_path / "foreign.ckpt"))


def test_edge_matrix_places_source_rows_target_columns() -> None:
    w = torch.arange(1.0, 7.0)  # edge e gets weight e + 1
    m = edge_matrix(w)
    for e, (src, dst) in enumerate(EDGES):
        assert m[src, dst] == e + 1
    assert torch.isnan(m.diagonal()).all()
    # V->L is the first edge, L->V the third (vertex order L, V, A)
    assert m[1, 0] == 1 and m[0, 1] == 3


def test_mean_edge_weights_are_distributions(tiny_mmsa_aligned: Path) -> None:
    dm = MMSADataModule(str(tiny_mmsa_aligned), batch_size=8)
    model = DMD(dm.feature_dims, dm.seq_lens, **TINY)
    w = mean_edge_weights(model, dm.test_dataloader())
    for g in ("homo", "hetero"):
        assert w[g].shape == (6,) and w[g].sum().item() == pytest.approx(1.0, abs=1e-5)
    assert model.training  # mode restored


@pytest.mark.parametrize("p", [0.1, 0.3, 0.5])
def test_fast_dropout_statistics(p: float) -> None:
    torch.manual_seed(0)
    x = torch.ones(400, 500)
    y = fast_dropout(x, p, True)
    dropped = (y == 0).float().mean().item()
    assert dropped == pytest.approx(p, abs=0.005)
    assert torch.allclose(y[y != 0], torch.full_like(y[y != 0], 1 / (1 - p)))
    assert y.mean().item() == pytest.approx(1.0, abs=0.01)  # unbiased
    assert fast_dropout(x, p, False) is x
    torch.manual_seed(1)
    a = fast_dropout(x, p, True)
    torch.manual_seed(1)
    assert torch.equal(a, fast_dropout(x, p, True))  # seeded


def test_fast_dropout_gradient_masks_like_forward() -> None:
    x = torch.randn(50, 40, requires_grad=True)
    y = fast_dropout(x, 0.4, True)
    y.sum().backward()
    assert torch.equal(x.grad == 0, y == 0)


def _plain_dropout_attention(q, k, v, allowed, p):
    scores = (q @ k.transpose(-2, -1)) * (q.shape[-1] ** -0.5)
    if allowed is not None:
        scores = scores.masked_fill(~allowed, float("-inf"))
    return fast_dropout(scores.softmax(dim=-1), p, True) @ v


@pytest.mark.parametrize("shape", [(7, 9, True), (9, 9, True), (6, 8, False)])
@pytest.mark.parametrize("bf16", [False, True])
def test_dropout_attention_equals_plain_autograd(shape, bf16: bool) -> None:
    """The memory-saving attention Function: forward and gradients equal to autograd through the plain expression
    with the same RNG state (the same dropout mask), to float rounding (bf16 autocast: bf16 rounding)."""
    lq, lk, causal = shape
    allowed = future_mask(lq, lk) if causal else None
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 3, n, 5, generator=g, requires_grad=True) for n in (lq, lk, lk))
    grad = torch.randn(2, 3, lq, 5, generator=g)
    outs, grads = [], []
    for fn in (_plain_dropout_attention, _DropoutAttention.apply):
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            torch.manual_seed(1)
            out = fn(q, k, v, allowed, 0.3)
        outs.append(out)
        grads.append(torch.autograd.grad(out, (q, k, v), grad.to(out.dtype)))
    tol = 5e-2 if bf16 else 1e-6
    assert outs[0].dtype == outs[1].dtype
    torch.testing.assert_close(outs[0], outs[1], atol=tol, rtol=tol)
    undropped = torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=allowed)
    assert not torch.allclose(outs[1].float(), undropped, atol=1e-2)  # entries were dropped: the mask matters
    for a, b in zip(*grads):
        assert a.dtype == b.dtype and torch.allclose(a, b, atol=tol, rtol=tol)


def test_dropout_attention_gradcheck() -> None:
    """float64 finite differences through the Function (the mask is fixed by reseeding before each call)."""
    g = torch.Generator().manual_seed(3)
    q, k, v = (torch.randn(1, 2, n, 4, generator=g, dtype=torch.float64, requires_grad=True) for n in (5, 6, 6))
    allowed = future_mask(5, 6)

    def fn(q, k, v):
        torch.manual_seed(2)
        return _DropoutAttention.apply(q, k, v, allowed, 0.25)

    assert torch.autograd.gradcheck(fn, (q, k, v))
