"""CCC of valence / arousal: the challenge's population closed form, torchmetrics' accumulation, edge cases."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torchmetrics.functional.regression import concordance_corrcoef

from lightning_kd.metrics.ccc import CCC_KEYS, ValenceArousalCCC, ccc, valence_arousal_ccc


def _closed(x: np.ndarray, y: np.ndarray, ddof: int = 0) -> float:
    """2 cov / (var_x + var_y + (mu_x - mu_y)^2) with statistics over N - ddof (numpy, by hand)."""
    n = len(x)
    cov = ((x - x.mean()) * (y - y.mean())).sum() / (n - ddof)
    return 2 * cov / (x.var(ddof=ddof) + y.var(ddof=ddof) + (x.mean() - y.mean()) ** 2)


def _data(n: int = 50, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    y = torch.rand(n, 2, generator=g, dtype=torch.float64) * 2 - 1
    x = 0.6 * y + 0.3 + 0.4 * torch.randn(n, 2, generator=g, dtype=torch.float64)  # shifted: means differ
    return x, y


def test_hand_values():
    # x = (1, 2, 3), y = (2, 3, 4): cov 2/3, var 2/3 each, mean difference 1 -> 2 (2/3) / (4/3 + 1) = 4/7
    x, y = torch.tensor([1.0, 2.0, 3.0]), torch.tensor([2.0, 3.0, 4.0])
    assert ccc(x, y).item() == pytest.approx(4 / 7)
    # torchmetrics: unbiased variances (1 each), cov 1 and the unscaled mean difference -> 2 / 3
    assert concordance_corrcoef(x, y).item() == pytest.approx(2 / 3)


def test_closed_form_and_torchmetrics_difference():
    x, y = _data()
    ours = ccc(x, y).numpy()
    for j in range(2):
        assert ours[j] == pytest.approx(_closed(x[:, j].numpy(), y[:, j].numpy()), rel=1e-12)
    tm = concordance_corrcoef(x, y).numpy()
    for j in range(2):  # torchmetrics' own value is the (N - 1) form, not the challenge's
        assert tm[j] == pytest.approx(_closed(x[:, j].numpy(), y[:, j].numpy(), ddof=1), rel=1e-9)
    assert not np.allclose(tm, ours, rtol=1e-6)
    # equal means: both forms agree
    xc = x - x.mean(0) + y.mean(0)
    np.testing.assert_allclose(concordance_corrcoef(xc, y).numpy(), ccc(xc, y).numpy(), rtol=1e-9)


def test_metric_streams_batches_to_the_closed_form():
    x, y = _data(83, seed=1)
    m = ValenceArousalCCC()
    for i in range(0, 83, 16):
        m.update(x[i:i + 16], y[i:i + 16])
    out = m.compute()
    assert tuple(out) == CCC_KEYS
    ref = valence_arousal_ccc(x, y)
    for k in CCC_KEYS:
        assert out[k].item() == pytest.approx(ref[k], rel=1e-9)
    assert ref["ccc_mean"] == pytest.approx((ref["ccc_valence"] + ref["ccc_arousal"]) / 2)


def test_perfect_anti_and_shifted():
    y = torch.linspace(-1, 1, 21, dtype=torch.float64)[:, None].repeat(1, 2)
    m = ValenceArousalCCC()
    m.update(y, y)
    assert m.compute()["ccc_mean"].item() == pytest.approx(1.0)
    assert ccc(-y, y).tolist() == pytest.approx([-1.0, -1.0])
    shifted = ccc(y + 0.5, y)  # perfectly correlated, biased: 2 v / (2 v + 0.25) < 1
    v = y[:, 0].var(correction=0).item()
    assert shifted.tolist() == pytest.approx([2 * v / (2 * v + 0.25)] * 2)
    scaled = ccc(0.5 * y, y)  # Pearson 1, CCC < 1
    assert 0 < scaled[0].item() < 1


@pytest.mark.filterwarnings("ignore:The ``compute`` method")
def test_metric_state_reset_empty_and_checkpoint_free():
    m = ValenceArousalCCC()
    assert all(math.isnan(v.item()) for v in m.compute().values())
    assert m.state_dict() == {}
    x, y = _data(10)
    m.update(x, y)
    assert m.state_dict() == {}
    m.reset()
    assert all(math.isnan(v.item()) for v in m.compute().values())
    with pytest.raises(ValueError, match=r"\(B, 2\)"):
        m.update(x[:, :1], y[:, :1])
