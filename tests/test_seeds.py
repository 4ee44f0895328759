"""One seed drives the run: batch order and training masks follow ``seed_everything`` unless pinned.

Pinned on purpose: the generated data file (``data_seed``) and the evaluation condition (``eval_missing.seed``).
"""

from __future__ import annotations

from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch
import yaml
from lightning.fabric.utilities.seed import seed_everything
from lightning.pytorch.callbacks import Callback
from torch import Tensor, nn

from lightning_kd.data import MissingAugmentation, MissingCondition, MMSADataModule
from lightning_kd.data.batch import Batch
from lightning_kd.data.seeding import SEED_ENV, run_seed

ROOT = Path(__file__).resolve().parents[1]
AUG = dict(min_rate=0.2, max_rate=0.8, modality_prob=0.5)


class Probe(pl.LightningModule):
    """Records every training and validation batch (as the model sees it); learns nothing."""

    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.zeros(1))
        self.train_batches: list[tuple[int, Batch]] = []
        self.val_batches: list[Batch] = []

    def training_step(self, batch: Batch, batch_idx: int) -> Tensor:
        self.train_batches.append((self.current_epoch, batch))
        return self.w.sum() * 0.0

    def validation_step(self, batch: Batch, batch_idx: int) -> None:
        self.val_batches.append(batch)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def fit(dm: MMSADataModule, run_seed_value: int | None, epochs: int = 2) -> Probe:
    if run_seed_value is not None:
        seed_everything(run_seed_value, verbose=False)
    probe = Probe()
    trainer = pl.Trainer(accelerator="cpu", devices=1, max_epochs=epochs, limit_val_batches=1, num_sanity_val_steps=0,
                         logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False)
    trainer.fit(probe, datamodule=dm)
    return probe


def order(probe: Probe) -> list[list[int]]:
    """Sample indices per training batch, all epochs."""
    return [b.index.tolist() for _, b in probe.train_batches]


def masks(probe: Probe) -> dict[tuple[int, int], Tensor]:
    """(epoch, sample) -> which audio/vision frames the student saw zeroed and which modalities it lost.

    Keyed by sample, so the comparison does not depend on the batch order.
    """
    out = {}
    for epoch, b in probe.train_batches:
        for j, i in enumerate(b.index.tolist()):
            dropped = [(b.inputs[m][j] != b.complete_inputs[m][j]).any(-1) for m in ("text", "audio", "vision")]
            kept = [b.masks[m][j].any().reshape(1) for m in ("text", "audio", "vision")]
            out[(epoch, i)] = torch.cat([*dropped, *kept])
    return out


