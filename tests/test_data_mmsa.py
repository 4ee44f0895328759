"""MMSA pickle reader, the synthetic generator that writes the same layout, and their datamodules."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from lightning_kd.checkpoint import DataFileNotFoundError
from lightning_kd.data import Batch, DataFormatError
from lightning_kd.data.formats.mmsa import MMSADataModule, read_mmsa
from lightning_kd.data.generate.command import generate_cli
from lightning_kd.data.generate.mmsa import SyntheticMMSADataModule, write_mmsa_pickle

N = (40, 12, 16)
DIMS = (32, 5, 7)
SPLITS = ("train", "valid", "test")


def _raw(path: Path) -> dict:
    with open(path, "rb") as f:
        return pickle.load(f)


def _dump(obj, path: Path) -> Path:
    with open(path, "wb") as f:
        pickle.dump(obj, f, protocol=4)
    return path


# -- generator: the real layout ------------------------------------------------------------------
@pytest.mark.parametrize("aligned", [True, False])
def test_generator_writes_real_layout(tiny_mmsa_aligned: Path, tiny_mmsa_unaligned: Path, aligned: bool) -> None:
    raw = _raw(tiny_mmsa_aligned if aligned else tiny_mmsa_unaligned)
    lengths = (12, 12, 12) if aligned else (12, 20, 24)
    assert set(raw) == set(SPLITS)
    for split, n in zip(SPLITS, N):
        d = raw[split]
        keys = {"text", "text_bert", "audio", "vision", "regression_labels", "classification_labels",
                "annotations", "id", "raw_text"}
        assert set(d) == keys | (set() if aligned else {"audio_lengths", "vision_lengths"})
        assert d["text"].shape == (n, lengths[0], DIMS[0]) and d["text"].dtype == np.float32
        assert d["audio"].shape == (n, lengths[1], DIMS[1])
        assert d["vision"].shape == (n, lengths[2], DIMS[2])
        assert d["text_bert"].shape == (n, 3, lengths[0]) and d["text_bert"].dtype.kind == "f"
        assert d["regression_labels"].shape == (n,)
        y = d["regression_labels"]
        assert np.abs(y).max() <= 3 and np.allclose(y * 5, np.round(y * 5), atol=1e-4)
        cls = np.asarray(d["classification_labels"])
        np.testing.assert_array_equal(cls, np.sign(y) + 1)
        assert [("Negative", "Neutral", "Positive")[c] for c in cls] == list(d["annotations"])
        assert list(d["id"])[:1] == [f"synth{split}_00000$_$0"] and len(d["raw_text"]) == n
        ids, mask, seg = d["text_bert"][:, 0], d["text_bert"][:, 1], d["text_bert"][:, 2]
        assert (ids[:, 0] == 101).all() and (seg == 0).all()
        assert (ids[np.arange(n), mask.sum(1).astype(int) - 1] == 102).all()
        if not aligned:
            assert len(d["audio_lengths"]) == n and len(d["vision_lengths"]) == n
    assert np.isneginf(raw["train"]["audio"]).any()  # like COVAREP features
    assert (raw["train"]["regression_labels"] == 0).any() or (raw["test"]["regression_labels"] == 0).any()


def test_generator_is_deterministic_and_atomic(tmp_path: Path) -> None:
    a = write_mmsa_pickle(tmp_path / "a.pkl", n=N, dims=DIMS, lengths=(12, 20, 24), aligned=False, seed=3)
    b = write_mmsa_pickle(tmp_path / "b.pkl", n=N, dims=DIMS, lengths=(12, 20, 24), aligned=False, seed=3)
    c = write_mmsa_pickle(tmp_path / "c.pkl", n=N, dims=DIMS, lengths=(12, 20, 24), aligned=False, seed=4)
    ra, rb, rc = _raw(a), _raw(b), _raw(c)
    for split in SPLITS:
        for key in ("text", "text_bert", "audio", "vision", "regression_labels"):
            assert ra[split][key].tobytes() == rb[split][key].tobytes()
        assert ra[split]["audio_lengths"] == rb[split]["audio_lengths"]
    assert ra["train"]["text"].tobytes() != rc["train"]["text"].tobytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.pkl", "b.pkl", "c.pkl"]  # no temp files


def test_interrupted_write_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(pickle, "dump", boom)
    with pytest.raises(KeyboardInterrupt):
        write_mmsa_pickle(tmp_path / "x.pkl", n=N, dims=DIMS, lengths=(12, 12, 12))
    assert list(tmp_path.iterdir()) == []


# -- reader ------------------------------------------------------------------------------------
def test_read_aligned(tiny_mmsa_aligned: Path) -> None:
    raw = _raw(tiny_mmsa_aligned)
    splits = read_mmsa(tiny_mmsa_aligned)
    assert set(splits) == set(SPLITS)
    for split, n in zip(SPLITS, N):
        s = splits[split]
        assert len(s) == n
        assert {k: tuple(v.shape) for k, v in s.inputs.items()} == {
            "text": (n, 12, 32), "audio": (n, 12, 5), "vision": (n, 12, 7)}
        assert all(v.dtype == torch.float32 for v in s.inputs.values())
        assert set(s.masks) == {"text", "audio", "vision"} and all(m.dtype == torch.bool for m in s.masks.values())
        text_mask = torch.from_numpy(raw[split]["text_bert"][:, 1] > 0)
        for m in s.masks.values():
            assert torch.equal(m, text_mask)
        assert torch.isfinite(s.inputs["audio"]).all()
        neg = np.isneginf(raw[split]["audio"])
        assert (s.inputs["audio"][torch.from_numpy(neg)] == 0).all()
        np.testing.assert_array_equal(s.inputs["vision"].numpy(), raw[split]["vision"])
        assert s.target.dtype == torch.float32 and s.target.shape == (n,)
        np.testing.assert_array_equal(s.target.numpy(), raw[split]["regression_labels"])
        assert s.ids == [str(i) for i in raw[split]["id"]]
        # padding is zero beyond the mask
        assert (s.inputs["text"][~s.masks["text"]] == 0).all()


def test_read_unaligned_masks_follow_lengths(tiny_mmsa_unaligned: Path) -> None:
    raw = _raw(tiny_mmsa_unaligned)
    splits = read_mmsa(tiny_mmsa_unaligned)
    s, d = splits["train"], raw["train"]
    assert s.inputs["audio"].shape == (40, 20, 5) and s.inputs["vision"].shape == (40, 24, 7)
    for key, steps in (("audio", 20), ("vision", 24)):
        lens = torch.tensor(d[f"{key}_lengths"])
        assert torch.equal(s.masks[key].sum(1), lens)
        assert torch.equal(s.masks[key], torch.arange(steps)[None] < lens[:, None])
        assert (s.inputs[key][~s.masks[key]] == 0).all()
    assert not torch.equal(s.masks["audio"].sum(1), s.masks["text"].sum(1))


def test_read_bert_ids(tiny_mmsa_unaligned: Path) -> None:
    s = read_mmsa(tiny_mmsa_unaligned, text="bert_ids")["valid"]
    assert set(s.inputs) == {"text_bert", "audio", "vision"} and set(s.masks) == {"text_bert", "audio", "vision"}
    tb = s.inputs["text_bert"]
    assert tb.dtype == torch.int64 and tb.shape == (12, 3, 12)
    assert (tb[:, 0, 0] == 101).all()
    assert torch.equal(s.masks["text_bert"], tb[:, 1].bool())


def test_read_float64_lists_and_no_text_bert(tmp_path: Path, tiny_mmsa_unaligned: Path) -> None:
    """Real files may store float64 arrays and lists; text features without token ids use non-zero rows."""
    raw = _raw(tiny_mmsa_unaligned)
    for d in raw.values():
        for key in ("text", "audio", "vision"):
            d[key] = d[key].astype(np.float64)
        d["regression_labels"] = d["regression_labels"].tolist()
        d["id"] = list(d["id"])
        d["audio_lengths"] = np.asarray(d["audio_lengths"], dtype=np.int32)
        del d["text_bert"]
    ref = read_mmsa(tiny_mmsa_unaligned)
    got = read_mmsa(_dump(raw, tmp_path / "f64.pkl"))
    for split in SPLITS:
        assert got[split].inputs["text"].dtype == torch.float32
        assert torch.equal(got[split].inputs["text"], ref[split].inputs["text"])
        assert torch.equal(got[split].masks["text"], ref[split].masks["text"])
        assert torch.equal(got[split].masks["audio"], ref[split].masks["audio"])
    with pytest.raises(DataFormatError, match="text_bert"):
        read_mmsa(tmp_path / "f64.pkl", text="bert_ids")


# -- reader: every bad input is a DataFormatError naming the file --------------------------------
def _set(split: str, key: str, fn):
    def corrupt(raw: dict) -> dict:
        raw[split][key] = fn(raw[split][key])
        return raw

    return corrupt


def _drop(split: str, key: str):
    def corrupt(raw: dict) -> dict:
        del raw[split][key]
        return raw

    return corrupt


def _poke(split: str, key: str, index: tuple, value: float):
    def fn(a):
        a = np.array(a, copy=True)
        a[index] = value
        return a

    return _set(split, key, fn)


CORRUPTIONS = {
    "missing split": (lambda raw: {k: v for k, v in raw.items() if k != "test"}, "test"),
    "top level not a dict": (lambda raw: list(raw.values()), "dict"),
    "split not a dict": (lambda raw: {**raw, "valid": [1, 2]}, "valid"),
    "missing key": (_drop("train", "audio"), "audio"),
    "missing labels": (_drop("valid", "regression_labels"), "regression_labels"),
    "wrong ndim": (_set("train", "vision", lambda a: a[:, :, 0]), "vision"),
    "text_bert rows": (_set("train", "text_bert", lambda a: a[:, :2]), "text_bert"),
    "N differs": (_set("test", "audio", lambda a: a[:-1]), "audio"),
    "N differs ids": (_set("test", "id", lambda a: a[:-2]), "id"),
    "dims differ": (_set("test", "vision", lambda a: a[:, :, :-1]), "vision"),
    "NaN text": (_poke("valid", "text", (3, 0, 0), np.nan), "sample 3"),
    "inf vision": (_poke("train", "vision", (5, 1, 2), np.inf), "sample 5"),
    "+inf audio": (_poke("test", "audio", (2, 0, 0), np.inf), "sample 2"),
    "label out of range": (_poke("train", "regression_labels", (7,), 3.4), "sample 7"),
    "label NaN": (_poke("test", "regression_labels", (1,), np.nan), "sample 1"),
    "negative length": (_set("train", "audio_lengths", lambda a: [-1] + list(a[1:])), "audio_lengths"),
    "fractional length": (_set("valid", "vision_lengths", lambda a: list(a[:-1]) + [3.5]), "vision_lengths"),
    "missing lengths": (_drop("train", "vision_lengths"), "vision_lengths"),
    "not numeric": (_set("train", "audio", lambda a: [np.zeros((3, 5)), np.zeros((4, 5))]), "audio"),
}


@pytest.mark.parametrize("case", sorted(CORRUPTIONS))
def test_bad_file_raises_data_format_error(case: str, tmp_path: Path, tiny_mmsa_unaligned: Path) -> None:
    corrupt, fragment = CORRUPTIONS[case]
    path = _dump(corrupt(_raw(tiny_mmsa_unaligned)), tmp_path / f"broken_{case.replace(' ', '_')}.pkl")
    with pytest.raises(DataFormatError) as err:
        read_mmsa(path)
    msg = str(err.value)
    assert path.name in msg and fragment in msg and "Fix:" in msg


def test_label_range_option(tmp_path: Path, tiny_mmsa_aligned: Path) -> None:
    with pytest.raises(DataFormatError, match="label_range"):
        read_mmsa(tiny_mmsa_aligned, label_range=1.0)  # CH-SIMS range on MOSI-like labels
    raw = _raw(tiny_mmsa_aligned)
    for d in raw.values():
        d["regression_labels"] = d["regression_labels"] / 3
    assert len(read_mmsa(_dump(raw, tmp_path / "sims.pkl"), label_range=1.0)["train"]) == 40


def test_unreadable_files(tmp_path: Path, tiny_mmsa_aligned: Path) -> None:
    truncated = tmp_path / "truncated.pkl"
    truncated.write_bytes(tiny_mmsa_aligned.read_bytes()[: tiny_mmsa_aligned.stat().st_size // 2])
    not_pickle = tmp_path / "notes.pkl"
    not_pickle.write_text("train,valid,test\n1,2,3\n")
    empty = tmp_path / "empty.pkl"
    empty.write_bytes(b"")
    for path in (truncated, not_pickle, empty):
        with pytest.raises(DataFormatError, match=path.name) as err:
            read_mmsa(path)
        assert "Fix:" in str(err.value)

    missing = tmp_path / "nope" / "aligned_50.pkl"
    with pytest.raises(DataFormatError) as err:
        read_mmsa(missing)
    assert isinstance(err.value, FileNotFoundError) and isinstance(err.value, DataFileNotFoundError)
    assert str(missing) in str(err.value) and "lightning-kd generate mmsa" in str(err.value)


# -- datamodules -------------------------------------------------------------------------------
def test_mmsa_datamodule(tiny_mmsa_unaligned: Path) -> None:
    dm = MMSADataModule(str(tiny_mmsa_unaligned), batch_size=8, eval_batch_size=5)
    dm.setup("fit")
    assert dm.feature_dims == {"text": 32, "audio": 5, "vision": 7}
    assert dm.seq_lens == {"text": 12, "audio": 20, "vision": 24}
    batch = next(iter(dm.val_dataloader()))
    assert isinstance(batch, Batch) and len(batch) == 5
    assert [dm.ids("valid")[i] for i in batch.index] == [f"synthvalid_{i:05d}$_$0" for i in range(5)]


def test_synthetic_datamodule_generates_then_reuses(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    kw = dict(n=N, dims=DIMS, lengths=(12, 20, 24), aligned=False, data_seed=1, batch_size=16)
    dm = SyntheticMMSADataModule(**kw)
    assert not Path(dm.path).is_absolute() and Path(dm.path).parent == Path("data/synthetic")
    assert Path(dm.path).name.startswith("mmsa_unaligned_40-12-16_32-5-7_")
    dm.prepare_data()
    path = tmp_path / dm.path
    assert path.is_file()
    mtime = path.stat().st_mtime_ns

    dm2 = SyntheticMMSADataModule(**kw, text="bert_ids")
    dm2.setup("fit")
    assert path.stat().st_mtime_ns == mtime  # reused, not rewritten
    batches = list(dm2.train_dataloader())
    assert [len(b) for b in batches] == [16, 16, 8]
    assert all(isinstance(b, Batch) for b in batches)
    b = batches[0]
    assert set(b.inputs) == {"text_bert", "audio", "vision"} and b.target.shape == (16,)
    ids = dm2.ids("train")
    seen = sorted(ids[i] for b in batches for i in b.index.tolist())
    assert seen == sorted(ids)  # one epoch visits every sample once
    # batch rows are the split rows named by index
    raw = _raw(path)["train"]
    np.testing.assert_array_equal(b.target.numpy(), raw["regression_labels"][b.index.numpy()])

    # a fresh module without prepare_data (notebook use) generates on setup
    dm3 = SyntheticMMSADataModule(path=str(tmp_path / "other.pkl"), n=N, dims=DIMS, lengths=(12, 12, 12))
    assert len(dm3.split("test")) == 16 and (tmp_path / "other.pkl").is_file()


# -- learnability --------------------------------------------------------------------------------
def _probe_corr(splits: dict, key: str, lam: float = 1e-2) -> float:
    """Ridge regression on mask-mean-pooled features: train -> test Pearson correlation."""

    def pool(s):
        x, m = s.inputs[key].double(), s.masks[key].double()[..., None]
        return np.c_[((x * m).sum(1) / m.sum(1).clamp(min=1)).numpy(), np.ones(len(s))]

    x, y = pool(splits["train"]), splits["train"].target.double().numpy()
    w = np.linalg.solve(x.T @ x + lam * np.eye(x.shape[1]), x.T @ y)
    return float(np.corrcoef(pool(splits["test"]) @ w, splits["test"].target.numpy())[0, 1])


@pytest.mark.parametrize("aligned", [True, False])
def test_labels_are_learnable_and_text_is_strongest(tmp_path: Path, aligned: bool) -> None:
    path = write_mmsa_pickle(tmp_path / "probe.pkl", n=(400, 20, 200), dims=DIMS,
                             lengths=(12, 12, 12) if aligned else (12, 20, 24), aligned=aligned, seed=0)
    splits = read_mmsa(path)
    corr = {k: _probe_corr(splits, k) for k in ("text", "vision", "audio")}
    assert corr["text"] > 0.5, corr
    assert corr["text"] > corr["vision"] > corr["audio"] > 0.1, corr


# -- command line --------------------------------------------------------------------------------
def test_generate_cli(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "sub" / "unaligned_50.pkl"
    generate_cli(["mmsa", "--out", str(out), "--unaligned", "--n", "6", "3", "4", "--dims", "8", "3", "4",
                  "--lengths", "5", "9", "11", "--seed", "2"])
    text = capsys.readouterr().out
    assert str(out) in text and "(6, 9, 3)" in text
    s = read_mmsa(out)
    assert s["train"].inputs["vision"].shape == (6, 11, 4) and len(s["test"]) == 4
    with pytest.raises(SystemExit):
        generate_cli(["mmsa"])  # --out is required


def test_lengths_beyond_padding_mean_valid_to_the_end(tiny_mmsa_unaligned: Path, tmp_path: Path) -> None:
    """MMSA stores untruncated lengths (CH-SIMS): a length above the padded length is clipped to it."""
    with open(tiny_mmsa_unaligned, "rb") as f:
        d = pickle.load(f)
    d["valid"]["vision_lengths"] = [999] + list(d["valid"]["vision_lengths"][1:])
    p = tmp_path / "long.pkl"
    with open(p, "wb") as f:
        pickle.dump(d, f)
    mask = read_mmsa(p)["valid"].masks["vision"]
    assert bool(mask[0].all())
