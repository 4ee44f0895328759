"""MulT pickle reader, the generator that writes the same layout, their datamodules and ``generate mult``."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from lightning_kd.checkpoint import DataFileNotFoundError
from lightning_kd.data import Batch, DataFormatError
from lightning_kd.data.formats.mult import EMOTIONS, MulTDataModule, read_mult
from lightning_kd.data.generate.command import generate_cli
from lightning_kd.data.generate.mult import SyntheticMulTDataModule, write_mult_pickle
from lightning_kd.data.missing import MissingAugmentation, MissingCondition

N = (40, 12, 16)
DIMS = (16, 6, 5)
L = 10
SPLITS = ("train", "valid", "test")
KEYS = {"text", "audio", "vision", "labels", "id"}


def _raw(path: Path) -> dict:
    with open(path, "rb") as f:
        return pickle.load(f)


def _dump(obj, path: Path) -> Path:
    with open(path, "wb") as f:
        pickle.dump(obj, f, protocol=4)
    return path


@pytest.fixture(scope="module")
def iemocap(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_mult_pickle(tmp_path_factory.mktemp("mult") / "iemocap_data.pkl", dataset="iemocap", n=N, dims=DIMS,
                             length=L, seed=0)


@pytest.fixture(scope="module")
def mosi(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_mult_pickle(tmp_path_factory.mktemp("mult") / "mosi_data.pkl", dataset="mosi", n=N, dims=DIMS,
                             length=L, seed=0)


# -- generator: the real layout ------------------------------------------------------------------
@pytest.mark.parametrize("dataset", ["iemocap", "mosi"])
def test_generator_writes_real_layout(iemocap: Path, mosi: Path, dataset: str) -> None:
    raw = _raw(iemocap if dataset == "iemocap" else mosi)
    assert set(raw) == set(SPLITS)
    for split, n in zip(SPLITS, N):
        d = raw[split]
        assert set(d) == KEYS
        assert d["text"].shape == (n, L, DIMS[0]) and d["text"].dtype == np.float32
        assert d["audio"].shape == (n, L, DIMS[1]) and d["audio"].dtype == np.float32
        assert d["vision"].shape == (n, L, DIMS[2]) and d["vision"].dtype == np.float64
        assert d["id"].shape == (n, 3) and d["id"].dtype.kind == "S"
        assert d["id"][0, 0] == f"synth_{split}_00000".encode() and float(d["id"][0, 2]) > float(d["id"][0, 1])
        y = d["labels"]
        assert y.dtype == np.float32
        if dataset == "iemocap":
            assert y.shape == (n, 4, 2)
            assert set(np.unique(y)) <= {0.0, 1.0} and (y.sum(2) == 1).all()
            assert (y[:, :, 1].sum(1) == 1).all()  # exactly one emotion present
        else:
            assert y.shape == (n, 1, 1) and np.abs(y).max() <= 3
            assert np.allclose(y * 5, np.round(y * 5), atol=1e-4)
        # left padding: a sample's valid steps are its last ones
        valid = np.any(d["text"] != 0, -1) | np.any(d["audio"] != 0, -1) | np.any(d["vision"] != 0, -1)
        first = valid.argmax(1)
        assert (valid == (np.arange(L)[None] >= first[:, None])).all()
        assert (first > 0).any() and (valid.sum(1) >= 0.4 * L).all()
    assert any(np.isneginf(raw[s]["audio"]).any() for s in SPLITS)  # like COVAREP features


def test_generator_defaults_deterministic_and_atomic(tmp_path: Path) -> None:
    a = write_mult_pickle(tmp_path / "a.pkl", n=N, dims=DIMS, length=L, seed=3)
    b = write_mult_pickle(tmp_path / "b.pkl", n=N, dims=DIMS, length=L, seed=3)
    c = write_mult_pickle(tmp_path / "c.pkl", n=N, dims=DIMS, length=L, seed=4)
    ra, rb, rc = _raw(a), _raw(b), _raw(c)
    for split in SPLITS:
        for key in KEYS:
            assert ra[split][key].tobytes() == rb[split][key].tobytes()
    assert ra["train"]["text"].tobytes() != rc["train"]["text"].tobytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.pkl", "b.pkl", "c.pkl"]  # no temp files
    d = _raw(write_mult_pickle(tmp_path / "m.pkl", dataset="mosi", n=(2, 1, 1)))["train"]
    assert d["text"].shape == (2, 50, 300) and d["audio"].shape == (2, 50, 5) and d["vision"].shape == (2, 50, 20)
    with pytest.raises(ValueError, match="dataset"):
        write_mult_pickle(tmp_path / "x.pkl", dataset="mosei")  # type: ignore[arg-type]


def test_interrupted_write_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(pickle, "dump", boom)
    with pytest.raises(KeyboardInterrupt):
        write_mult_pickle(tmp_path / "x.pkl", n=N, dims=DIMS, length=L)
    assert list(tmp_path.iterdir()) == []


# -- reader ------------------------------------------------------------------------------------
def test_read_iemocap_round_trip(iemocap: Path) -> None:
    raw = _raw(iemocap)
    splits = read_mult(iemocap)
    assert set(splits) == set(SPLITS)
    for split, n in zip(SPLITS, N):
        s, d = splits[split], raw[split]
        assert len(s) == n
        assert {k: tuple(v.shape) for k, v in s.inputs.items()} == {
            "text": (n, L, DIMS[0]), "audio": (n, L, DIMS[1]), "vision": (n, L, DIMS[2])}
        assert all(v.dtype == torch.float32 and v.is_contiguous() for v in s.inputs.values())
        np.testing.assert_array_equal(s.inputs["text"].numpy(), d["text"])
        np.testing.assert_array_equal(s.inputs["vision"].numpy(), d["vision"].astype(np.float32))
        audio = np.where(np.isneginf(d["audio"]), 0, d["audio"])
        np.testing.assert_array_equal(s.inputs["audio"].numpy(), audio)
        assert torch.isfinite(s.inputs["audio"]).all()
        # target: presence per emotion, = argmax of the one-hot pairs
        assert s.target.dtype == torch.int64 and s.target.shape == (n, 4)
        np.testing.assert_array_equal(s.target.numpy(), d["labels"].argmax(-1))
        assert (s.target.sum(1) == 1).all()
        assert s.ids[0] == "_".join(x.decode() for x in d["id"][0])
        assert len(s.ids) == n and len(set(s.ids)) == n
        # aligned masks: the union of per-modality "any nonzero feature" steps, for every modality
        own = {m: np.any(np.asarray(s.inputs[m]) != 0, -1) for m in s.inputs}
        union = own["text"] | own["audio"] | own["vision"]
        assert set(s.masks) == {"text", "audio", "vision"}
        for m, mask in s.masks.items():
            assert mask.dtype == torch.bool and mask.shape == (n, L)
            np.testing.assert_array_equal(mask.numpy(), union)
            assert (s.inputs[m][~mask] == 0).all()
        assert s.masks["text"].data_ptr() != s.masks["audio"].data_ptr()  # own storage
    # the generator leaves some valid text/vision steps empty (OOV words, no face): the union keeps them valid
    s = splits["train"]
    assert (s.masks["vision"].numpy() & ~np.any(s.inputs["vision"].numpy() != 0, -1)).any()


def test_read_mosi(mosi: Path) -> None:
    raw = _raw(mosi)
    s = read_mult(mosi)["valid"]
    assert s.target.dtype == torch.float32 and s.target.shape == (12,)
    np.testing.assert_array_equal(s.target.numpy(), raw["valid"]["labels"].reshape(-1))
    assert read_mult(mosi, task="sentiment")["valid"].target.shape == (12,)


def test_task_option(iemocap: Path, mosi: Path) -> None:
    assert read_mult(iemocap, task="emotion")["test"].target.shape == (16, 4)
    with pytest.raises(DataFormatError, match="task 'sentiment'") as err:
        read_mult(iemocap, task="sentiment")
    assert "'train'" in str(err.value) and "'labels'" in str(err.value)
    with pytest.raises(DataFormatError, match="task 'emotion'"):
        read_mult(mosi, task="emotion")
    with pytest.raises(ValueError, match="task"):
        read_mult(mosi, task="regression")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("fmt", "joined"),
    [
        (lambda ids: ids, True),                                                     # (N, 3) bytes array
        (lambda ids: [list(r) for r in ids], True),                                  # lists of bytes
        (lambda ids: np.array([[x.decode() for x in r] for r in ids], dtype=object), True),  # rows of str
        (lambda ids: np.array([r[0].decode() for r in ids]), False),                 # plain str array
        (lambda ids: [r[0] for r in ids], False),                                    # list of bytes
    ],
)
def test_id_variants(fmt, joined: bool, tmp_path: Path, mosi: Path) -> None:
    raw = _raw(mosi)
    rows = [[x.decode() for x in r] for r in raw["valid"]["id"]]
    for d in raw.values():
        d["id"] = fmt(d["id"])
    ids = read_mult(_dump(raw, tmp_path / "ids.pkl"))["valid"].ids
    assert ids == ["_".join(r) if joined else r[0] for r in rows]


def test_missing_id_and_label_shapes(tmp_path: Path, mosi: Path) -> None:
    """MulT's loader treats ``id`` as optional; sentiment labels may be (N, 1, 1), (N, 1) or (N,)."""
    raw = _raw(mosi)
    del raw["test"]["id"]
    raw["train"]["labels"] = raw["train"]["labels"][:, 0]  # (N, 1)
    raw["valid"]["labels"] = raw["valid"]["labels"].reshape(-1).astype(np.float64)  # (N,)
    s = read_mult(_dump(raw, tmp_path / "noid.pkl"))
    assert s["test"].ids == [f"test_{i}" for i in range(16)]
    assert s["train"].target.shape == (40,) and s["valid"].target.dtype == torch.float32


