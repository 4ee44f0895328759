"""Missing-modality protocol over modalities by name (lightning_kd.data.missing, issue 9).

Pinned first: the text/audio/vision masks of today's protocol, bit for bit (the stored CorrKD results depend
on them); the values below were computed with the letter-only code before modalities became names.
"""

from __future__ import annotations

import math
import zlib

import lightning.pytorch as pl
import pytest
import torch
from torch import nn

from lightning_kd.checkpoint import ConfigError
from lightning_kd.data.batch import Batch
from lightning_kd.data.datamodule import InMemoryDataModule
from lightning_kd.data.missing import (
    ALL,
    MODALITY_SETTINGS,
    TEXT_AUDIO_VISION,
    MissingAugmentation,
    MissingCondition,
    ModalityLayout,
    modality_stream,
    parse_setting,
    setting_label,
)
from lightning_kd.data.split import SplitTensors
from lightning_kd.robustness import read_robustness_csv
from lightning_kd.trainer import KDTrainer

pytestmark = pytest.mark.usefixtures("single_thread")


def binomial_tol(p: float, n: int, z: float = 5.0) -> float:
    return z * math.sqrt(max(p * (1 - p), 1e-4) / n) + 1e-9

# -- l/a/v masks are bit-identical to the letter-only protocol ------------------------------------------------
PIN_INDEX = torch.tensor([0, 1, 7, 42, 1000, 123456])
PIN_STEPS = 16


def pin_batch(bert: bool) -> Batch:
    """Ones on every step; text / vision right padded, audio left padded, lengths per sample."""
    n, steps = len(PIN_INDEX), PIN_STEPS
    pos = torch.arange(steps)[None, :]
    lens = torch.tensor([16, 12, 9, 16, 5, 14])
    right, left = pos < lens[:, None], pos >= (steps - lens)[:, None]
    inputs = {"audio": torch.ones(n, steps, 2), "vision": torch.ones(n, steps, 3)}
    masks = {"audio": left, "vision": right.clone()}
    if bert:
        ids = torch.where(right, torch.full((n, steps), 2000), torch.zeros(n, steps, dtype=torch.long))
        ids[:, 0] = 101
        ids[torch.arange(n), lens - 1] = 102
        inputs = {"text_bert": torch.stack([ids, right.long(), torch.zeros_like(ids)], 1), **inputs}
        masks = {"text_bert": right.clone(), **masks}
    else:
        inputs = {"text": torch.ones(n, steps, 4), **inputs}
        masks = {"text": right.clone(), **masks}
    return Batch(inputs=inputs, masks=masks, target=torch.zeros(n), index=PIN_INDEX)


def bits(rows: torch.Tensor) -> list[int]:
    """(B, L) bool -> one int per row, bit i = step i."""
    return [sum(int(b) << i for i, b in enumerate(r)) for r in rows.tolist()]


def summary(out: Batch) -> dict[str, tuple[list[int], list[int]]]:
    """input -> (dropped steps, mask) as bit rows."""
    res = {}
    for k, x in out.inputs.items():
        dropped = (x[:, 0] == 100) if k == "text_bert" else (x == 0).all(-1)
        res[k] = (bits(dropped), bits(out.masks[k]))
    return res


