"""Prototype-based modality rebalancing (PMR rule, ModalityRebalancing callback) and that it acts on a tiny teacher."""

from __future__ import annotations

from contextlib import nullcontext
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch
from cdgkd_helpers import TinyEEGFaceData, tiny_module_kwargs

from lightning_kd.callbacks.rebalancing import ModalityRebalancing, rebalance_coefficients
from lightning_kd.checkpoint import ConfigError
from lightning_kd.methods.cdgkd.losses import RunningPrototypes, prototype_loss

pytestmark = pytest.mark.usefixtures("single_thread")


# -- the rule, by hand ----------------------------------------------------------------------------------------
@pytest.mark.parametrize(("face", "eeg", "beta", "gamma"), [
    (30.0, 40.0, 1 / 0.75 - 1, 0.0),  # rho = 0.75 < 1: face lags, beta = 1/rho - 1 = 1/3
    (50.0, 40.0, 0.0, 0.25),  # rho = 1.25: EEG lags, gamma = rho - 1
    (10.0, 40.0, 1.0, 0.0),  # rho = 0.25: 1/rho - 1 = 3, clipped to 1
    (100.0, 40.0, 0.0, 1.0),  # rho = 2.5: rho - 1 = 1.5, clipped to 1
    (40.0, 40.0, 0.0, 0.0),  # balanced
])
def test_pmr_rule_by_hand(face: float, eeg: float, beta: float, gamma: float) -> None:
    out = rebalance_coefficients({"face": face, "eeg": eeg})
    assert out["face"] == pytest.approx(beta, abs=1e-12)
    assert out["eeg"] == pytest.approx(gamma, abs=1e-12)


def test_rule_for_three_modalities_and_bad_input() -> None:
    out = rebalance_coefficients({"a": 30.0, "b": 45.0, "c": 60.0})  # each against the strongest (60)
    assert out == pytest.approx({"a": 1.0, "b": 60 / 45 - 1, "c": 0.0})
    with pytest.raises(ValueError, match="at least two"):
        rebalance_coefficients({"a": 1.0})
    with pytest.raises(ValueError, match="positive"):
        rebalance_coefficients({"a": 0.0, "b": 1.0})
    with pytest.raises(ConfigError, match="two distinct"):
        ModalityRebalancing(["face", "face"])


def test_callback_state_round_trip() -> None:
    cb = ModalityRebalancing(["face", "eeg"])
    cb.coefficients = {"face": 0.4, "eeg": 0.0}
    other = ModalityRebalancing(["face", "eeg"])
    other.load_state_dict(cb.state_dict())
    assert other.coefficients == {"face": 0.4, "eeg": 0.0}
    with pytest.raises(ConfigError, match="same modalities"):
        ModalityRebalancing(["face", "audio"]).load_state_dict(cb.state_dict())


def test_batch_prototypes_make_noise_look_confident_running_ones_do_not() -> None:
    """Why running prototypes are the default: with a batch's own class means a pure-noise embedding looks
    confident (each sample pulls its own prototype); prototypes from other batches give ~chance."""
    g = torch.Generator().manual_seed(0)
    batch_p, running_p = [], []
    protos = RunningPrototypes(2, 40)
    for _ in range(20):
        z, y = torch.randn(16, 40, generator=g), torch.arange(16) % 2
        batch_p.append(prototype_loss(z, y)[1].mean())
        if bool(protos.seen.all()):
            running_p.append(prototype_loss(z, y, prototypes=protos.current(z, y))[1].mean())
        protos.update(z, y)
    assert float(torch.stack(batch_p).mean()) > 0.8
    assert abs(float(torch.stack(running_p).mean()) - 0.5) < 0.1


# -- rebalancing moves on a tiny teacher ------------------------------------------------------------------------
class _Record(pl.Callback):
    """Coefficients the module trains with at each epoch start, and the callback's values after each epoch."""

    def __init__(self) -> None:
        self.start: list[dict[str, float]] = []
        self.end: list[dict[str, float]] = []

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.start.append(dict(pl_module.rebalance))

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.end.append(dict(pl_module.rebalance))