def test_unaligned_masks_per_modality(tmp_path: Path, iemocap: Path) -> None:
    """*_data_noalign.pkl: lengths differ, so each modality keeps its own nonzero-step mask."""
    raw = _raw(iemocap)
    for d in raw.values():
        d["audio"] = np.concatenate([np.zeros_like(d["audio"][:, :5]), d["audio"]], 1)  # L_a = 15, more left padding
    s = read_mult(_dump(raw, tmp_path / "iemocap_data_noalign.pkl"))["train"]
    assert s.inputs["audio"].shape == (40, 15, DIMS[1])
    for m in ("text", "audio", "vision"):
        np.testing.assert_array_equal(s.masks[m].numpy(), np.any(s.inputs[m].numpy() != 0, -1))
    assert not torch.equal(s.masks["text"], s.masks["vision"])  # empty text steps are not borrowed


# -- reader: every bad input is a DataFormatError naming file, split, key and the fix -------------
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


def _poke(split: str, key: str, index: tuple, value):
    def fn(a):
        a = np.array(a, copy=True)
        a[index] = value
        return a

    return _set(split, key, fn)


# case -> (corruption, split, key, extra fragment); split/key None = not named (top-level problems)
CORRUPTIONS = {
    "missing split": (lambda raw: {k: v for k, v in raw.items() if k != "test"}, None, None, "'test'"),
    "top level not a dict": (lambda raw: list(raw.values()), None, None, "dict"),
    "split not a dict": (lambda raw: {**raw, "valid": [1, 2]}, "valid", None, "dict"),
    "missing key": (_drop("train", "audio"), "train", "audio", "missing"),
    "missing labels": (_drop("valid", "labels"), "valid", "labels", "missing"),
    "wrong ndim": (_set("train", "vision", lambda a: a[:, :, 0]), "train", "vision", "3-D"),
    "not numeric": (_set("train", "audio", lambda a: [np.zeros((3, 5)), np.zeros((4, 5))]), "train", "audio", "numeric"),
    "N differs": (_set("test", "audio", lambda a: a[:-1]), "test", "audio", "15 samples"),
    "N differs labels": (_set("valid", "labels", lambda a: a[:-1]), "valid", "labels", "11 samples"),
    "N differs ids": (_set("test", "id", lambda a: a[:-2]), "test", "id", "14 samples"),
    "dims differ": (_set("test", "vision", lambda a: a[:, :, :-1]), "test", "vision", "feature size"),
    "NaN text": (_poke("valid", "text", (3, -1, 0), np.nan), "valid", "text", "sample 3"),
    "+inf vision": (_poke("train", "vision", (5, -1, 2), np.inf), "train", "vision", "sample 5"),
    "-inf vision": (_poke("train", "vision", (6, -1, 2), -np.inf), "train", "vision", "sample 6"),
    "+inf audio": (_poke("test", "audio", (2, -1, 0), np.inf), "test", "audio", "sample 2"),
    "labels shape": (_set("train", "labels", lambda a: a[:, :3]), "train", "labels", "(40, 3, 2)"),
    "labels not one-hot": (_poke("train", "labels", (7, 2), (1.0, 1.0)), "train", "labels", "sample 7"),
    "labels soft": (_poke("valid", "labels", (1, 0), (0.5, 0.5)), "valid", "labels", "'Neutral'"),
    "labels NaN": (_poke("test", "labels", (4, 3, 0), np.nan), "test", "labels", "'Angry'"),
    "labels kind differs": (_set("test", "labels", lambda a: a[:, :1, :1]), "test", "labels", "task 'emotion'"),
}