PINNED = {
    "cond_0.5_lav_s0": {
        "text": ([10804, 2718, 204, 55556, 1, 6177], [65535, 4095, 511, 65535, 31, 16383]),
        "audio": ([53869, 34160, 20992, 4394, 12288, 10932], [65535, 65520, 65408, 65535, 63488, 65532]),
        "vision": ([38888, 940, 128, 22408, 30, 6017], [65535, 4095, 511, 65535, 31, 16383])},
    "cond_0.3_lv_s7": {
        "text": ([7104, 2896, 216, 10823, 17, 1040], [65535, 4095, 511, 65535, 31, 16383]),
        "audio": ([65535, 65520, 65408, 65535, 63488, 65532], [0, 0, 0, 0, 0, 0]),
        "vision": ([8448, 136, 320, 48642, 16, 1376], [65535, 4095, 511, 65535, 31, 16383])},
    "cond_0.6_a_s2_bert": {
        "text_bert": ([32766, 2046, 254, 32766, 14, 8190], [0, 0, 0, 0, 0, 0]),
        "audio": ([37526, 13968, 34176, 21203, 55296, 21680], [65535, 65520, 65408, 65535, 63488, 65532]),
        "vision": ([65535, 4095, 511, 65535, 31, 16383], [0, 0, 0, 0, 0, 0])},
    "aug_0.2_0.9_0.5_s4_e3": {
        "text": ([28109, 4095, 30, 65535, 16, 9547], [65535, 0, 511, 0, 31, 16383]),
        "audio": ([42732, 24304, 65408, 28671, 63488, 55020], [65535, 65520, 0, 65535, 0, 65532]),
        "vision": ([44031, 4095, 511, 65533, 31, 13293], [65535, 0, 0, 65535, 0, 16383])},
    "aug_0.0_1.0_0.9_s1_e0_bert": {
        "text_bert": ([32766, 154, 254, 6800, 14, 8190], [0, 4095, 0, 65535, 0, 0]),
        "audio": ([57728, 65520, 65408, 65535, 49152, 64], [65535, 0, 0, 0, 63488, 65532]),
        "vision": ([65535, 4095, 59, 42151, 31, 16383], [0, 0, 511, 65535, 0, 0])},
}


def pinned_cases() -> dict[str, Batch]:
    return {
        "cond_0.5_lav_s0": MissingCondition(0.5, "lav", seed=0).apply(pin_batch(False)),
        "cond_0.3_lv_s7": MissingCondition(0.3, "lv", seed=7).apply(pin_batch(False)),
        "cond_0.6_a_s2_bert": MissingCondition(0.6, "a", seed=2).apply(pin_batch(True)),
        "aug_0.2_0.9_0.5_s4_e3": MissingAugmentation(0.2, 0.9, 0.5, seed=4).apply(pin_batch(False), epoch=3),
        "aug_0.0_1.0_0.9_s1_e0_bert": MissingAugmentation(0.0, 1.0, 0.9, seed=1).apply(pin_batch(True), epoch=0),
    }


def test_text_audio_vision_masks_are_pinned() -> None:
    for name, out in pinned_cases().items():
        assert summary(out) == PINNED[name], name


def test_names_and_datamodule_layouts_give_the_pinned_masks(tiny_mmsa_aligned, tiny_mult_mosi) -> None:
    """The same masks whether a setting is written in letters or names, with or without the data's layout."""
    from lightning_kd.data.formats.mmsa import MMSADataModule
    from lightning_kd.data.formats.mult import MulTDataModule

    layouts = []
    for dm in (MMSADataModule(str(tiny_mmsa_aligned)), MMSADataModule(str(tiny_mmsa_aligned), text="bert_ids"),
               MulTDataModule(str(tiny_mult_mosi))):
        assert dm.modalities == ("text", "audio", "vision")
        assert dm.modality_layout.settings() == MODALITY_SETTINGS
        layouts.append(dm.modality_layout)
    bert_layout = layouts[1]
    assert bert_layout.inputs["text_bert"] == "text" and bert_layout.step_axes["text_bert"] == 2
    for layout in (None, layouts[0], layouts[2]):
        assert summary(MissingCondition(0.3, "text+vision", seed=7).apply(pin_batch(False), layout)) \
            == PINNED["cond_0.3_lv_s7"]
        assert summary(MissingCondition(0.5, "all", seed=0).apply(pin_batch(False), layout)) \
            == PINNED["cond_0.5_lav_s0"]
        assert summary(MissingAugmentation(0.2, 0.9, 0.5, seed=4).apply(pin_batch(False), 3, layout)) \
            == PINNED["aug_0.2_0.9_0.5_s4_e3"]
    for layout in (None, bert_layout):
        assert summary(MissingCondition(0.6, "audio", seed=2).apply(pin_batch(True), layout)) \
            == PINNED["cond_0.6_a_s2_bert"]
        assert summary(MissingAugmentation(0.0, 1.0, 0.9, seed=1).apply(pin_batch(True), 0, layout)) \
            == PINNED["aug_0.0_1.0_0.9_s1_e0_bert"]


