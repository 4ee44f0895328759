"""Missing-modality protocol (lightning_kd.data.missing) and its datamodule hook.

Frame dropping and modality removal at evaluation (MissingCondition) and as training augmentation
(MissingAugmentation): statistics, the padding / mask / [CLS]-[SEP] rules, counter-based determinism
(seed, sample index, epoch) and the InMemoryDataModule hook that applies them to every batch.
"""

from __future__ import annotations

import math
import random
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch
from torch import Tensor, nn

from lightning_kd.data.batch import Batch
from lightning_kd.data.formats.mmsa import MMSADataModule
from lightning_kd.data.missing import (
    INCOMPLETE_SETTINGS,
    MODALITY_SETTINGS,
    UNK_ID,
    MissingAugmentation,
    MissingCondition,
    _hash32,
    apply_missing,
    hash_uniform,
)

pytestmark = pytest.mark.usefixtures("single_thread")

FEATURES = ("text", "audio", "vision")
DIMS = {"text": 3, "audio": 2, "vision": 4}
PAD_VALUE = 7.0  # padding holds a recognisable non-zero value: it must never change
CLS, SEP, PAD = 101, 102, 0


def make_batch(n: int = 600, steps: int = 20, seed: int = 0, bert: bool = False, min_len: int = 3) -> Batch:
    """Features that are never exactly 0 on valid steps, PAD_VALUE on padding.

    text and vision are right padded (MMSA), audio is left padded (MulT), each modality with its own lengths.
    With ``bert`` a ``text_bert`` (B, 3, L) input (ids, attention mask, segments) replaces ``text``.
    """
    g = torch.Generator().manual_seed(seed)
    inputs, masks = {}, {}
    pos = torch.arange(steps)[None, :]
    for m in FEATURES:
        lens = torch.randint(min_len, steps + 1, (n,), generator=g)
        valid = pos >= (steps - lens)[:, None] if m == "audio" else pos < lens[:, None]
        x = torch.rand(n, steps, DIMS[m], generator=g) + 0.5
        inputs[m] = torch.where(valid[..., None], x, torch.full_like(x, PAD_VALUE))
        masks[m] = valid
    if bert:
        valid = masks.pop("text")
        del inputs["text"]
        lens = valid.sum(1)
        ids = torch.randint(1000, 2000, (n, steps), generator=g)
        ids[:, 0] = CLS
        ids[torch.arange(n), lens - 1] = SEP
        ids = torch.where(valid, ids, torch.full_like(ids, PAD))
        inputs["text_bert"] = torch.stack([ids, valid.long(), torch.zeros_like(ids)], 1)
        masks["text_bert"] = valid
    return Batch(inputs=inputs, masks=masks, target=torch.randn(n, generator=g), index=torch.arange(n) + 1000)


def feature_drops(before: Batch, after: Batch, name: str) -> Tensor:
    """(B, L) bool: the steps of a feature input that became all-zero."""
    return (after.inputs[name] == 0).all(-1) & ~(before.inputs[name] == 0).all(-1)


def sub_batch(batch: Batch, sel: Tensor) -> Batch:
    return Batch(inputs={k: v[sel] for k, v in batch.inputs.items()}, masks={k: v[sel] for k, v in batch.masks.items()},
                 target=batch.target[sel], index=batch.index[sel])


def assert_batches_equal(a: Batch, b: Batch) -> None:
    assert a.inputs.keys() == b.inputs.keys() and a.masks.keys() == b.masks.keys()
    for k in a.inputs:
        assert torch.equal(a.inputs[k], b.inputs[k]), k
    for k in a.masks:
        assert torch.equal(a.masks[k], b.masks[k]), k


def binomial_tol(p: float, n: int, z: float = 5.0) -> float:
    return z * math.sqrt(max(p * (1 - p), 1e-4) / n) + 1e-9


# -- counter-based randomness ---------------------------------------------------------------------
def _lowbias32_ref(x: int) -> int:
    m = 0xFFFFFFFF
    x ^= x >> 16
    x = (x * 0x7FEB352D) & m
    x ^= x >> 15
    x = (x * 0x846CA68B) & m
    return x ^ (x >> 16)