@pytest.fixture(autouse=True)
def _restore_seed_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test starts unseeded; whatever it seeds is undone afterwards."""
    monkeypatch.delenv(SEED_ENV, raising=False)


def dm_for(path: Path, **kw) -> MMSADataModule:
    kw.setdefault("train_missing", MissingAugmentation(**AUG))
    return MMSADataModule(str(path), batch_size=8, **kw)


# -- the run seed ------------------------------------------------------------------------------------------
def test_run_seed_reads_seed_everything_and_falls_back_to_zero(monkeypatch: pytest.MonkeyPatch) -> None:
    assert run_seed() == 0  # nothing seeded: Lightning's own fallback
    seed_everything(1234, verbose=False)
    assert run_seed() == 1234
    monkeypatch.setenv(SEED_ENV, "77")
    assert run_seed() == 77
    monkeypatch.setenv(SEED_ENV, "x")
    with pytest.raises(ValueError, match=SEED_ENV):
        run_seed()


def test_defaults_follow_the_run_and_evaluation_is_pinned() -> None:
    assert MissingAugmentation().seed is None
    assert MissingCondition().seed == 0
    assert MissingAugmentation(seed=None).seeded(9).seed == 9
    assert MissingAugmentation(seed=3).seeded(9).seed == 3  # an explicit seed wins
    assert MissingCondition(seed=None).seeded(9).seed == 9
    assert MissingCondition(seed=0).seeded(9).seed == 0


def test_unpinned_conditions_applied_directly_use_the_run_seed(monkeypatch: pytest.MonkeyPatch) -> None:
    from test_missing import assert_batches_equal, make_batch

    batch = make_batch(64)
    monkeypatch.setenv(SEED_ENV, "4")
    assert_batches_equal(MissingAugmentation(**AUG).apply(batch, epoch=1),
                         MissingAugmentation(**AUG, seed=4).apply(batch, epoch=1))
    assert_batches_equal(MissingCondition(0.5, "la", seed=None).apply(batch),
                         MissingCondition(0.5, "la", seed=4).apply(batch))
    monkeypatch.setenv(SEED_ENV, "5")
    assert not torch.equal(MissingAugmentation(**AUG).apply(batch, epoch=1).inputs["audio"],
                           MissingAugmentation(**AUG, seed=4).apply(batch, epoch=1).inputs["audio"])


# -- fits ------------------------------------------------------------------------------------------------
def test_other_run_seed_other_batch_order_and_other_training_masks(tiny_mmsa_aligned: Path) -> None:
    a = fit(dm_for(tiny_mmsa_aligned), 1)
    b = fit(dm_for(tiny_mmsa_aligned), 2)
    assert sorted(sum(order(a)[:5], [])) == list(range(40))  # one epoch = every sample once
    assert order(a) != order(b)
    ma, mb = masks(a), masks(b)
    assert ma.keys() == mb.keys()
    differing = sum(not torch.equal(ma[k], mb[k]) for k in ma)
    assert differing > len(ma) // 2  # most samples see other masks, not just a few


def test_same_run_seed_same_batch_order_and_same_masks(tiny_mmsa_aligned: Path) -> None:
    a = fit(dm_for(tiny_mmsa_aligned), 5)
    b = fit(dm_for(tiny_mmsa_aligned), 5)
    assert order(a) == order(b)
    ma, mb = masks(a), masks(b)
    assert ma.keys() == mb.keys() and all(torch.equal(ma[k], mb[k]) for k in ma)
    for (_, x), (_, y) in zip(a.train_batches, b.train_batches):
        for m in x.inputs:
            assert torch.equal(x.inputs[m], y.inputs[m])


def test_unseeded_run_uses_seed_zero(tiny_mmsa_aligned: Path) -> None:
    unseeded = fit(dm_for(tiny_mmsa_aligned), None)
    zero = fit(dm_for(tiny_mmsa_aligned, seed=0, train_missing=MissingAugmentation(**AUG, seed=0)), 123)
    assert order(unseeded) == order(zero)
    mu, mz = masks(unseeded), masks(zero)
    assert all(torch.equal(mu[k], mz[k]) for k in mu)


def test_explicit_datamodule_seed_pins_order_and_masks_across_run_seeds(tiny_mmsa_aligned: Path) -> None:
    a = fit(dm_for(tiny_mmsa_aligned, seed=5), 1)
    b = fit(dm_for(tiny_mmsa_aligned, seed=5), 2)
    assert order(a) == order(b)
    ma, mb = masks(a), masks(b)
    assert all(torch.equal(ma[k], mb[k]) for k in ma)
    # and it is the seed-5 stream: the same as a run seeded with 5 and nothing pinned
    c = fit(dm_for(tiny_mmsa_aligned), 5)
    assert order(c) == order(a)


def test_train_missing_seed_pins_only_the_masks(tiny_mmsa_aligned: Path) -> None:
    pinned = dict(train_missing=MissingAugmentation(**AUG, seed=7))
    a = fit(dm_for(tiny_mmsa_aligned, **pinned), 1)
    b = fit(dm_for(tiny_mmsa_aligned, **pinned), 2)
    assert order(a) != order(b)  # the order still follows the run
    ma, mb = masks(a), masks(b)
    assert all(torch.equal(ma[k], mb[k]) for k in ma)  # the masks are pinned


def test_evaluation_condition_is_pinned_by_default_and_can_follow_the_run(tiny_mmsa_aligned: Path) -> None:
    def val(seed: int, cond: MissingCondition) -> list[Batch]:
        return fit(dm_for(tiny_mmsa_aligned, eval_missing=cond), seed, epochs=1).val_batches

    pinned = MissingCondition(0.5, "lav")
    for x, y in zip(val(1, pinned), val(2, pinned)):
        assert torch.equal(x.inputs["audio"], y.inputs["audio"])
    follow = MissingCondition(0.5, "lav", seed=None)
    x, y = val(1, follow)[0], val(2, follow)[0]
    assert torch.equal(x.index, y.index) and not torch.equal(x.inputs["audio"], y.inputs["audio"])
    assert torch.equal(val(1, follow)[0].inputs["audio"], x.inputs["audio"])


# -- the CLI and the shipped configs -------------------------------------------------------------------------
class Recorder(Callback):
    def __init__(self) -> None:
        self.batches: list[Batch] = []

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Batch,
                             batch_idx: int) -> None:
        self.batches.append(batch)


def test_cli_seed_everything_drives_order_and_masks(tiny_run_args: list[str]) -> None:
    from lightning_kd.cli import build_cli

    def run(seed: int) -> list[Batch]:
        fusion = ["-c", str(ROOT / "configs/fusion/mosi_aligned.yaml")]  # the fusion config, under the tiny args
        cli = build_cli([*fusion, *tiny_run_args[2:], "--seed_everything", str(seed),
                         "--data.init_args.train_missing.max_rate", "0.6",
                         "--data.init_args.train_missing.modality_prob", "0.5", "--trainer.max_epochs", "1",
                         "--trainer.limit_train_batches", "2", "--trainer.limit_val_batches", "1"], run=False)
        rec = Recorder()
        cli.trainer.callbacks.append(rec)
        cli.trainer.fit(cli.model, datamodule=cli.datamodule)
        return rec.batches

    a, b, a2 = run(3), run(4), run(3)
    assert [x.index.tolist() for x in a] == [x.index.tolist() for x in a2]
    assert [x.index.tolist() for x in a] != [x.index.tolist() for x in b]
    for x, y in zip(a, a2):
        assert torch.equal(x.inputs["audio"], y.inputs["audio"])
    # the same samples, other run seed: other frames dropped / modalities removed
    def per_sample(batches: list[Batch]) -> dict[int, Tensor]:
        return {i: torch.cat([x.inputs["audio"][j].flatten(), x.masks["audio"][j].float()])
                for x in batches for j, i in enumerate(x.index.tolist())}

    pa, pb = per_sample(a), per_sample(b)
    common = pa.keys() & pb.keys()
    assert len(common) >= 8
    assert sum(not torch.equal(pa[i], pb[i]) for i in common) > len(common) // 2


def _data_args(cfg: dict) -> dict:
    data = cfg.get("data") or {}
    return data.get("init_args") or {}


@pytest.mark.parametrize("config", sorted(str(p.relative_to(ROOT)) for p in (ROOT / "configs").rglob("*.yaml")))
def test_shipped_configs_do_not_pin_the_training_stream(config: str) -> None:
    args = _data_args(yaml.safe_load((ROOT / config).read_text()) or {})
    assert "seed" not in args, f"{config}: data.init_args.seed pins the batch order across --seed_everything"
    assert "seed" not in (args.get("train_missing") or {}), \
        f"{config}: train_missing.seed pins the training masks across --seed_everything"