# -- settings by name ----------------------------------------------------------------------------------------
def test_settings_parse_names_and_letters() -> None:
    assert parse_setting("eeg+face") == ("eeg", "face") and parse_setting(" face ") == ("face",)
    assert parse_setting("lv") == ("text", "vision") and parse_setting("l+eeg") == ("text", "eeg")
    assert parse_setting("face+face+eeg") == ("face", "eeg") and parse_setting("all") == (ALL,)
    assert setting_label(("vision", "text")) == "lv" and setting_label(("face", "eeg"), ("eeg", "face")) == "eeg+face"
    assert setting_label(("eeg", "text")) == "text+eeg" and setting_label(("audio",), ("video", "audio")) == "audio"
    for bad in ("", "eeg+", "eeg face", "avg", "all+eeg", "eeg-1", "+"):
        with pytest.raises(ValueError):
            parse_setting(bad)
    # conditions keep the style they are written in: letters sorted (old labels and configs unchanged), names
    assert MissingCondition(0.1, "avl").available == "lav" and MissingCondition(0.1, "l").available == "l"
    assert MissingCondition(0.1, "vision+text+vision").available == "vision+text"
    assert MissingCondition(0.1, "face+eeg").available == "face+eeg" and MissingCondition().available == ALL
    assert MissingCondition().is_complete and MissingCondition(0.0, "lav").is_complete
    batch = pin_batch(False)
    assert MissingCondition(0.0, "text+audio+vision").apply(batch) is batch  # complete on this data: the identity

    layout = ModalityLayout(("eeg", "face"), {"eeg": "eeg", "face": "face"})
    assert layout.settings() == ("eeg", "face", "eeg+face") and layout.incomplete_settings() == ("eeg", "face")
    assert layout.label("face+eeg") == "eeg+face" and layout.label("all") == "eeg+face"
    assert layout.resolve("face") == {"face"} and layout.step_axes == {"eeg": 2, "face": 1}
    with pytest.raises(ValueError, match="does not have"):
        layout.resolve("lav")
    assert TEXT_AUDIO_VISION.label("vision+text") == "lv" and TEXT_AUDIO_VISION.label("all") == "lav"
    three = ModalityLayout(("video", "bio", "audio"), {"video": "video", "bio": "bio", "audio": "audio"})
    assert three.settings() == ("video", "bio", "audio", "video+bio", "video+audio", "bio+audio", "video+bio+audio")
    for modalities, inputs in ((("eeg", "eeg"), {}), (("val",), {}), (("all",), {}), (("eeg",), {"x": "face"})):
        with pytest.raises(ValueError):
            ModalityLayout(modalities, inputs)
    with pytest.raises(ValueError, match="step axes"):
        ModalityLayout(("eeg",), {"eeg": "eeg"}, {"eeg": 0})