def test_hash32_matches_reference_on_the_whole_32_bit_range() -> None:
    rng = random.Random(0)
    values = [0, 1, 0xFFFF, 0x10000, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF] + [rng.getrandbits(32) for _ in range(500)]
    got = _hash32(torch.tensor(values, dtype=torch.long)).tolist()
    assert got == [_lowbias32_ref(v) for v in values]


def test_hash_uniform_is_uniform_pure_and_keyed() -> None:
    idx = torch.arange(3000)
    u = hash_uniform(7, 1, idx, 16)
    assert u.shape == (3000, 16) and u.dtype == torch.float32
    assert u.min() >= 0 and u.max() < 1
    assert abs(u.mean().item() - 0.5) < 0.01 and abs(u.var().item() - 1 / 12) < 0.003
    hist = torch.histc(u, bins=20, min=0, max=1)
    expected = u.numel() / 20
    assert ((hist - expected) ** 2 / expected).sum() < 80  # chi-square, 19 dof (99.99th percentile ~ 49)
    # neighbouring steps / samples are uncorrelated
    assert abs(torch.corrcoef(torch.stack([u[:, :-1].flatten(), u[:, 1:].flatten()]))[0, 1]) < 0.03
    assert abs(torch.corrcoef(torch.stack([u[:-1].flatten(), u[1:].flatten()]))[0, 1]) < 0.03
    # a pure function of (key, stream, index, step): other samples in the call do not matter
    assert torch.equal(hash_uniform(7, 1, idx[[5, 2999, 17]], 16), u[[5, 2999, 17]])
    assert torch.equal(hash_uniform(7, 1, idx, 16), u)
    assert torch.equal(hash_uniform(7, 1, idx, 4), u[:, :4])
    assert not torch.equal(hash_uniform(8, 1, idx, 16), u)
    assert not torch.equal(hash_uniform(7, 2, idx, 16), u)


# -- frame dropping -------------------------------------------------------------------------------
@pytest.mark.parametrize("p", [0.1, 0.3, 0.6, 0.9])
def test_frame_drop_rate_matches_p_and_padding_is_untouched(p: float) -> None:
    batch = make_batch()
    out = MissingCondition(p, "lav", seed=3).apply(batch)
    drops = {}
    for m in FEATURES:
        valid, x, y = batch.masks[m], batch.inputs[m], out.inputs[m]
        dropped = feature_drops(batch, out, m)
        assert not dropped[~valid].any(), f"{m}: a padding step was dropped"
        assert torch.equal(y[~valid], x[~valid]), f"{m}: padding changed"
        assert torch.equal(y[valid & ~dropped], x[valid & ~dropped]), f"{m}: a kept step changed"
        assert (y[dropped] == 0).all()
        n = int(valid.sum())
        frac = dropped[valid].float().mean().item()
        assert abs(frac - p) < binomial_tol(p, n), (m, frac, p, n)
        assert torch.equal(out.masks[m], valid), "frame drops must leave the masks as they are"
        drops[m] = dropped
    # modalities drop independently: on steps valid in both, P(both dropped) = p^2
    both = batch.masks["text"] & batch.masks["vision"]
    frac_both = (drops["text"] & drops["vision"])[both].float().mean().item()
    assert abs(frac_both - p * p) < binomial_tol(p * p, int(both.sum()))
    # the input batch is not modified
    assert torch.equal(batch.inputs["text"], make_batch().inputs["text"])


def test_rate_zero_and_one() -> None:
    batch = make_batch(n=50)
    assert MissingCondition(0.0, "lav").apply(batch) is batch  # the complete condition is the identity
    assert MissingCondition(0.0, "lav").is_complete and not MissingCondition(0.1).is_complete
    out = MissingCondition(1.0, "lav").apply(batch)
    for m in FEATURES:
        valid = batch.masks[m]
        assert (out.inputs[m][valid] == 0).all() and torch.equal(out.inputs[m][~valid], batch.inputs[m][~valid])
        assert torch.equal(out.masks[m], valid)


def test_same_seed_same_masks_other_seed_other_masks() -> None:
    batch = make_batch(n=200)
    a = MissingCondition(0.4, "lav", seed=11).apply(batch)
    b = MissingCondition(0.4, "lav", seed=11).apply(batch)
    c = MissingCondition(0.4, "lav", seed=12).apply(batch)
    assert_batches_equal(a, b)
    for m in FEATURES:
        assert not torch.equal(feature_drops(batch, a, m), feature_drops(batch, c, m)), m


