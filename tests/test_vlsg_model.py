"""VLSGNet's head layouts (shared as MFLVC, or one pair per view) and VLSG's evaluation collector."""

from __future__ import annotations

from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch

from lightning_kd.data.generate.multiview import SyntheticMultiViewDataModule
from lightning_kd.data.semantic_graph import SemanticGraph
from lightning_kd.methods.vlsg import VLSG, VLSGNet, VLSGNetOptions
from lightning_kd.methods.vlsg.module import EvaluatedSamples

DIMS = {"view_0": 6, "view_1": 5, "view_2": 4}


def _net(shared: bool) -> VLSGNet:
    torch.manual_seed(0)
    return VLSGNet(DIMS, num_clusters=3, hidden=(8,), latent=7, feature_dim=4, shared_heads=shared)


def _inputs(b: int = 10) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return {v: torch.randn(b, d, generator=g) for v, d in DIMS.items()}


@pytest.mark.parametrize("shared", [True, False])
def test_output_shapes_either_layout(shared: bool) -> None:
    out = _net(shared)(_inputs())
    for v, d in DIMS.items():
        assert out["z"][v].shape == (10, 7) and out["recon"][v].shape == (10, d)
        assert out["h"][v].shape == (10, 4) and out["q"][v].shape == (10, 3)
        torch.testing.assert_close(out["h"][v].norm(dim=1), torch.ones(10))
        torch.testing.assert_close(out["q"][v].sum(1), torch.ones(10))


def test_shared_heads_are_one_module_per_kind() -> None:
    shared, per_view = _net(True), _net(False)
    assert shared.feature_head_of("view_0") is shared.feature_head_of("view_2")
    assert shared.label_head_of("view_0") is shared.label_head_of("view_1")
    assert per_view.feature_head_of("view_0") is not per_view.feature_head_of("view_1")
    head_params = (7 * 4 + 4) + (7 * 3 + 3)  # one feature head + one label head
    def n(m: torch.nn.Module) -> int:
        return sum(p.numel() for p in m.parameters())

    assert n(per_view) - n(shared) == (len(DIMS) - 1) * head_params
    # the same latent code gives the same head outputs in every view only when the heads are shared
    z = torch.randn(5, 7)
    for net, same in ((shared, True), (per_view, False)):
        h = net.features({v: z for v in DIMS})
        assert torch.equal(h["view_0"], h["view_1"]) is same


@pytest.mark.parametrize("shared", [True, False])
def test_training_step_updates_the_heads_from_every_view(tmp_path: Path, shared: bool) -> None:
    dm = SyntheticMultiViewDataModule(path=str(tmp_path / "mv.mat"), n=40, dims=(6, 5), clusters=3, batch_size=20,
                                      semantic_graph=SemanticGraph(k=3))
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    torch.manual_seed(0)
    net = VLSGNetOptions(hidden=(8,), latent=6, feature_dim=4, shared_heads=shared)
    model = VLSG(dm.feature_dims, num_clusters=3, net=net, pretrain_epochs=0)
    terms = model.losses(batch, contrastive=True)
    terms["loss"].backward()
    heads = [model.net.feature_head_of(v) for v in model.net.views] + [model.net.label_head_of(v) for v in model.net.views]
    assert all(m.weight.grad is not None and m.weight.grad.abs().sum() > 0 for m in heads)
    keys = set(model.state_dict())
    if shared:
        assert {"net.feature_head.weight", "net.label_head.weight"} <= keys
        assert not any(k.startswith("net.feature_heads.") for k in keys)
    else:
        assert {"net.feature_heads.view_1.weight", "net.label_heads.view_0.weight"} <= keys
        assert "net.feature_head.weight" not in keys
    # one Lightning epoch of the contrastive phase (pretrain_epochs=0) changes every head's weights
    before = {k: v.clone() for k, v in model.state_dict().items() if "head" in k}
    model.zero_grad()
    trainer = pl.Trainer(max_epochs=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, limit_val_batches=0)
    trainer.fit(model, datamodule=dm)
    after = model.state_dict()
    assert all(not torch.equal(before[k], after[k]) for k in before if k.endswith("weight"))
    # MethodModule's training_step logged every term of training_losses; the base's plain Adam, no scheduler
    logged = {k for k in trainer.callback_metrics if k.startswith("train/")}
    assert logged == {f"train/{k}" for k in ("loss", "recon", "feature_contrastive", "cluster_contrastive",
                                             "batch_neighbours")}
    assert type(trainer.optimizers[0]) is torch.optim.Adam and trainer.lr_scheduler_configs == []


def test_evaluated_samples_sorts_and_drops_sampler_repeats() -> None:
    m = EvaluatedSamples()
    m.update(torch.tensor([2, 0]), torch.tensor([[2.0], [0.0]]), torch.tensor([12, 10]))
    m.update(torch.tensor([1, 0]), torch.tensor([[1.0], [0.0]]), torch.tensor([11, 10]))  # 0 repeated (padding)
    idx, emb, tgt = m.compute()
    assert idx.tolist() == [0, 1, 2] and emb[:, 0].tolist() == [0.0, 1.0, 2.0] and tgt.tolist() == [10, 11, 12]
    m.reset()
    m.update(torch.tensor([0, 1]), torch.tensor([[0.0], [1.0]]), torch.tensor([5, 6]))
    assert m.compute()[0].tolist() == [0, 1]  # reset forgot the first epoch's samples