def test_modality_streams_are_fixed_and_distinct() -> None:
    assert [modality_stream(m) for m in ("text", "audio", "vision")] == [1, 2, 3]  # the streams of l, a, v
    known = [modality_stream(m) for m in ("eeg", "face", "video", "bio", "physio")]
    assert known == [16, 17, 18, 19, 20]
    # any other name: CRC-32 (not Python's per-process hash), top bit set, so never a fixed stream
    assert modality_stream("gsr") == 0x88C03E92 == (zlib.crc32(b"gsr") | 0x80000000)
    assert modality_stream("view_0") != modality_stream("view_1") and modality_stream("gsr") >= 0x80000000
    # same shape, same samples, other modality: other drops
    x = torch.ones(50, 30, 2)
    masks = []
    for name in ("vision", "face", "gsr"):
        layout = ModalityLayout((name,), {name: name})
        out = MissingCondition(0.5, name, seed=3).apply(Batch({name: x}, index=torch.arange(50)), layout)
        masks.append((out.inputs[name] == 0).all(-1))
    assert not torch.equal(masks[0], masks[1]) and not torch.equal(masks[1], masks[2])



def test_masks_of_new_names_are_pinned() -> None:
    """New names draw from fixed streams (eeg, face) or CRC-32 (gsr): the same masks in every run and process.

    ``gsr (B, T)`` has no feature axis: its steps are its samples (step axis 1)."""
    layout = ModalityLayout(("eeg", "face", "gsr"), {"eeg": "eeg", "face": "face", "gsr": "gsr"})
    b = Batch({"eeg": torch.ones(4, 2, 16), "face": torch.ones(4, 5, 3), "gsr": torch.ones(4, 12)},
              index=torch.tensor([0, 5, 99, 4096]))

    def drops(out: Batch) -> dict[str, list[int]]:
        x = out.inputs
        return {"eeg": bits((x["eeg"] == 0).all(1)), "face": bits((x["face"] == 0).all(-1)), "gsr": bits(x["gsr"] == 0)}

    out = MissingCondition(0.5, "all", seed=0).apply(b, layout)
    assert drops(out) == {"eeg": [30100, 37897, 46353, 28670], "face": [6, 11, 21, 5], "gsr": [2276, 1302, 3985, 3691]}
    assert {k: bits(v) for k, v in out.masks.items()} == {"eeg": [65535] * 4, "face": [31] * 4, "gsr": [4095] * 4}
    out = MissingAugmentation(0.1, 0.8, 0.6, seed=2).apply(b, 1, layout)
    assert drops(out) == {"eeg": [32753, 843, 1584, 52466], "face": [31, 16, 31, 17], "gsr": [1247, 32, 4095, 4070]}
    assert {k: bits(v) for k, v in out.masks.items()} == {"eeg": [65535] * 4, "face": [0, 31, 0, 31],
                                                         "gsr": [4095, 4095, 0, 4095]}

# -- a data set with other modalities: eeg (B, C, T) and face (B, F, D) -------------------------------------
N_CH, N_T, N_F, D_FACE = 4, 40, 5, 6


class EEGFaceData(InMemoryDataModule):
    """Random ``eeg (N, C, T)`` (no mask: every sample valid) and ``face (N, F, D)`` (padded frames, a mask);
    the binary target is the sign of the EEG mean, which the face features partly repeat."""

    def __init__(self, n: int = 64, step_axes: dict[str, int] | None = None, **kwargs) -> None:
        super().__init__(**kwargs)
        self.n, self._axes = n, step_axes or {}

    @property
    def step_axes(self) -> dict[str, int]:
        return super().step_axes | self._axes

    def load_splits(self) -> dict[str, SplitTensors]:
        g = torch.Generator().manual_seed(0)
        out = {}
        for split in ("train", "valid", "test"):
            n = self.n
            eeg = torch.randn(n, N_CH, N_T, generator=g) + 0.5
            target = (eeg.mean((1, 2)) > 0.5).long()
            frames = torch.randint(2, N_F + 1, (n,), generator=g)
            valid = torch.arange(N_F)[None, :] < frames[:, None]
            face = torch.rand(n, N_F, D_FACE, generator=g) + 0.5 + 0.3 * target[:, None, None]
            face = torch.where(valid[..., None], face, torch.full_like(face, 7.0))
            out[split] = SplitTensors(inputs={"eeg": eeg, "face": face}, masks={"face": valid}, target=target,
                                      ids=[f"{split}_{i}" for i in range(n)])
        return out