def test_mask_of_a_sample_does_not_depend_on_the_batch_composition() -> None:
    batch = make_batch(n=120, bert=True)
    cond = MissingCondition(0.5, "la", seed=5)
    full = cond.apply(batch)
    sel = torch.randperm(120, generator=torch.Generator().manual_seed(1))[:17]  # other order, other size
    assert_batches_equal(cond.apply(sub_batch(batch, sel)), sub_batch(full, sel))
    # the same holds for the training augmentation
    aug = MissingAugmentation(0.1, 0.9, 0.5, seed=2)
    assert_batches_equal(aug.apply(sub_batch(batch, sel), epoch=3), sub_batch(aug.apply(batch, epoch=3), sel))


def test_dropped_sets_are_nested_across_rates() -> None:
    batch = make_batch(n=300, bert=True)
    low = MissingCondition(0.3, "lav", seed=9).apply(batch)
    high = MissingCondition(0.6, "lav", seed=9).apply(batch)
    for m in ("audio", "vision"):
        d_low, d_high = feature_drops(batch, low, m), feature_drops(batch, high, m)
        assert d_low.sum() < d_high.sum()
        assert not (d_low & ~d_high).any(), f"{m}: dropped at p=0.3 but kept at p=0.6"
    ids0, ids_low, ids_high = (b.inputs["text_bert"][:, 0] for b in (batch, low, high))
    unk_low, unk_high = (ids_low == UNK_ID) & (ids0 != UNK_ID), (ids_high == UNK_ID) & (ids0 != UNK_ID)
    assert unk_low.any() and not (unk_low & ~unk_high).any()


@pytest.mark.parametrize("p", [0.3, 0.8])
def test_text_bert_tokens_become_unk_and_cls_sep_stay(p: float) -> None:
    batch = make_batch(n=600, bert=True)
    out = MissingCondition(p, "lav", seed=4).apply(batch)
    x, y = batch.inputs["text_bert"], out.inputs["text_bert"]
    assert y.dtype == x.dtype and y.shape == x.shape
    assert torch.equal(y[:, 1:], x[:, 1:]), "attention mask and segment rows are not changed"
    ids, new = x[:, 0], y[:, 0]
    valid = batch.masks["text_bert"]
    special = (ids == CLS) | (ids == SEP)
    assert special.sum() == 2 * len(batch)
    assert torch.equal(new[special], ids[special]), "[CLS] / [SEP] must stay"
    assert torch.equal(new[~valid], ids[~valid]) and (new[~valid] == PAD).all(), "padding must stay"
    changed = new != ids
    assert (new[changed] == UNK_ID).all()
    body = valid & ~special
    frac = changed[body].float().mean().item()
    assert abs(frac - p) < binomial_tol(p, int(body.sum())), frac
    assert torch.equal(out.masks["text_bert"], valid)


def test_modality_removal() -> None:
    batch = make_batch(n=80, bert=True)
    for setting in INCOMPLETE_SETTINGS:
        out = MissingCondition(0.0, setting, seed=1).apply(batch)
        for name in ("text_bert", "audio", "vision"):
            letter = "l" if name == "text_bert" else name[0]
            x, y, valid = batch.inputs[name], out.inputs[name], batch.masks[name]
            if letter in setting:  # available at rate 0: untouched
                assert torch.equal(y, x) and torch.equal(out.masks[name], valid), (setting, name)
                continue
            assert not out.masks[name].any(), f"{setting}: removed {name} must have an all-False mask"
            if name == "text_bert":
                ids, new = x[:, 0], y[:, 0]
                special = (ids == CLS) | (ids == SEP)
                assert (new[valid & ~special] == UNK_ID).all() and torch.equal(new[special], ids[special])
                assert torch.equal(new[~valid], ids[~valid])
            else:
                assert (y[valid] == 0).all() and torch.equal(y[~valid], x[~valid]), (setting, name)
        assert torch.equal(out.target, batch.target) and torch.equal(out.index, batch.index)
        assert_batches_equal(out.complete(), batch)