@pytest.mark.parametrize("case", sorted(CORRUPTIONS))
def test_bad_file_raises_data_format_error(case: str, tmp_path: Path, iemocap: Path) -> None:
    corrupt, split, key, fragment = CORRUPTIONS[case]
    path = _dump(corrupt(_raw(iemocap)), tmp_path / f"broken_{case.replace(' ', '_')}.pkl")
    with pytest.raises(DataFormatError) as err:
        read_mult(path)
    msg = str(err.value)
    assert path.name in msg and fragment in msg, msg
    assert "Fix:" in msg and "lightning-kd generate mult --dataset iemocap --out FILE" in msg, msg
    if split is not None:
        assert f"split '{split}'" in msg, msg
    if key is not None:
        assert f"key '{key}'" in msg, msg


@pytest.mark.parametrize(("index", "value", "fragment"), [((7, 0, 0), 3.4, "sample 7"), ((1, 0, 0), np.nan, "sample 1")])
def test_sentiment_label_range(tmp_path: Path, mosi: Path, index: tuple, value: float, fragment: str) -> None:
    path = _dump(_poke("train", "labels", index, value)(_raw(mosi)), tmp_path / "range.pkl")
    with pytest.raises(DataFormatError) as err:
        read_mult(path)
    msg = str(err.value)
    assert all(f in msg for f in (path.name, "split 'train'", "key 'labels'", fragment, "label_range", "Fix:"))
    raw = _raw(mosi)
    for d in raw.values():
        d["labels"] = d["labels"] / 3
    assert len(read_mult(_dump(raw, tmp_path / "scaled.pkl"), label_range=1.0)["train"]) == 40