def eeg_face_batch(dm: EEGFaceData, n: int | None = None) -> Batch:
    s = dm.split("test")
    idx = torch.arange(len(s) if n is None else n)
    return Batch(inputs={k: v[idx] for k, v in s.inputs.items()}, masks={k: v[idx] for k, v in s.masks.items()},
                 target=s.target[idx], index=idx)


def test_eeg_face_datamodule_declares_its_modalities() -> None:
    dm = EEGFaceData()
    assert dm.modalities == ("eeg", "face") and dm.input_modalities == {"eeg": "eeg", "face": "face"}
    assert dm.step_axes == {"eeg": 2, "face": 1} and dm.seq_lens == {"eeg": N_T, "face": N_F}
    assert dm.modality_layout.settings() == ("eeg", "face", "eeg+face")


@pytest.mark.parametrize("p", [0.3, 0.7])
def test_eeg_frames_drop_along_time_and_face_along_frames(p: float) -> None:
    dm = EEGFaceData(n=400)
    batch, layout = eeg_face_batch(dm), dm.modality_layout
    out = MissingCondition(p, "eeg+face", seed=5).apply(batch, layout)
    eeg, new = batch.inputs["eeg"], out.inputs["eeg"]
    zero = new == 0  # (B, C, T)
    dropped = zero.all(1)  # (B, T): a time sample dropped on every channel at once
    assert torch.equal(zero, dropped[:, None, :].expand_as(zero)), "EEG drops whole time samples, never a channel"
    assert torch.equal(new[~zero], eeg[~zero])
    assert abs(dropped.float().mean().item() - p) < binomial_tol(p, dropped.numel())
    assert out.masks["eeg"].shape == (400, N_T) and out.masks["eeg"].all()  # no mask in: fully valid, told so
    face, valid = batch.inputs["face"], batch.masks["face"]
    face_drop = (out.inputs["face"] == 0).all(-1)
    assert not face_drop[~valid].any() and torch.equal(out.inputs["face"][~valid], face[~valid])
    assert abs(face_drop[valid].float().mean().item() - p) < binomial_tol(p, int(valid.sum()))
    assert torch.equal(out.masks["face"], valid)
    # counter-based: nested across rates, independent of the batch composition
    higher = MissingCondition(min(p + 0.2, 1.0), "eeg+face", seed=5).apply(batch, layout)
    assert not (dropped & ~(higher.inputs["eeg"] == 0).all(1)).any()
    sel = torch.tensor([399, 3, 200, 17])
    part = MissingCondition(p, "eeg+face", seed=5).apply(
        Batch({k: v[sel] for k, v in batch.inputs.items()}, {k: v[sel] for k, v in batch.masks.items()},
              batch.target[sel], sel), layout)
    assert torch.equal(part.inputs["eeg"], new[sel]) and torch.equal(part.inputs["face"], out.inputs["face"][sel])


def test_a_declared_step_axis_is_followed() -> None:
    dm = EEGFaceData(n=50, step_axes={"eeg": 1})  # e.g. data laid out (B, T, C)
    out = MissingCondition(0.5, "all", seed=1).apply(eeg_face_batch(dm), dm.modality_layout)
    zero = out.inputs["eeg"] == 0
    rows = zero.all(2)  # (B, C)
    assert torch.equal(zero, rows[:, :, None].expand_as(zero)) and rows.any() and out.masks["eeg"].shape == (50, N_CH)
    with pytest.raises(ValueError, match="step axis"):  # a mask that does not run along the declared axis
        bad = eeg_face_batch(EEGFaceData(n=4, step_axes={"face": 2}))
        MissingCondition(0.5).apply(bad, EEGFaceData(n=4, step_axes={"face": 2}).modality_layout)
    with pytest.raises(ValueError, match="eeg"):  # undeclared inputs are refused, not silently kept
        MissingCondition(0.5).apply(eeg_face_batch(dm))


