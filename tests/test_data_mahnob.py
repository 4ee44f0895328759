"""MAHNOB-HCI: the generator writes the real ``Sessions/<id>/`` layout, the reader cuts the stimulus at the Status
triggers, selects channels by name and resamples to 128 Hz; bad input stops with one line naming the file."""

from __future__ import annotations

import shutil
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
import torch

from lightning_kd.checkpoint import ConfigError, DataFileNotFoundError, DataFormatError
from lightning_kd.data import MAHNOBDataModule
from lightning_kd.data.eeg_face import EEG_CHANNELS_28
from lightning_kd.data.formats.mahnob import MAHNOB_EEG_CHANNELS, read_mahnob, read_session_eeg, read_session_xml
from lightning_kd.data.generate.command import generate_cli
from lightning_kd.data.generate.mahnob import (
    BASELINE_S,
    BDF_CHANNELS,
    bdf_name,
    recording,
    session_id,
    write_bdf,
    write_mahnob,
    write_session_xml,
)

RATE = 256


@pytest.fixture(scope="module")
def small(tmp_path_factory) -> Path:
    """3 subjects x 3 stimulus sessions of 8.2-9.5 s (2 windows of 4 s each), and one neutral session each."""
    root = tmp_path_factory.mktemp("mahnob")
    write_mahnob(root, subjects=3, sessions=3, seconds=(8.2, 9.5), seed=3)
    return root


def _one_line(e: pytest.ExceptionInfo, name: str) -> None:
    msg = str(e.value)
    assert "\n" not in msg and name in msg and "Fix:" in msg, msg