def test_removal_combined_with_frame_drops() -> None:
    batch = make_batch(n=400)
    out = MissingCondition(0.5, "v", seed=2).apply(batch)
    for m in ("text", "audio"):
        assert (out.inputs[m][batch.masks[m]] == 0).all() and not out.masks[m].any()
    frac = feature_drops(batch, out, "vision")[batch.masks["vision"]].float().mean().item()
    assert abs(frac - 0.5) < binomial_tol(0.5, int(batch.masks["vision"].sum()))
    assert torch.equal(out.masks["vision"], batch.masks["vision"])


def test_settings_and_letters() -> None:
    assert MODALITY_SETTINGS == ("l", "a", "v", "la", "lv", "av", "lav")
    assert INCOMPLETE_SETTINGS == MODALITY_SETTINGS[:-1]
    assert MissingCondition(0.1, "vl").available == "lv" and MissingCondition(0.1, "avl").available == "lav"


# -- training augmentation ------------------------------------------------------------------------
def test_augmentation_is_deterministic_per_seed_and_epoch() -> None:
    batch = make_batch(n=200, bert=True)
    aug = MissingAugmentation(0.0, 1.0, 0.5, seed=0)
    assert_batches_equal(aug.apply(batch, epoch=0), MissingAugmentation(0.0, 1.0, 0.5, seed=0).apply(batch, epoch=0))
    e0, e1 = aug.apply(batch, epoch=0), aug.apply(batch, epoch=1)
    other_seed = MissingAugmentation(0.0, 1.0, 0.5, seed=1).apply(batch, epoch=0)
    for m in ("audio", "vision"):
        assert not torch.equal(e0.inputs[m], e1.inputs[m]), "every epoch draws new masks"
        assert not torch.equal(e0.inputs[m], other_seed.inputs[m])
    assert not torch.equal(e0.masks["audio"], e1.masks["audio"])  # other removed modalities too


def test_augmentation_per_sample_rate_is_uniform() -> None:
    n, steps = 1000, 100
    batch = make_batch(n=n, steps=steps, min_len=steps)  # every step valid: per-sample rate is observable
    lo, hi = 0.2, 0.7
    out = MissingAugmentation(lo, hi, 0.0, seed=5).apply(batch, epoch=2)
    per_sample = torch.stack([feature_drops(batch, out, m).float().mean(1) for m in FEATURES]).mean(0)  # (B,)
    # each estimate has sd <= sqrt(0.25 / 300) ~ 0.03 around the sample's own rate ~ U(lo, hi)
    assert per_sample.min() > lo - 0.12 and per_sample.max() < hi + 0.12
    assert abs(per_sample.mean().item() - (lo + hi) / 2) < 0.01
    q = torch.linspace(0.1, 0.9, 9)
    assert torch.allclose(per_sample.quantile(q), lo + (hi - lo) * q, atol=0.03)
    # same rate for every modality of a sample: the per-modality fractions are strongly correlated
    fr = torch.stack([feature_drops(batch, out, m).float().mean(1) for m in ("audio", "vision")])
    assert torch.corrcoef(fr)[0, 1] > 0.8
    for m in FEATURES:
        assert torch.equal(out.masks[m], batch.masks[m]), "modality_prob 0: no modality removed"


def test_augmentation_removes_modalities_with_modality_prob() -> None:
    n, prob = 4000, 0.3
    batch = make_batch(n=n, steps=6)
    out = MissingAugmentation(0.0, 0.0, prob, seed=8).apply(batch, epoch=0)
    kept = {m[0].replace("t", "l"): out.masks[m].any(1) for m in FEATURES}  # every sample has valid steps
    incomplete = ~(kept["l"] & kept["a"] & kept["v"])
    assert abs(incomplete.float().mean().item() - prob) < binomial_tol(prob, n)
    # the removed sets are the six incomplete settings, uniformly
    setting = ["".join(m for m in "lav" if kept[m][i]) for i in range(n)]
    assert "" not in setting
    for s in INCOMPLETE_SETTINGS:
        share = sum(x == s for x in setting) / n
        assert abs(share - prob / 6) < binomial_tol(prob / 6, n), (s, share)
    # max_rate 0: no frame of an available modality is dropped, removed modalities are zero
    for m in FEATURES:
        avail = out.masks[m].any(1)
        assert torch.equal(out.inputs[m][avail], batch.inputs[m][avail])
        assert (out.inputs[m][~avail][batch.masks[m][~avail]] == 0).all()


