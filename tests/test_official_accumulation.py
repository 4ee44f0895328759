"""SummedAccumulationClipping: the official DMD accumulation (sum, clip after every backward, step every N,
drop the last partial group) against hand-computed parameters of a tiny linear model."""

from __future__ import annotations

from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from lightning_kd.callbacks import SummedAccumulationClipping
from lightning_kd.checkpoint import ConfigError

pytestmark = pytest.mark.usefixtures("single_thread")

# per-batch gradients of loss = <w, x_b> are exactly x_b (batch size 1, 2 parameters)
X = torch.tensor([[0.5, -0.25], [0.5, -0.5], [0.25, 0.75], [-0.5, 0.5], [0.75, 0.125], [0.25, 0.25], [4.0, -4.0]])
W0 = torch.tensor([1.0, 2.0])
N, CLIP, LR = 3, 0.6, 1.0  # 7 batches: groups [0,1,2], [3,4,5], and the partial group [6]


class Linear(pl.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.w = torch.nn.Parameter(W0.clone())

    def training_step(self, batch, batch_idx):
        (x,) = batch
        return (self.w * x[0]).sum()

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=LR)


def _fit(tmp_path: Path, callbacks, epochs: int = 1, precision: str = "32-true", ckpt_path=None, **kw) -> Linear:
    model = Linear()
    trainer = pl.Trainer(max_epochs=epochs, accumulate_grad_batches=N, callbacks=callbacks, precision=precision,
                         accelerator="cpu", devices=1, logger=False, enable_progress_bar=False,
                         enable_model_summary=False, default_root_dir=tmp_path, **kw)
    trainer.fit(model, DataLoader(TensorDataset(X), batch_size=1), ckpt_path=ckpt_path)
    return model


def official(epochs: int = 1, drop_last_partial: bool = True) -> torch.Tensor:
    """mdswyz/DMD do_train: backward (sum), clip_grad_value_ after each backward, step every N batches."""
    w = W0.clone()
    for _ in range(epochs):
        g, left = torch.zeros(2), N
        for x in X:
            g = (g + x).clamp(-CLIP, CLIP)
            left -= 1
            if left == 0:
                w, g, left = w - LR * g, torch.zeros(2), N
        if left != N and not drop_last_partial:
            w = w - LR * g
    return w


def test_reference_by_hand() -> None:
    # group 1: clip(.5,-.25)=(.5,-.25); +(.5,-.5) -> clip(1,-.75)=(.6,-.6); +(.25,.75) -> clip(.85,.15)=(.6,.15)
    # group 2: (-.5,.5); +(.75,.125) -> (.25,.625)->(.25,.6); +(.25,.25) -> (.5,.85)->(.5,.6)
    # w = (1,2) - (.6,.15) - (.5,.6) = (-.1, 1.25); batch 7 (4,-4) is the dropped partial group
    assert torch.allclose(official(), torch.tensor([-0.1, 1.25]))


@pytest.mark.parametrize("precision", ["32-true", "bf16-mixed"])
def test_matches_official_sum_clip_step_and_drops_partial_group(tmp_path: Path, precision: str) -> None:
    cb = SummedAccumulationClipping(clip_value=CLIP, track_stats=True)
    model = _fit(tmp_path, [cb], precision=precision)
    assert torch.allclose(model.w.detach(), torch.tensor([-0.1, 1.25]), atol=1e-6), model.w
    assert (cb.steps, cb.dropped) == (2, 1)
    # clipped entries of 14: group 1 backwards 2, 3 clip 2 and 1; group 2 backwards 2, 3 clip 1 and 1; the
    # dropped batch (4, -4) clips 2. At the steps: 1 of 2 entries in each group's last clip.
    assert cb.clipped_fraction["every_backward"] == pytest.approx(7 / 14)
    assert cb.clipped_fraction["at_step"] == pytest.approx(2 / 4)


def test_lightning_averaged_clipping_differs(tmp_path: Path) -> None:
    """Lightning's own accumulation (mean, one clip, steps on the partial group) gives other weights."""
    model = _fit(tmp_path, [], gradient_clip_val=CLIP, gradient_clip_algorithm="value")
    mean1, mean2 = X[:3].mean(0).clamp(-CLIP, CLIP), X[3:6].mean(0).clamp(-CLIP, CLIP)
    expected = W0 - mean1 - mean2 - X[6].clamp(-CLIP, CLIP)  # the partial group of one batch: not divided
    assert torch.allclose(model.w.detach(), expected, atol=1e-6)
    assert not torch.allclose(expected, official(), atol=1e-3)


def test_keep_last_partial_group(tmp_path: Path) -> None:
    cb = SummedAccumulationClipping(clip_value=CLIP, drop_last_partial=False)
    model = _fit(tmp_path, [cb])
    assert torch.allclose(model.w.detach(), official(drop_last_partial=False), atol=1e-6)
    assert (cb.steps, cb.dropped) == (3, 0)
    with pytest.raises(RuntimeError, match="track_stats=True"):  # not counted by default (it costs ~4 % of a step)
        _ = cb.clipped_fraction


def test_resume_from_last_ckpt_ends_like_uninterrupted(tmp_path: Path) -> None:
    full = _fit(tmp_path / "full", [SummedAccumulationClipping(CLIP)], epochs=3)
    assert torch.allclose(full.w.detach(), official(epochs=3), atol=1e-6)
    ck = pl.callbacks.ModelCheckpoint(dirpath=tmp_path / "ck", save_last=True)
    _fit(tmp_path / "a", [SummedAccumulationClipping(CLIP), ck], epochs=1)
    resumed = _fit(tmp_path / "b", [SummedAccumulationClipping(CLIP)], epochs=3,
                   ckpt_path=str(tmp_path / "ck" / "last.ckpt"))
    assert torch.allclose(resumed.w.detach(), full.w.detach(), atol=1e-6)


def test_double_clipping_and_bad_clip_value_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="gradient_clip_val"):
        _fit(tmp_path, [SummedAccumulationClipping(CLIP)], gradient_clip_val=CLIP)
    with pytest.raises(ConfigError, match="clip_value"):
        SummedAccumulationClipping(0.0)


@pytest.mark.parametrize("config", ["dmd/mosi_aligned", "dmd/mosi_unaligned", "dmd/mosei_aligned",
                                    "dmd/mosei_unaligned", "dmd/synthetic", "fusion/mosi_aligned"])
def test_official_configs_use_summed_clipping(config: str, tiny_mmsa_aligned: Path, tmp_path: Path) -> None:
    from conftest import ROOT
    from lightning_kd.cli import build_cli

    data = ["--data.init_args.path", str(tiny_mmsa_aligned)]
    if config == "dmd/synthetic":  # a tiny generated file instead of the MOSI-sized one
        data = ["--data.init_args.path", str(tmp_path / "s.pkl"), "--data.init_args.n=[24,8,8]",
                "--data.init_args.dims=[32,5,7]", "--data.init_args.lengths=[12,12,12]"]
    cli = build_cli(["-c", str(ROOT / f"configs/{config}.yaml"), *data,
                     "--trainer.logger.init_args.save_dir", str(tmp_path / "runs")], run=False)
    cbs = [c for c in cli.trainer.callbacks if isinstance(c, SummedAccumulationClipping)]
    assert len(cbs) == 1 and cbs[0].clip_value == 0.6 and cbs[0].drop_last_partial
    assert cli.trainer.accumulate_grad_batches == 10 and cli.trainer.gradient_clip_val is None