def _fit(informative: tuple[str, ...], epochs: int, root: Path | None = None, ckpt: str | None = None,
         role: str = "teacher", **model: object) -> tuple[_Record, pl.Trainer, pl.LightningModule]:
    from lightning_kd.methods.cdgkd import CDGKD

    pl.seed_everything(0)
    module = CDGKD(**tiny_module_kwargs(role=role, **model))
    record = _Record()
    callbacks: list[pl.Callback] = [ModalityRebalancing(["face", "eeg"]), record]
    if root is not None:
        callbacks.append(pl.callbacks.ModelCheckpoint(dirpath=root / "ckpt", filename="last", monitor=None,
                                                      save_top_k=1, enable_version_counter=False))
    logger = pl.loggers.CSVLogger(root / "logs") if root is not None else False
    trainer = pl.Trainer(max_epochs=epochs, callbacks=callbacks, logger=logger, enable_checkpointing=root is not None,
                         enable_progress_bar=False, enable_model_summary=False, accelerator="cpu", devices=1)
    trainer.fit(module, TinyEEGFaceData(informative=informative), ckpt_path=ckpt)
    return record, trainer, module


@pytest.mark.parametrize(("informative", "weak", "strong"), [(("eeg",), "face", "eeg"), (("face",), "eeg", "face")])
def test_rebalancing_moves_toward_the_weakened_modality(informative: tuple[str, ...], weak: str, strong: str) -> None:
    record, trainer, _ = _fit(informative, epochs=4)
    assert record.start[0] == {"face": 0.0, "eeg": 0.0}  # PMR starts at 0
    last = record.end[-1]
    assert last[weak] > 0.05, record.end  # the coefficient of the noise modality left 0 ...
    assert last[strong] == 0.0, record.end  # ... and the label-carrying one stays at 0
    # and the module trained with them: the next epoch starts with the coefficients set at the previous end
    assert record.start[1:] == record.end[:-1]
    assert trainer.callback_metrics[f"rebalance/{weak}"] == pytest.approx(last[weak])
    assert trainer.callback_metrics[f"rebalance/p_{strong}"] > trainer.callback_metrics[f"rebalance/p_{weak}"]


def test_resumed_run_continues_with_the_same_coefficients(tmp_path: Path) -> None:
    quiet = {"net": {"hidden": 16, "dropout": 0.0}}  # no dropout: no RNG state the checkpoint would not hold
    full, _, _ = _fit(("eeg",), epochs=3, **quiet)
    _fit(("eeg",), epochs=2, root=tmp_path, **quiet)
    resumed, _, _ = _fit(("eeg",), epochs=3, root=tmp_path / "b", ckpt=str(tmp_path / "ckpt" / "last.ckpt"), **quiet)
    assert resumed.start == [full.start[2]]
    assert resumed.end == [full.end[2]]
    assert full.start[2]["face"] > 0


@pytest.mark.parametrize("role", ["student", "eeg"])
def test_callback_is_inert_on_a_one_modality_model(role: str, tmp_path: Path) -> None:
    """One run policy carries the callback for every stage: a one-modality CDGKD fits with it, logs no
    rebalance/*, and its coefficients stay untouched; the two-modality teacher in the same setting logs them."""
    import csv

    def logged(root: Path) -> set[str]:
        (metrics,) = root.rglob("metrics.csv")
        return {k for r in csv.DictReader(metrics.open()) for k, v in r.items() if v}

    expected = pytest.warns(UserWarning, match="without teacher_ckpts") if role == "student" else nullcontext()
    with expected:  # a student without teachers says it trains on cross-entropy alone
        record, trainer, module = _fit(("eeg", "face"), epochs=2, root=tmp_path / role, role=role)
    assert trainer.current_epoch == 2 and module.true_class_prob_sums() == {}
    assert not any(k.startswith("rebalance/") for k in logged(tmp_path / role))
    assert record.end == [dict.fromkeys(module.modalities, 0.0)] * 2
    _fit(("eeg", "face"), epochs=2, root=tmp_path / "teacher")
    assert {"rebalance/face", "rebalance/eeg", "rebalance/p_face", "rebalance/p_eeg"} <= logged(tmp_path / "teacher")