def test_complete_returns_the_original_batch() -> None:
    batch = make_batch(n=64, bert=True)
    assert batch.complete() is batch and batch.complete_inputs is None
    out = MissingAugmentation(0.2, 0.9, 0.7, seed=1).apply(batch, epoch=4)
    assert not torch.equal(out.inputs["audio"], batch.inputs["audio"])
    full = out.complete()
    assert_batches_equal(full, batch)
    assert torch.equal(full.target, batch.target) and torch.equal(full.index, batch.index)
    assert full.complete_inputs is None
    # a condition applied on top of an augmented batch still keeps the originals
    again = MissingCondition(0.5, "a").apply(out)
    assert_batches_equal(again.complete(), batch)
    # identity augmentation: the batch itself
    assert MissingAugmentation().apply(batch, epoch=0) is batch and MissingAugmentation().is_identity
    moved = out.to("cpu")
    assert_batches_equal(moved.complete(), batch)


def test_invalid_arguments_raise_value_error() -> None:
    for kwargs in ({"rate": -0.1}, {"rate": 1.5}, {"available": ""}, {"available": "l+"}, {"available": "eeg face"},
                   {"available": "avg"}, {"available": "all+l"}):
        with pytest.raises(ValueError):
            MissingCondition(**kwargs)
    # names are settings now ("text" = "l"); a name the data does not have stops when the condition is applied
    assert torch.equal(MissingCondition(0.5, "text").apply(make_batch(n=4)).inputs["audio"],
                       MissingCondition(0.5, "l").apply(make_batch(n=4)).inputs["audio"])
    for available in ("lx", "eeg", "text+eeg"):
        with pytest.raises(ValueError, match="does not have"):
            MissingCondition(0.5, available).apply(make_batch(n=4))
    for kwargs in ({"min_rate": 0.5, "max_rate": 0.2}, {"min_rate": -0.1, "max_rate": 0.5}, {"max_rate": 1.5},
                   {"modality_prob": -0.1}, {"modality_prob": 1.1}):
        with pytest.raises(ValueError):
            MissingAugmentation(**kwargs)
    batch = make_batch(n=4)
    no_index = Batch(inputs=batch.inputs, masks=batch.masks, target=batch.target)
    with pytest.raises(ValueError, match="index"):
        MissingAugmentation(0.1, 0.5).apply(no_index, epoch=0)
    with pytest.raises(ValueError, match="index"):
        MissingCondition(0.5).apply(no_index)
    eeg = Batch(inputs={"eeg": torch.ones(2, 3, 1)}, masks={"eeg": torch.ones(2, 3, dtype=torch.bool)},
                index=torch.arange(2))
    with pytest.raises(ValueError, match="eeg"):
        MissingCondition(0.5).apply(eeg)


def test_apply_missing_with_per_sample_rates_and_keeps() -> None:
    batch = make_batch(n=4, steps=30, min_len=30)
    rate = torch.tensor([0.0, 1.0, 0.0, 1.0])
    keep = {"l": torch.tensor([True, True, False, False]), "a": torch.ones(4, dtype=torch.bool),
            "v": torch.ones(4, dtype=torch.bool)}
    out = apply_missing(batch, rate, keep, key=123)
    t0, t1 = batch.inputs["text"], out.inputs["text"]
    assert torch.equal(t1[0], t0[0]) and (t1[1:] == 0).all()
    assert out.masks["text"].tolist() == [[True] * 30, [True] * 30, [False] * 30, [False] * 30]
    assert torch.equal(out.inputs["audio"][[0, 2]], batch.inputs["audio"][[0, 2]])
    assert (out.inputs["audio"][[1, 3]] == 0).all()