def test_eeg_face_modality_removal() -> None:
    dm = EEGFaceData(n=40)
    batch, layout = eeg_face_batch(dm), dm.modality_layout
    out = MissingCondition(0.0, "face", seed=0).apply(batch, layout)
    assert (out.inputs["eeg"] == 0).all() and not out.masks["eeg"].any()
    assert torch.equal(out.inputs["face"], batch.inputs["face"]) and torch.equal(out.masks["face"], batch.masks["face"])
    out = MissingCondition(0.0, "eeg", seed=0).apply(batch, layout)
    valid = batch.masks["face"]
    assert (out.inputs["face"][valid] == 0).all() and (out.inputs["face"][~valid] == 7.0).all()
    assert not out.masks["face"].any() and torch.equal(out.inputs["eeg"], batch.inputs["eeg"])
    assert MissingCondition(0.0, "face+eeg").apply(batch, layout) is batch
    with pytest.raises(ValueError, match="does not have"):
        MissingCondition(0.0, "lav").apply(batch, layout)
    # training: with modality_prob 1 every sample loses exactly one of the two, each about half the time
    big = eeg_face_batch(EEGFaceData(n=2000))
    aug = MissingAugmentation(0.0, 0.0, 1.0, seed=3).apply(big, 0, layout)
    has_eeg, has_face = aug.masks["eeg"].any(1), aug.masks["face"].any(1)
    assert torch.equal(has_eeg, ~has_face)
    assert abs(has_eeg.float().mean().item() - 0.5) < binomial_tol(0.5, 2000)
    assert torch.equal((aug.inputs["eeg"] == 0).all((1, 2)), ~has_eeg)


def test_datamodule_refuses_settings_of_other_data() -> None:
    dm = EEGFaceData(n=8, eval_missing=MissingCondition(0.5, "lav"))
    with pytest.raises(ConfigError, match="eval_missing.available.*eeg"):
        dm.setup("test")
    EEGFaceData(n=8, eval_missing=MissingCondition(0.5, "face")).setup("test")
    one = ModalityLayout(("eeg",), {"eeg": "eeg"})
    with pytest.raises(ValueError, match="modality_prob"):
        MissingAugmentation(0.0, 0.5, 0.5, seed=0).apply(Batch({"eeg": torch.ones(2, 3, 4)}, index=torch.arange(2)),
                                                         0, one)


# -- lightning-kd robustness over {eeg, face} ----------------------------------------------------------------
class SignModel(pl.LightningModule):
    """Class 1 when the EEG mean plus the face mean is high: reads both modalities, learns nothing."""

    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.zeros(1))

    @staticmethod
    def predict_class(eeg: torch.Tensor, face: torch.Tensor) -> torch.Tensor:
        return (eeg.mean((1, 2)) + face.mean((1, 2)) > 2.3).long()

    def test_step(self, batch: Batch, batch_idx: int) -> None:
        pred = self.predict_class(batch.inputs["eeg"], batch.inputs["face"])
        self.log("test/acc", (pred == batch.target).float().mean(), batch_size=len(batch))


