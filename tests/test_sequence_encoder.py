"""ConvTransformerEncoder's eval path (explicit products) computes the training path's function without dropout."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import lightning_kd.nn.mult as mult
from lightning_kd.nn.sequence import ConvTransformerEncoder, _conv_steps


def _masks(batch: int, steps: int) -> torch.Tensor:
    """Valid prefixes of several lengths, one sample with nothing valid (a removed modality), one complete."""
    lengths = torch.arange(batch) % (steps + 1)
    mask = torch.arange(steps)[None, :] < lengths[:, None]
    mask[0] = False
    mask[-1] = True
    return mask


def _module_path(enc: ConvTransformerEncoder, x: torch.Tensor, mask: torch.Tensor | None,
                 fastpath: bool) -> torch.Tensor:
    """The eval encoder through PyTorch's own modules (under ``no_grad``), with or without their fast path."""
    enabled = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(fastpath)
    try:
        with torch.no_grad():
            return enc(x, mask)
    finally:
        torch.backends.mha.set_fastpath_enabled(enabled)


def _eval_path(enc: ConvTransformerEncoder, *args: torch.Tensor | None) -> torch.Tensor:
    with torch.inference_mode():
        return enc(*args)


@pytest.mark.parametrize(("dim", "heads", "layers", "kernel"), [(40, 10, 2, 3), (16, 2, 1, 5), (12, 3, 3, 1)])
@pytest.mark.parametrize("fastpath", [True, False])
def test_eval_path_equals_the_module_path(dim: int, heads: int, layers: int, kernel: int, fastpath: bool,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    # scores of 3 samples per chunk: a batch of 10 runs as 4 chunks
    monkeypatch.setattr(mult, "ATTENTION_CHUNK_BYTES", 3 * heads * 9 * 9 * 4)
    torch.manual_seed(0)
    enc = ConvTransformerEncoder(7, dim, heads, layers, kernel, dropout=0.3).eval()
    x = torch.randn(10, 9, 7)
    for mask in (_masks(10, 9), None, torch.ones(10, 9, dtype=torch.bool)):
        got = _eval_path(enc, x, mask)
        expected = _module_path(enc, x, mask, fastpath)
        assert torch.isfinite(got).all()
        torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


def test_eval_path_ignores_padding_contents() -> None:
    torch.manual_seed(1)
    enc = ConvTransformerEncoder(6, 8, 2, 2, 3).eval()
    x, mask = torch.randn(5, 11, 6), _masks(5, 11)
    noisy = x.masked_fill(mask[..., None], 0.0) * 100 + x.masked_fill(~mask[..., None], 0.0)
    noisy[1, -1] = float("inf")  # padding (sample 1 has one valid step) may hold anything
    a, b = _eval_path(enc, x, mask), _eval_path(enc, noisy, mask)
    keep = mask.clone()
    keep[0] = True  # the sample without valid steps attends everywhere: its (unused) output may differ
    torch.testing.assert_close(a[1:][keep[1:]], b[1:][keep[1:]], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("kernel", [1, 3, 5])
def test_conv_steps_is_a_same_padded_convolution_over_valid_steps(kernel: int) -> None:
    torch.manual_seed(2)
    x, w = torch.randn(4, 8, 6), torch.randn(5, 6, kernel)
    mask = _masks(4, 8)
    expected = F.conv1d(x.masked_fill(~mask[..., None], 0.0).transpose(1, 2), w, padding=kernel // 2).transpose(1, 2)
    torch.testing.assert_close(_conv_steps(x, w, mask), expected, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(_conv_steps(x, w, None), F.conv1d(x.transpose(1, 2), w, padding=kernel // 2).transpose(1, 2),
                               atol=1e-5, rtol=1e-5)


def test_traced_eval_path_takes_any_batch_size(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(mult, "ATTENTION_CHUNK_BYTES", 2 * 2 * 6 * 6 * 4)  # 2 samples per chunk in eager
    torch.manual_seed(3)
    enc = ConvTransformerEncoder(4, 8, 2, 1, 3).eval()
    with torch.no_grad():
        traced = torch.jit.trace(enc, (torch.randn(2, 6, 4), torch.ones(2, 6, dtype=torch.bool)))
        x, mask = torch.randn(7, 6, 4), _masks(7, 6)
        torch.testing.assert_close(traced(x, mask), _eval_path(enc, x, mask), atol=1e-6, rtol=1e-6)


def test_eval_path_runs_only_where_nothing_is_recorded(monkeypatch: pytest.MonkeyPatch) -> None:
    """Training steps and frozen teachers (``no_grad``) keep PyTorch's modules; inference mode takes the products."""
    calls = []
    monkeypatch.setattr(ConvTransformerEncoder, "_encode_eval", lambda self, *a: calls.append(1) or a[0])
    enc = ConvTransformerEncoder(4, 8, 2, 1, 3)
    x = torch.randn(3, 5, 4)
    enc(x)
    enc.eval()
    with torch.no_grad():
        enc(x)
    assert calls == []
    _eval_path(enc, x)
    assert calls == [1]