def _marked_bdf(path: Path, n_stim: int, names=BDF_CHANNELS) -> np.ndarray:
    """A .bdf whose EEG channel i carries a sine of (3 + i) Hz during the stimulus and a +-900 uV marker before /
    after it; returns the stimulus EEG (32, n_stim)."""
    t = np.arange(n_stim) / RATE
    stim = np.stack([20.0 * np.sin(2 * np.pi * (3 + i) * t) for i in range(32)])
    pre = BASELINE_S * RATE
    post = -(-(2 * pre + n_stim) // RATE) * RATE - pre - n_stim
    data = recording(stim, np.random.default_rng(0), baseline_eeg_uv=(np.full((32, pre), 900.0),
                                                                        np.full((32, post), -900.0)))
    keep = [BDF_CHANNELS.index(n) for n in names]
    write_bdf(path, names, data[keep])
    return stim


def test_stimulus_cut_at_the_triggers(tmp_path):
    n_stim = 10 * RATE + 77
    stim = _marked_bdf(tmp_path / "a.bdf", n_stim)
    eeg, channels, rate = read_session_eeg(tmp_path / "a.bdf")
    assert channels == MAHNOB_EEG_CHANNELS and rate == RATE and eeg.dtype == np.float32
    assert eeg.shape == (32, n_stim)  # exactly [onset, end): no marker sample at either edge
    np.testing.assert_allclose(eeg, stim, atol=0.05)  # 24-bit quantisation: 0.03 uV


def _marked_layout(root: Path, subjects: int = 3, sessions: int = 1, seconds: float = 9.0) -> None:
    """Sessions whose .bdf carry the marked sines of :func:`_marked_bdf` (no video)."""
    for s in range(1, subjects + 1):
        for k in range(1, sessions + 1):
            folder = root / "Sessions" / str(session_id(s, 2 * k))
            _marked_bdf(folder / bdf_name(s, 2 * k), int(seconds * RATE))
            write_session_xml(folder / "session.xml", {"sessionId": str(session_id(s, 2 * k)), "cutNr": str(2 * k),
                                                       "isStim": "1", "feltArsl": str(2 + s), "feltVlnc": "5"}, s)


def test_datamodule_resamples_the_cut_stimulus_to_128_hz_by_channel_name(tmp_path):
    _marked_layout(tmp_path)
    dm = MAHNOBDataModule(str(tmp_path), inputs=["eeg"], standardize=False, n_folds=3, valid_by="subjects", batch_size=4)
    rows = [MAHNOB_EEG_CHANNELS.index(c) for c in EEG_CHANNELS_28]
    t = np.arange(2 * 512) / 128
    want = np.stack([20.0 * np.sin(2 * np.pi * (3 + r) * t) for r in rows]).reshape(28, 2, 512).transpose(1, 0, 2)
    for split in ("train", "valid", "test"):
        st = dm.splits[split]
        x = st.inputs["eeg"].numpy()
        assert x.shape == (2, 28, 512) and [i[-3:] for i in st.ids] == ["w00", "w01"]
        assert np.abs(x).max() < 25.0  # no +-900 uV marker sample, none leaking through the resampling filter
        np.testing.assert_allclose(x[0, :, 32:], want[0, :, 32:], atol=0.5)  # the sine of the right file channel
        np.testing.assert_allclose(x[1, :, :-32], want[1, :, :-32], atol=0.5)
        assert st.target.tolist() == [int(2 + subj >= 5) for subj, _ in dm.split_trials(split) for _w in range(2)]


def test_fewer_channels_than_configured_names_the_file(tmp_path):
    folder = tmp_path / "Sessions" / "2"
    few = tuple(c for c in BDF_CHANNELS if c not in ("F3", "O2", "T8"))
    _marked_bdf(folder / bdf_name(1, 2), 9 * RATE, names=few)
    write_session_xml(folder / "session.xml", {"sessionId": "2", "isStim": "1", "feltArsl": "3", "feltVlnc": "5"}, 1)
    dm = MAHNOBDataModule(str(tmp_path), inputs=["eeg"], n_folds=3)
    with pytest.raises(DataFormatError) as e:
        _ = dm.splits
    _one_line(e, bdf_name(1, 2))
    assert "F3" in str(e.value)


def test_round_trip_ratings_subjects_and_lengths(small):
    trials = read_mahnob(small)
    want = [(s, session_id(s, c)) for s in (1, 2, 3) for c in (2, 4, 6)]  # the neutral sessions (cutNr 1) skipped
    assert [(t.subject, t.trial) for t in trials] == want
    for t in trials:
        folder = small / "Sessions" / str(t.trial)
        xml = ET.parse(folder / "session.xml").getroot()
        assert t.ratings["arousal"] == float(xml.get("feltArsl")) and t.ratings["valence"] == float(xml.get("feltVlnc"))
        assert t.channels == MAHNOB_EEG_CHANNELS and t.eeg.dtype == np.float32 and t.rate_hz == RATE
        assert t.eeg.shape == (32, round(float(xml.get("cutLenSec")) * RATE))
        assert t.face_features == folder / "face_features.npz"
        assert t.video is not None and t.video.name.endswith(f"_C1 trigger _C_Section_{xml.get('cutNr')}.avi")
        assert t.source == folder / bdf_name(t.subject, int(xml.get("cutNr")))
    assert read_session_xml(small / "Sessions" / "1" / "session.xml").is_stim is False


def _copy(small: Path, tmp_path: Path) -> Path:
    root = tmp_path / "copy"
    shutil.copytree(small, root)
    return root


def _edit_xml(path: Path, **attrs: str | None) -> None:
    tree = ET.parse(path)
    for k, v in attrs.items():
        if v is None:
            tree.getroot().attrib.pop(k, None)
        else:
            tree.getroot().set(k, v)
    tree.write(path)


@pytest.mark.parametrize("attrs", [{"feltArsl": None}, {"feltVlnc": None}, {"feltArsl": "10"}, {"feltVlnc": "0"},
                                   {"feltArsl": "high"}])
def test_bad_ratings_name_the_file(small, tmp_path, attrs):
    root = _copy(small, tmp_path)
    xml = root / "Sessions" / "4" / "session.xml"
    _edit_xml(xml, **attrs)
    with pytest.raises(DataFormatError) as e:
        read_mahnob(root)
    _one_line(e, str(xml))


def test_missing_bdf_stops_or_is_skipped_with_one_warning(small, tmp_path):
    root = _copy(small, tmp_path)
    (root / "Sessions" / "4" / bdf_name(1, 4)).unlink()
    with pytest.raises(DataFileNotFoundError) as e:
        read_mahnob(root)
    _one_line(e, bdf_name(1, 4))
    with pytest.warns(UserWarning, match="1 emotion session"):
        trials = read_mahnob(root, skip_incomplete=True)
    assert [t.trial for t in trials] == [2, 6, 132, 134, 136, 262, 264, 266]


def test_bdf_without_status_or_triggers(tmp_path):
    n = 5 * RATE
    _marked_bdf(tmp_path / "nostatus.bdf", n, names=BDF_CHANNELS[:-1])
    with pytest.raises(DataFormatError) as e:
        read_session_eeg(tmp_path / "nostatus.bdf")
    _one_line(e, "nostatus.bdf")
    assert "Status" in str(e.value)
    data = recording(np.zeros((32, n)), np.random.default_rng(0))
    data[-1, n + BASELINE_S * RATE:] = 0  # drop the end trigger
    write_bdf(tmp_path / "onetrigger.bdf", BDF_CHANNELS, data)
    with pytest.raises(DataFormatError) as e:
        read_session_eeg(tmp_path / "onetrigger.bdf")
    _one_line(e, "onetrigger.bdf")
    whole = (tmp_path / "onetrigger.bdf").read_bytes()
    (tmp_path / "truncated.bdf").write_bytes(whole[:-RATE * 3])  # MNE alone would pad the last record with zeros
    with pytest.raises(DataFormatError, match="truncated") as e:
        read_session_eeg(tmp_path / "truncated.bdf")
    _one_line(e, "truncated.bdf")
    (tmp_path / "junk.bdf").write_bytes(b"not a bdf")
    with pytest.raises(DataFormatError) as e:
        read_session_eeg(tmp_path / "junk.bdf")
    _one_line(e, "junk.bdf")


def test_colour_camera_picked_among_several_avis(small, tmp_path):
    root = _copy(small, tmp_path)
    folder = root / "Sessions" / "2"
    colour = next(folder.glob("*C1 trigger*.avi"))
    shutil.copy(colour, folder / "P1-Rec1-2009.07.09.17.53.46_C2 trigger _BW_Section_2.avi")
    assert read_mahnob(root)[0].video == colour
    xml = folder / "session.xml"
    tree = ET.parse(xml)
    for t in tree.getroot().findall("track"):
        if t.get("type") == "Video":
            tree.getroot().remove(t)
    tree.write(xml)
    assert read_mahnob(root)[0].video == colour  # by the C1 file name when the XML has no video track


def test_no_sessions_folder_and_no_emotion_session(tmp_path):
    with pytest.raises(DataFileNotFoundError) as e:
        read_mahnob(tmp_path)
    _one_line(e, "Sessions")
    write_session_xml(tmp_path / "Sessions" / "1" / "session.xml", {"sessionId": "1", "isStim": "0"}, 1)
    with pytest.raises(DataFormatError) as e:
        read_mahnob(tmp_path)
    _one_line(e, "Sessions")


def test_generate_command_refuses_then_forces(tmp_path, capsys):
    argv = ["mahnob", "--out", str(tmp_path), "--subjects", "1", "--sessions", "1", "--seconds", "4", "4"]
    generate_cli(argv)
    assert "wrote" in capsys.readouterr().out
    assert sorted(p.name for p in (tmp_path / "Sessions").iterdir()) == ["1", "2"]
    with pytest.raises(ConfigError, match="exists"):
        generate_cli(argv)
    generate_cli([*argv[:-5], "--subjects", "2", "--sessions", "1", "--seconds", "4", "4", "--force"])
    assert sorted(p.name for p in (tmp_path / "Sessions").iterdir()) == ["1", "131", "132", "2"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary folder left
    with pytest.raises(ConfigError, match="1..20"):
        generate_cli(["mahnob", "--out", str(tmp_path / "x"), "--sessions", "21"])
    assert session_id(2, 2) == 132


def test_generator_is_seeded(tmp_path):
    a = write_mahnob(tmp_path / "a", subjects=1, sessions=1, seconds=(4.0, 4.0), seed=5)
    b = write_mahnob(tmp_path / "b", subjects=1, sessions=1, seconds=(4.0, 4.0), seed=5)
    for f in sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file()):
        assert (a / f).read_bytes() == (b / f).read_bytes(), f


@pytest.mark.parametrize("protocol", ["subject_dependent", "subject_independent"])
def test_datamodule_batches_and_leak_free_splits(small, protocol):
    dm = MAHNOBDataModule(str(small), protocol=protocol, n_folds=3, valid_by="subjects", batch_size=4)
    batch = next(iter(dm.train_dataloader()))
    assert batch.inputs["eeg"].shape == (4, 28, 512) and batch.inputs["face"].shape[:2] == (4, 5)
    assert dm.feature_dims == {"eeg": 28, "face": batch.inputs["face"].shape[-1]}
    assert dm.seq_lens == {"eeg": 512, "face": 5}
    trials = {split: set(dm.split_trials(split)) for split in ("train", "valid", "test")}
    assert sum(len(t) for t in trials.values()) == 9 and all(trials.values())
    assert not (trials["train"] & trials["valid"]) and not (trials["train"] & trials["test"])
    assert not (trials["valid"] & trials["test"])
    for split, pairs in trials.items():  # every window of a trial sits in that trial's split
        ids = set(dm.ids(split))
        assert {i.rsplit("_w", 1)[0] for i in ids} == {f"s{s:02d}_t{t:02d}" for s, t in pairs}
        assert len(ids) == 2 * len(pairs)
    subjects = {split: {s for s, _ in pairs} for split, pairs in trials.items()}
    if protocol == "subject_independent":
        assert all(len(subjects[a] & subjects[b]) == 0 for a, b in (("train", "valid"), ("train", "test"),
                                                                      ("valid", "test")))
    else:
        assert subjects["train"] == subjects["valid"] == subjects["test"] == {1, 2, 3}


def test_face_from_the_video_through_a_tiny_backbone(small, tmp_path):
    dm = MAHNOBDataModule(str(small), inputs=["face"], face_features="backbone", video_backbone="resnet10t",
                          video_input_size=32, cache_dir=str(tmp_path / "cache"), n_folds=3, subjects=[1, 2, 3])
    with pytest.warns(UserWarning, match="RANDOMLY"):
        x = dm.splits["train"].inputs["face"]
    assert x.ndim == 3 and x.shape[1] == 5 and torch.isfinite(x).all()


@pytest.mark.slow
def test_label_signal_in_the_eeg(tmp_path):
    """Trial-level log alpha / beta band powers of the read EEG predict both binary ratings well above chance (the
    face carries the label only partly by design, through W_FACE: a weaker trial-level view)."""
    from scipy.signal import welch
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    write_mahnob(tmp_path, subjects=4, sessions=10, seconds=(8.0, 9.0), seed=1)
    trials = read_mahnob(tmp_path)
    feats = []
    for t in trials:
        f, p = welch(t.eeg, fs=t.rate_hz, nperseg=256)
        feats.append(np.log(np.concatenate([p[:, (f >= 8) & (f <= 12)].mean(1), p[:, (f >= 18) & (f <= 26)].mean(1)])))
    for target in ("arousal", "valence"):
        y = np.array([t.ratings[target] >= 5 for t in trials])
        assert 0.3 < y.mean() < 0.7
        model = make_pipeline(StandardScaler(), LogisticRegression(C=0.1, max_iter=5000))
        acc = cross_val_score(model, np.array(feats), y, cv=5).mean()
        assert acc > 0.7, (target, acc)


def test_datamodule_takes_every_base_option_with_the_base_default():
    """What the CLI sees (jsonargparse follows ``**kwargs`` into the base): every base option, in order, with the
    base default, plus ``skip_incomplete``."""
    from jsonargparse import ArgumentParser

    from lightning_kd.data.eeg_face_data import EEGFaceDataModule

    def options(cls: type) -> dict:
        parser = ArgumentParser()
        parser.add_class_arguments(cls, "d")
        return {a.dest[2:]: a.default for a in parser._actions if a.dest.startswith("d.")}

    base, mine = options(EEGFaceDataModule), options(MAHNOBDataModule)
    assert [n for n in mine if n in base] == list(base)
    assert all(mine[n] == d for n, d in base.items())
    assert set(mine) - set(base) == {"skip_incomplete"}