def test_robustness_grid_over_eeg_and_face(tmp_path) -> None:
    dm = EEGFaceData(n=64, batch_size=16)
    trainer = KDTrainer(accelerator="cpu", devices=1, logger=False, default_root_dir=str(tmp_path),
                        enable_progress_bar=False, enable_model_summary=False, enable_checkpointing=False)
    trainer.robustness(SignModel(), dm, rates=[0.0, 1.0])
    rows = read_robustness_csv(tmp_path / "robustness.csv")
    assert (tmp_path / "robustness.png").read_bytes()[:4] == b"\x89PNG"
    assert [r["condition"] for r in rows] == ["eeg@0.0", "eeg@1.0", "face@0.0", "face@1.0", "eeg+face@0.0",
                                              "eeg+face@1.0", "avg@0.0", "avg@1.0"]
    assert [r["setting"] for r in rows] == ["eeg", "eeg", "face", "face", "eeg+face", "eeg+face", "avg", "avg"]
    acc = {r["condition"]: r["acc"] for r in rows}
    # by hand: a removed modality is zeros on its valid steps (face padding stays 7.0); p = 1 drops every valid step
    s = dm.split("test")
    eeg, face, valid, y = s.inputs["eeg"], s.inputs["face"], s.masks["face"], s.target
    no_face = torch.where(valid[..., None], torch.zeros_like(face), face)
    expected = {"eeg+face@0.0": (eeg, face), "eeg@0.0": (eeg, no_face), "face@0.0": (torch.zeros_like(eeg), face)}
    for cond, (e, f) in expected.items():
        assert acc[cond] == pytest.approx((SignModel.predict_class(e, f) == y).float().mean().item(), abs=1e-6), cond
    at_one = (SignModel.predict_class(torch.zeros_like(eeg), no_face) == y).float().mean().item()
    for cond in ("eeg@1.0", "face@1.0", "eeg+face@1.0"):
        assert acc[cond] == pytest.approx(at_one, abs=1e-6), cond
    assert len({acc["eeg+face@0.0"], acc["eeg@0.0"], acc["face@0.0"]}) == 3  # the settings are told apart
    for rate in ("0.0", "1.0"):
        assert acc[f"avg@{rate}"] == pytest.approx((acc[f"eeg@{rate}"] + acc[f"face@{rate}"]) / 2, abs=1e-6)
    assert dm.eval_missing is None  # restored

    # settings by name, in any order; a subset has no avg rows; settings of other data stop with one line
    out = tmp_path / "named"
    trainer = KDTrainer(accelerator="cpu", devices=1, logger=False, default_root_dir=str(out),
                        enable_progress_bar=False, enable_model_summary=False, enable_checkpointing=False)
    rows = trainer.robustness(SignModel(), dm, rates=[0.0], settings=["face+eeg", "face"])
    assert [r["condition"] for r in rows] == ["eeg+face@0.0", "face@0.0"]
    assert rows[0]["acc"] == pytest.approx(acc["eeg+face@0.0"]) and rows[1]["acc"] == pytest.approx(acc["face@0.0"])
    with pytest.raises(ConfigError, match="--settings.*does not have"):
        trainer.robustness(SignModel(), dm, rates=[0.0], settings=["lav"])


class Recorder(pl.LightningModule):
    """Records the training batches; learns nothing."""

    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.zeros(1))
        self.seen: list[Batch] = []

    def training_step(self, batch: Batch, batch_idx: int) -> torch.Tensor:
        self.seen.append(batch)
        return self.w.sum() * 0.0

    def validation_step(self, batch: Batch, batch_idx: int) -> None:
        pass

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def test_datamodule_hook_augments_eeg_face_batches(tmp_path) -> None:
    aug = MissingAugmentation(0.5, 0.5, 1.0, seed=1)
    dm = EEGFaceData(n=32, batch_size=8, train_missing=aug)
    model = Recorder()
    pl.Trainer(accelerator="cpu", devices=1, max_epochs=1, limit_val_batches=0, logger=False, enable_checkpointing=False,
               enable_progress_bar=False, enable_model_summary=False, default_root_dir=str(tmp_path)).fit(model, dm)
    assert len(model.seen) == 4
    for b in model.seen:
        assert torch.equal(b.masks["eeg"].any(1), ~b.masks["face"].any(1))  # one of the two removed per sample
        full = b.complete()
        expected = aug.apply(full, 0, dm.modality_layout)
        for k in ("eeg", "face"):
            assert torch.equal(b.inputs[k], expected.inputs[k]) and torch.equal(b.masks[k], expected.masks[k])
        assert "eeg" not in full.masks  # the complete view is the data as stored