def test_unreadable_and_missing_files(tmp_path: Path, iemocap: Path) -> None:
    truncated = tmp_path / "truncated.pkl"
    truncated.write_bytes(iemocap.read_bytes()[: iemocap.stat().st_size // 2])
    not_pickle = tmp_path / "notes.pkl"
    not_pickle.write_text("train,valid,test\n1,2,3\n")
    for path in (truncated, not_pickle):
        with pytest.raises(DataFormatError, match=path.name) as err:
            read_mult(path)
        assert "Fix:" in str(err.value)
    missing = tmp_path / "nope" / "iemocap_data.pkl"
    with pytest.raises(DataFileNotFoundError) as err:
        read_mult(missing)
    assert isinstance(err.value, FileNotFoundError) and isinstance(err.value, DataFormatError)
    assert str(missing) in str(err.value) and "lightning-kd generate mult --dataset iemocap" in str(err.value)


# -- datamodules -------------------------------------------------------------------------------
def test_mult_datamodule(iemocap: Path, mosi: Path) -> None:
    cond = MissingCondition(available="la")
    dm = MulTDataModule(str(iemocap), batch_size=8, eval_batch_size=5, eval_missing=cond)
    assert dm.batch_size == 8 and dm.eval_missing is cond and dm.train_missing is None
    dm.setup("fit")
    assert dm.feature_dims == {"text": 16, "audio": 6, "vision": 5}
    assert dm.seq_lens == {"text": L, "audio": L, "vision": L}
    assert dm.emotions == EMOTIONS == ("Neutral", "Happy", "Sad", "Angry")
    batch = next(iter(dm.val_dataloader()))
    assert isinstance(batch, Batch) and len(batch) == 5
    assert batch.target.shape == (5, 4) and batch.target.dtype == torch.int64
    assert [dm.ids("valid")[i] for i in batch.index] == dm.ids("valid")[:5]
    gone = cond.apply(batch)  # the evaluation condition works on these batches
    assert not gone.masks["vision"].any() and (gone.inputs["vision"] == 0).all()
    train = list(dm.train_dataloader())
    assert [len(b) for b in train] == [8] * 5
    assert sorted(i for b in train for i in b.index.tolist()) == list(range(40))

    dm2 = MulTDataModule(str(mosi), train_missing=MissingAugmentation(max_rate=0.5))
    assert dm2.emotions is None and dm2.split("test").target.shape == (16,)
    with pytest.raises(ValueError, match="task"):
        MulTDataModule(str(mosi), task="both")  # type: ignore[arg-type]


def test_synthetic_datamodule_generates_then_reuses(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    dm = SyntheticMulTDataModule(n=N, dims=DIMS, length=L, data_seed=1, batch_size=16)
    assert Path(dm.path) == Path("data/synthetic/mult_iemocap_40-12-16_16-6-5_10_1.pkl")
    dm.prepare_data()
    path = tmp_path / dm.path
    mtime = path.stat().st_mtime_ns
    dm2 = SyntheticMulTDataModule(n=N, dims=DIMS, length=L, data_seed=1)
    dm2.setup("fit")
    assert path.stat().st_mtime_ns == mtime  # reused, not rewritten
    b = next(iter(dm2.train_dataloader()))
    assert isinstance(b, Batch) and b.target.shape == (32, 4) and dm2.emotions == EMOTIONS
    np.testing.assert_array_equal(b.target.numpy(), _raw(path)["train"]["labels"].argmax(-1)[b.index.numpy()])
    # without prepare_data (notebook use) the file is generated on first access; MOSI defaults
    dm3 = SyntheticMulTDataModule(path=str(tmp_path / "m.pkl"), dataset="mosi", n=(6, 2, 3))
    assert dm3.split("test").target.shape == (3,) and dm3.seq_lens["text"] == 50 and dm3.emotions is None


# -- command line --------------------------------------------------------------------------------
def test_generate_cli_mult(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "sub" / "iemocap_data.pkl"
    generate_cli(["mult", "--dataset", "iemocap", "--out", str(out), "--n", "6", "3", "4", "--dims", "8", "3", "4",
                  "--length", "7", "--seed", "2"])
    text = capsys.readouterr().out
    assert str(out) in text and "(6, 7, 3)" in text and "(6, 4, 2)" in text
    s = read_mult(out)
    assert s["train"].inputs["vision"].shape == (6, 7, 4) and s["test"].target.shape == (4, 4)
    out2 = tmp_path / "mosi_data.pkl"
    generate_cli(["mult", "--dataset", "mosi", "--out", str(out2), "--n", "3", "2", "2", "--length", "5"])
    assert read_mult(out2)["valid"].target.shape == (2,)
    with pytest.raises(SystemExit):
        generate_cli(["mult", "--dataset", "iemocap"])  # --out is required
    with pytest.raises(SystemExit):
        generate_cli(["mult", "--dataset", "mosei", "--out", str(out2)])


# -- learnability --------------------------------------------------------------------------------
def test_iemocap_is_learnable_text_best(tmp_path: Path) -> None:
    """Logistic regression on mask-mean-pooled features (train -> test) beats the majority class per emotion."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import accuracy_score, f1_score
    from sklearn.preprocessing import StandardScaler
    from threadpoolctl import threadpool_limits

    splits = read_mult(write_mult_pickle(tmp_path / "iemocap_data.pkl"))  # the IEMOCAP defaults
    assert {k: tuple(v.shape) for k, v in splits["train"].inputs.items()} == {
        "text": (2717, 20, 300), "audio": (2717, 20, 74), "vision": (2717, 20, 35)}
    assert [len(splits[s]) for s in SPLITS] == [2717, 798, 938]
    freq = splits["train"].target.double().mean(0)
    assert torch.allclose(freq, torch.tensor([0.4, 0.2, 0.2, 0.2], dtype=torch.float64), atol=0.03), freq

    def pool(s, key):
        x, m = s.inputs[key].double(), s.masks[key].double()[..., None]
        return ((x * m).sum(1) / m.sum(1).clamp(min=1)).numpy()

    acc, f1 = {}, {}
    with threadpool_limits(1):  # BLAS threads oversubscribe small CPU runners
        for key in ("text", "vision", "audio"):
            scaler = StandardScaler().fit(pool(splits["train"], key))
            x_tr, x_te = scaler.transform(pool(splits["train"], key)), scaler.transform(pool(splits["test"], key))
            acc[key], f1[key] = [], []
            for e in range(len(EMOTIONS)):
                y_tr, y_te = splits["train"].target[:, e].numpy(), splits["test"].target[:, e].numpy()
                pred = LogisticRegression(C=0.1, max_iter=1000).fit(x_tr, y_tr).predict(x_te)
                acc[key].append(accuracy_score(y_te, pred))
                f1[key].append(f1_score(y_te, pred, average="weighted"))
    majority = [max(p, 1 - p) for p in splits["test"].target.double().mean(0).tolist()]
    for e, name in enumerate(EMOTIONS):
        assert acc["text"][e] > majority[e] + 0.02, (name, acc["text"], majority)
    assert np.mean(acc["text"]) > np.mean(acc["vision"]) > np.mean(acc["audio"]), acc
    assert np.mean(f1["text"]) > np.mean(f1["audio"]) + 0.05, f1
    assert f1["text"] != acc["text"]  # weighted F1 and accuracy differ on the imbalanced classes


# -- samples with no emotion or several (real IEMOCAP rows can be either) ------------------------------------------
def test_samples_with_no_or_several_emotions_are_counted_and_kept(tmp_path: Path, caplog: pytest.LogCaptureFixture,
                                                                   iemocap: Path) -> None:
    import logging

    from lightning_kd.data.formats.mult import emotion_label_counts

    path = write_mult_pickle(tmp_path / "iemocap_data.pkl", dataset="iemocap", n=(40, 20, 10), dims=DIMS, length=L,
                             seed=0, no_emotion=0.1, several_emotions=0.05)
    raw = _raw(path)
    with caplog.at_level(logging.WARNING, logger="lightning_kd.data.formats.mult"):
        splits = read_mult(path)
    want = {"train": (4, 2), "valid": (2, 1), "test": (1, 0)}  # round(0.1 N), round(0.05 N)
    for s, (none, several) in want.items():
        present = raw[s]["labels"][..., 1].sum(1)  # ground truth from the file itself
        assert ((present == 0).sum(), (present == 2).sum()) == (none, several)
        assert emotion_label_counts(splits[s].target) == {"no_emotion": none, "several": several}
        # the reader keeps every row as it is: (N, 4) 0/1 presence, no argmax to a single emotion
        assert torch.equal(splits[s].target, torch.from_numpy(raw[s]["labels"][..., 1].astype(np.int64)))
    lines = [r.getMessage() for r in caplog.records]
    assert lines == ["iemocap_data.pkl train: 4 samples with no emotion, 2 with several",
                     "iemocap_data.pkl valid: 2 samples with no emotion, 1 with several",
                     "iemocap_data.pkl test: 1 samples with no emotion, 0 with several"]

    dm = MulTDataModule(str(path))
    assert dm.label_counts == {"train": {"no_emotion": 4, "several": 2}, "valid": {"no_emotion": 2, "several": 1},
                               "test": {"no_emotion": 1, "several": 0}}
    # the default file has exactly one emotion per sample: zero counts, no log line
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="lightning_kd.data.formats.mult"):
        plain = MulTDataModule(str(iemocap))
        assert plain.label_counts == {s: {"no_emotion": 0, "several": 0} for s in SPLITS}
    assert caplog.records == []


def test_odd_emotions_leave_the_rest_of_the_file_unchanged(tmp_path: Path, iemocap: Path) -> None:
    odd = _raw(write_mult_pickle(tmp_path / "odd.pkl", dataset="iemocap", n=N, dims=DIMS, length=L, seed=0,
                                 no_emotion=0.2, several_emotions=0.2))
    ref = _raw(iemocap)
    for s in SPLITS:
        for k in ("text", "audio", "vision"):
            np.testing.assert_array_equal(odd[s][k], ref[s][k])
        changed = (odd[s]["labels"] != ref[s]["labels"]).any(axis=(1, 2))
        assert changed.sum() == round(0.2 * N[SPLITS.index(s)]) * 2
        # a sample with several keeps its own (argmax) emotion and adds one
        several = odd[s]["labels"][..., 1].sum(1) == 2
        assert (odd[s]["labels"][several, :, 1] >= ref[s]["labels"][several, :, 1]).all()


def test_sentiment_file_has_no_label_counts(tmp_path: Path, tiny_mult_mosi: Path) -> None:
    assert MulTDataModule(str(tiny_mult_mosi)).label_counts is None
    with pytest.raises(ValueError, match="iemocap"):
        write_mult_pickle(tmp_path / "m.pkl", dataset="mosi", no_emotion=0.1)
    with pytest.raises(ValueError, match="sum <= 1"):
        write_mult_pickle(tmp_path / "i.pkl", no_emotion=0.7, several_emotions=0.7)
    assert list(tmp_path.iterdir()) == []


def test_synthetic_datamodule_writes_odd_emotions(tmp_path: Path) -> None:
    dm = SyntheticMulTDataModule(path=str(tmp_path / "i.pkl"), n=(20, 10, 10), dims=DIMS, length=L,
                                 no_emotion=0.1, several_emotions=0.1)
    assert dm.label_counts["train"] == {"no_emotion": 2, "several": 2}
    auto = SyntheticMulTDataModule(n=(20, 10, 10), dims=DIMS, length=L, no_emotion=0.1, several_emotions=0.05)
    assert Path(auto.path).name == "mult_iemocap_20-10-10_16-6-5_10_0_none0.1_several0.05.pkl"