# -- the datamodule hook --------------------------------------------------------------------------
class Probe(pl.LightningModule):
    """Records every batch it is given; learns nothing."""

    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.zeros(1))
        self.seen: dict[str, list[tuple[int, Batch]]] = {"train": [], "val": [], "test": [], "predict": []}

    def training_step(self, batch: Batch, batch_idx: int) -> Tensor:
        self.seen["train"].append((self.current_epoch, batch))
        return self.w.sum() * 0.0

    def validation_step(self, batch: Batch, batch_idx: int) -> None:
        self.seen["val"].append((self.current_epoch, batch))

    def test_step(self, batch: Batch, batch_idx: int) -> None:
        self.seen["test"].append((self.current_epoch, batch))

    def predict_step(self, batch: Batch, batch_idx: int) -> Tensor:
        self.seen["predict"].append((self.current_epoch, batch))
        return self.w

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def raw(dm: MMSADataModule, split: str, index: Tensor) -> Batch:
    s = dm.split(split)
    return Batch(inputs={k: v[index] for k, v in s.inputs.items()}, masks={k: v[index] for k, v in s.masks.items()},
                 target=s.target[index], index=index)


def test_datamodule_applies_train_augmentation_and_eval_condition(tiny_mmsa_aligned: Path) -> None:
    aug = MissingAugmentation(0.2, 0.8, 0.5, seed=3)
    cond = MissingCondition(0.5, "la", seed=1)
    dm = MMSADataModule(str(tiny_mmsa_aligned), batch_size=8, train_missing=aug, eval_missing=cond)
    probe = Probe()
    trainer = pl.Trainer(accelerator="cpu", devices=1, max_epochs=2, limit_val_batches=1, num_sanity_val_steps=1,
                         logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False)
    trainer.fit(probe, datamodule=dm)

    train = probe.seen["train"]
    assert [e for e, _ in train] == [0] * 5 + [1] * 5
    for epoch, b in train:
        original = raw(dm, "train", b.index)
        assert_batches_equal(b.complete(), original)  # the teacher's view: complete data
        assert_batches_equal(b, aug.apply(original, epoch=epoch))  # the student's view: augmented with the epoch
    # the augmentation changed something, and epochs differ for the same sample
    assert any(not torch.equal(b.inputs["audio"], b.complete().inputs["audio"]) for _, b in train)
    first = {int(i): (b, j) for _, b in train[:5] for j, i in enumerate(b.index)}
    second = {int(i): (b, j) for _, b in train[5:] for j, i in enumerate(b.index)}
    assert first.keys() == second.keys() == set(range(40))
    assert any(not torch.equal(first[i][0].inputs["text"][first[i][1]], second[i][0].inputs["text"][second[i][1]])
               for i in range(40))

    val = probe.seen["val"]
    assert len(val) == 3  # sanity check + 2 epochs
    for _, b in val:
        original = raw(dm, "valid", b.index)
        assert_batches_equal(b, cond.apply(original))
        assert not b.masks["vision"].any() and b.masks["text"].any()
        assert_batches_equal(b.complete(), original)
    assert_batches_equal(val[0][1], val[-1][1])  # evaluation conditions do not depend on the epoch

    trainer.test(probe, datamodule=dm, verbose=False)
    trainer.predict(probe, datamodule=dm)
    for stage, split in (("test", "test"), ("predict", "test")):
        assert probe.seen[stage]
        for _, b in probe.seen[stage]:
            assert_batches_equal(b, cond.apply(raw(dm, split, b.index)))

    # without eval_missing, evaluation batches are complete
    dm.eval_missing = None
    probe.seen["val"].clear()
    trainer.validate(probe, datamodule=dm, verbose=False)
    for _, b in probe.seen["val"]:
        assert b.complete_inputs is None
        assert_batches_equal(b, raw(dm, "valid", b.index))


def test_datamodule_without_missing_options_yields_complete_batches(tiny_mmsa_aligned: Path) -> None:
    dm = MMSADataModule(str(tiny_mmsa_aligned), batch_size=8)
    probe = Probe()
    trainer = pl.Trainer(accelerator="cpu", devices=1, max_epochs=1, limit_train_batches=2, limit_val_batches=1,
                         num_sanity_val_steps=0, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False)
    trainer.fit(probe, datamodule=dm)
    for stage in ("train", "val"):
        for _, b in probe.seen[stage]:
            assert b.complete_inputs is None
            assert_batches_equal(b, raw(dm, "train" if stage == "train" else "valid", b.index))
