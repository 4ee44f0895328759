"""DEAP: generator -> reader round trip, video pairing through participant_ratings.csv, windows and labels, both
split protocols, the missing-video warning, bad input, the face feature cache and the label signal the method
needs."""

from __future__ import annotations

import csv
import pickle
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from lightning_kd.checkpoint import ConfigError, DataFileNotFoundError, DataFormatError, WeightsError
from lightning_kd.data import DEAPDataModule, read_deap
from lightning_kd.data.eeg_face import DEAP_EEG_CHANNELS, EEG_CHANNELS_28, EEGFaceTrial
from lightning_kd.data.eeg_face_data import EEGFaceDataModule, assign_splits, window_times
from lightning_kd.data.face_features import VideoBackboneFeatures
from lightning_kd.data.formats.deap import RATINGS_CSV, read_presentation_order
from lightning_kd.data.formats.safe_pickle import restricted_load
from lightning_kd.data.formats.video import frame_indices, read_face_features
from lightning_kd.data.generate.command import generate_cli
from lightning_kd.data.generate.deap import write_deap, write_py2_pickle

SUBJECTS, TRIALS, SECONDS = 4, 6, 8.0  # 2 windows per trial; subject 4 has no video; s01 lacks one


@pytest.fixture(scope="session")
def deap_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_deap(tmp_path_factory.mktemp("deap") / "DEAP", subjects=SUBJECTS, trials=TRIALS, seconds=SECONDS,
                      video_subjects=3, missing_videos=1, seed=0)


def _dm(root: Path, **kw) -> DEAPDataModule:
    kw.setdefault("n_folds", 3)
    return DEAPDataModule(str(root), **kw)


def _quiet_splits(dm: EEGFaceDataModule):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return dm.splits


def _one_line(e: pytest.ExceptionInfo, path: Path | str) -> str:
    msg = str(e.value)
    assert "\n" not in msg and str(path) in msg and "Fix:" in msg, msg
    return msg


def _dat(root: Path, s: int) -> dict:
    with (root / "data_preprocessed_python" / f"s{s:02d}.dat").open("rb") as f:
        return restricted_load(f, encoding="latin1")


# -- round trip and pairing ------------------------------------------------------------------------------------------
def test_generator_writes_the_real_layout(deap_root: Path) -> None:
    d = _dat(deap_root, 1)
    assert sorted(d) == ["data", "labels"]
    assert d["data"].shape == (TRIALS, 40, int((3 + SECONDS) * 128)) and d["labels"].shape == (TRIALS, 4)
    assert ((d["labels"] >= 1) & (d["labels"] <= 9)).all()
    with pytest.raises(UnicodeDecodeError):  # a Python 2 pickle, as published: needs encoding="latin1"
        pickle.loads((deap_root / "data_preprocessed_python/s01.dat").read_bytes())
    header = (deap_root / RATINGS_CSV).read_text().splitlines()[0]
    assert header == "Participant_id,Trial,Experiment_id,Start_time,Valence,Arousal,Dominance,Liking,Familiarity"
    videos = sorted(p.relative_to(deap_root).as_posix() for p in (deap_root / "face_video").rglob("*"))
    assert "face_video/s01/s01_trial06.avi" not in videos and "face_video/s02/s02_trial06.avi" in videos
    assert not (deap_root / "face_video/s04").exists()
    assert len([v for v in videos if v.endswith(".avi")]) == 3 * TRIALS - 1


def test_generator_is_deterministic(tmp_path: Path) -> None:
    a = write_deap(tmp_path / "a", subjects=1, trials=2, seconds=4.0, seed=5)
    b = write_deap(tmp_path / "b", subjects=1, trials=2, seconds=4.0, seed=5)
    c = write_deap(tmp_path / "c", subjects=1, trials=2, seconds=4.0, seed=6)
    files = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    assert files and all((a / f).read_bytes() == (b / f).read_bytes() for f in files)
    assert (a / files[0]).read_bytes() != (c / files[0]).read_bytes()


def test_rating_noise_changes_only_the_valence_arousal_ratings(tmp_path: Path) -> None:
    """rating_noise 0 writes the noiseless files byte for byte; > 0 changes the reported valence / arousal (and so
    the labels), never the EEG or the faces, which see the felt emotion."""
    kw = {"subjects": 1, "trials": 6, "seconds": 4.0, "seed": 5}
    a, b = write_deap(tmp_path / "a", **kw), write_deap(tmp_path / "b", rating_noise=0.0, **kw)
    noisy = write_deap(tmp_path / "n", rating_noise=0.5, **kw)
    files = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    assert all((a / f).read_bytes() == (b / f).read_bytes() for f in files)
    clean, rough = _dat(a, 1), _dat(noisy, 1)
    assert np.array_equal(clean["data"], rough["data"])
    assert np.array_equal(clean["labels"][:, 2:], rough["labels"][:, 2:])
    assert not np.array_equal(clean["labels"][:, :2], rough["labels"][:, :2])
    videos = sorted(p.relative_to(a) for p in (a / "face_video").rglob("*.avi"))
    assert videos and all((a / v).read_bytes() == (noisy / v).read_bytes() for v in videos)
    with pytest.raises(ValueError, match="rating_noise"):
        write_deap(tmp_path / "x", rating_noise=-1.0, **kw)


def test_reader_round_trip(deap_root: Path) -> None:
    trials = read_deap(deap_root)
    assert [(t.subject, t.trial) for t in trials] == [(s, e) for s in range(1, 5) for e in range(1, TRIALS + 1)]
    d = _dat(deap_root, 2)
    t = next(t for t in trials if (t.subject, t.trial) == (2, 3))
    assert t.channels == DEAP_EEG_CHANNELS and t.eeg.dtype == np.float32
    assert np.array_equal(t.eeg, d["data"][2, :32, 384:])  # baseline (3 s) dropped, peripheral channels not read
    assert t.ratings == dict(zip(("valence", "arousal", "dominance", "liking"), d["labels"][2].tolist()))
    assert [t.subject for t in read_deap(deap_root, [3])] == [3] * TRIALS


def test_videos_are_paired_through_participant_ratings(deap_root: Path) -> None:
    order = read_presentation_order(deap_root)
    assert any(order[s][e] != e for s in order for e in order[s])  # presentation order is not the video order
    with (deap_root / RATINGS_CSV).open() as f:
        rows = list(csv.DictReader(f))
    for t in read_deap(deap_root):
        row = next(r for r in rows if int(r["Participant_id"]) == t.subject and int(r["Experiment_id"]) == t.trial)
        name = f"s{t.subject:02d}_trial{int(row['Trial']):02d}"
        assert float(row["Valence"]) == t.ratings["valence"]  # the CSV row is this trial's
        if t.subject == 4 or (t.subject == 1 and int(row["Trial"]) == TRIALS):
            assert t.video is None and t.face_features is None
        else:
            assert t.video.name == name + ".avi" and t.face_features.name == name + ".npz"


@pytest.fixture(scope="session")
def signal_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """More trials (8 x 20, 12 s = 3 windows each), every subject with video: for statistics over trials."""
    return write_deap(tmp_path_factory.mktemp("deap") / "DEAP", subjects=8, trials=20, seconds=12.0,
                      video_subjects=8, missing_videos=0, seed=0)


@pytest.mark.slow
def test_pairing_gives_each_trial_its_own_face(signal_root: Path) -> None:
    """The face of a trial shows its valence (forehead region): with the CSV pairing the correlation is clear; the
    .dat row number as video number (the wrong pairing) loses it."""
    trials = read_deap(signal_root)
    forehead = [(1 * 4 + c) * 3 for c in (1, 2)]  # 4 x 4 grid, row 1, columns 1-2, red channel

    def brightness(path: Path) -> float:
        feats, _ = read_face_features(path)
        return float(feats[:, forehead].mean())

    val = np.array([t.ratings["valence"] for t in trials])
    right = np.array([brightness(t.face_features) for t in trials])
    wrong = np.array([brightness(t.face_features.with_name(f"s{t.subject:02d}_trial{t.trial:02d}.npz"))
                      for t in trials])
    r_right, r_wrong = np.corrcoef(right, val)[0, 1], np.corrcoef(wrong, val)[0, 1]
    assert r_right > 0.35 and abs(r_wrong) < 0.2, (r_right, r_wrong)


# -- windows, labels, batches ----------------------------------------------------------------------------------------
def test_windows_labels_and_batches(deap_root: Path) -> None:
    dm = _dm(deap_root, protocol="subject_dependent", standardize=False, target="valence", threshold=5.0)
    splits = _quiet_splits(dm)
    trials = {(t.subject, t.trial): t for t in read_deap(deap_root)}
    rows = [dm.channels.index(c) for c in EEG_CHANNELS_28]
    assert dm.channels == EEG_CHANNELS_28
    for split in splits.values():
        for i, sid in enumerate(split.ids):
            s, t, w = (int(sid[1:3]), int(sid[5:7]), int(sid[9:11]))
            trial = trials[(s, t)]
            eeg = trial.eeg[[DEAP_EEG_CHANNELS.index(c) for c in EEG_CHANNELS_28]][rows]
            assert torch.equal(split.inputs["eeg"][i], torch.from_numpy(eeg[:, w * 512:(w + 1) * 512]))
            assert int(split.target[i]) == int(trial.ratings["valence"] >= 5.0)
            feats, fps = read_face_features(trial.face_features)
            idx = frame_indices(window_times(2, 4.0, 5), fps, len(feats)).reshape(2, 5)[w]
            assert torch.equal(split.inputs["face"][i], torch.from_numpy(feats[idx]))
    n = sum(len(s) for s in splits.values())
    assert n == (3 * TRIALS - 1) * 2  # trials with a face file x 2 windows
    assert dm.feature_dims == {"eeg": 28, "face": 48} and dm.seq_lens == {"eeg": 512, "face": 5}
    assert dm.target_kind == "binary"
    batch = next(iter(dm.train_dataloader()))
    assert batch.inputs["eeg"].dtype == torch.float32 and batch.inputs["eeg"].shape[1:] == (28, 512)
    assert batch.inputs["face"].shape[1:] == (5, 48) and batch.target.dtype == torch.long
    assert batch.masks["eeg"].shape[1:] == (512,) and batch.masks["face"].all()
    high = _quiet_splits(_dm(deap_root, protocol="subject_dependent", target="valence", threshold=7.0))
    for name, split in splits.items():
        assert split.ids == high[name].ids
        assert (high[name].target <= split.target).all()
    assert sum(int((high[s].target < splits[s].target).sum()) for s in splits) > 0


def test_standardize_uses_training_statistics(deap_root: Path) -> None:
    raw = _quiet_splits(_dm(deap_root, standardize=False))
    std = _quiet_splits(_dm(deap_root))
    x = raw["train"].inputs["eeg"].double()
    mean, sd = x.mean(dim=(0, 2), keepdim=True), x.std(dim=(0, 2), keepdim=True, unbiased=False)
    assert torch.allclose(std["test"].inputs["eeg"].double(), (raw["test"].inputs["eeg"] - mean) / sd, atol=1e-4)
    assert torch.allclose(std["train"].inputs["eeg"].double().mean(dim=(0, 2)), torch.zeros(28, dtype=torch.float64),
                          atol=1e-4)


def test_custom_channels_window_and_frames(deap_root: Path) -> None:
    dm = _dm(deap_root, channels=["O2", "Fp1", "Cz"], window_s=2.0, frames_per_window=3, inputs=["eeg"])
    splits = dm.splits
    assert dm.feature_dims == {"eeg": 3} and dm.seq_lens == {"eeg": 256}
    assert sum(len(s) for s in splits.values()) == SUBJECTS * TRIALS * 4  # EEG only: every trial, 4 windows


def test_resampling_to_128_hz() -> None:
    t = np.arange(512 * 2) / 256.0
    eeg = np.stack([np.sin(2 * np.pi * 10 * t)] * 28).astype(np.float32)
    trials = [EEGFaceTrial(s, k, eeg, EEG_CHANNELS_28, {"arousal": 3.0 + 2 * k}, rate_hz=256.0, source=Path("x.bdf"))
              for s in (1, 2, 3) for k in (1, 2, 3)]

    class Listed(EEGFaceDataModule):
        def read_trials(self) -> list[EEGFaceTrial]:
            return trials

    dm = Listed("nowhere", inputs=["eeg"], standardize=False, n_folds=3, protocol="subject_dependent")
    x = dm.splits["train"].inputs["eeg"]
    assert x.shape[1:] == (28, 512)
    want = np.sin(2 * np.pi * 10 * np.arange(512) / 128.0)
    assert np.abs(x[0, 0, 32:-32].numpy() - want[32:-32]).max() < 0.02  # away from the resampling filter's edges


# -- splits ----------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("protocol, valid_by", [("subject_dependent", "trials"), ("subject_independent", "trials"),
                                               ("subject_independent", "subjects")])
@pytest.mark.parametrize("fold", [0, 1, 2])
def test_splits_never_leak_a_trial(deap_root: Path, protocol: str, valid_by: str, fold: int) -> None:
    dm = _dm(deap_root, protocol=protocol, fold=fold, inputs=["eeg"], valid_by=valid_by)
    splits = dm.splits
    by_split = {name: {sid[:7] for sid in s.ids} for name, s in splits.items()}
    assert by_split["train"].isdisjoint(by_split["valid"]) and by_split["train"].isdisjoint(by_split["test"])
    assert by_split["valid"].isdisjoint(by_split["test"])
    assert sum(map(len, by_split.values())) == SUBJECTS * TRIALS
    subjects = {name: {k[:3] for k in keys} for name, keys in by_split.items()}
    if protocol == "subject_independent":  # no test subject in train or valid
        assert subjects["train"].isdisjoint(subjects["test"]) and subjects["valid"].isdisjoint(subjects["test"])
        if valid_by == "subjects":
            assert subjects["train"].isdisjoint(subjects["valid"])
        else:  # validation trials of every training subject
            assert subjects["valid"] == subjects["train"]
    else:
        assert subjects["train"] == subjects["valid"] == subjects["test"] == {"s01", "s02", "s03", "s04"}
    assert {f"s{s:02d}_t{t:02d}" for s, t in dm.split_trials("test")} == by_split["test"]


def test_split_assignment_is_deterministic_and_documented() -> None:
    keys = [(s, t) for s in range(1, 7) for t in range(1, 11)]
    a = assign_splits(keys, "subject_independent", 3, 0, split_seed=0, valid_by="subjects")
    assert a == assign_splits(list(reversed(keys)), "subject_independent", 3, 0, split_seed=0, valid_by="subjects")
    groups = np.array_split(np.random.default_rng(0).permutation(np.arange(1, 7)), 3)
    assert {s for (s, _), v in a.items() if v == "test"} == set(groups[0].tolist())
    assert {s for (s, _), v in a.items() if v == "valid"} == set(groups[1].tolist())
    assert a != assign_splits(keys, "subject_independent", 3, 0, split_seed=1, valid_by="subjects")
    b = assign_splits(keys, "subject_independent", 3, 0)  # valid_by trials: the same test subjects
    assert {k for k, v in b.items() if v == "test"} == {k for k, v in a.items() if v == "test"}
    s = int(groups[1][0])
    valid = {t for (ss, t), v in b.items() if ss == s and v == "valid"}
    assert valid == set(np.array_split(np.random.default_rng([0, s]).permutation(np.arange(1, 11)), 3)[0].tolist())
    for protocol in ("subject_dependent", "subject_independent"):
        folds = [assign_splits(keys, protocol, 3, f) for f in range(3)]
        for k in keys:  # every trial is tested in exactly one fold
            assert sum(f[k] == "test" for f in folds) == 1


# -- missing videos ----------------------------------------------------------------------------------------------------
def test_missing_videos_one_warning_listing_them(deap_root: Path) -> None:
    with pytest.warns(UserWarning) as record:
        dm = _dm(deap_root)
        _ = dm.splits
    mine = [str(w.message) for w in record if "left out" in str(w.message)]
    assert len(mine) == 1, mine
    missing = next(e for e, t in read_presentation_order(deap_root)[1].items() if t == TRIALS)
    assert f"s01 trial {missing}," in mine[0] + "," and "s04 trial 1" in mine[0] and "s02" not in mine[0]
    assert f"{TRIALS + 1} of {SUBJECTS * TRIALS} trials" in mine[0]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        eeg_only = _dm(deap_root, inputs=["eeg"]).splits  # an EEG-only model keeps every trial, silently
    assert sum(len(s) for s in eeg_only.values()) == SUBJECTS * TRIALS * 2
    same = _quiet_splits(_dm(deap_root, inputs=["eeg"], video_trials_only=True))
    assert {k: s.ids for k, s in same.items()} == {k: s.ids for k, s in dm.splits.items()}


def test_no_trial_with_video_is_an_error(deap_root: Path) -> None:
    with pytest.raises(DataFormatError) as e:
        _ = _dm(deap_root, subjects=[4]).splits
    assert "none of the 6 trials" in _one_line(e, deap_root)


# -- bad input ---------------------------------------------------------------------------------------------------------
@pytest.fixture
def copy_root(deap_root: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(deap_root, tmp_path / "DEAP"))


def _rewrite(root: Path, s: int, change) -> Path:
    d = _dat(root, s)
    change(d)
    path = root / "data_preprocessed_python" / f"s{s:02d}.dat"
    write_py2_pickle(path, d)
    return path


def test_missing_subject_and_folder(deap_root: Path, tmp_path: Path) -> None:
    with pytest.raises(DataFileNotFoundError) as e:
        read_deap(deap_root, [9])
    _one_line(e, deap_root / "data_preprocessed_python/s09.dat")
    with pytest.raises(DataFileNotFoundError) as e:
        read_deap(tmp_path)
    _one_line(e, tmp_path / "data_preprocessed_python")


def test_truncated_subject_file(copy_root: Path) -> None:
    path = copy_root / "data_preprocessed_python/s02.dat"
    path.write_bytes(path.read_bytes()[:5000])
    with pytest.raises(DataFormatError) as e:
        read_deap(copy_root, [2])
    assert "not a readable pickle" in _one_line(e, path)


@pytest.mark.parametrize("case, words", [
    ("no_labels", "lacks key(s) ['labels']"),
    ("2d", "must be a float array"),
    ("few_channels", "fewer than DEAP's 32 EEG channels"),
    ("only_baseline", "more than the 384 samples"),
    ("labels_shape", "must have shape (6, 4)"),
    ("nan", "trial 2 holds NaN"),
    ("rating_10", "arousal rating 10 of trial 4 is NaN or outside 1..9"),
    ("rating_nan", "valence rating nan of trial 1"),
])
def test_bad_subject_file_is_one_line(copy_root: Path, case: str, words: str) -> None:
    def change(d: dict) -> None:
        if case == "no_labels":
            del d["labels"]
        elif case == "2d":
            d["data"] = d["data"][0]
        elif case == "few_channels":
            d["data"] = d["data"][:, :30]
        elif case == "only_baseline":
            d["data"] = d["data"][:, :, :384]
        elif case == "labels_shape":
            d["labels"] = d["labels"][:, :2]
        elif case == "nan":
            d["data"][1, 5, 1000] = np.nan
        elif case == "rating_10":
            d["labels"][3, 1] = 10.0
        elif case == "rating_nan":
            d["labels"][0, 0] = np.nan

    path = _rewrite(copy_root, 2, change)
    with pytest.raises(DataFormatError) as e:
        read_deap(copy_root, [2])
    assert words in _one_line(e, path)


def test_bad_ratings_csv(copy_root: Path) -> None:
    csv_path = copy_root / RATINGS_CSV
    text = csv_path.read_text()
    csv_path.write_text(text.replace("Experiment_id", "Experiment"))
    with pytest.raises(DataFormatError) as e:
        read_deap(copy_root, [1])
    assert "lacks column(s) ['Experiment_id']" in _one_line(e, csv_path)
    csv_path.write_text("\n".join(ln for ln in text.splitlines() if not ln.startswith("2,")) + "\n")
    with pytest.raises(DataFormatError) as e:
        read_deap(copy_root, [2])
    assert "no row of participant 2" in _one_line(e, csv_path)
    assert len(read_deap(copy_root, [4])) == TRIALS  # no video: the CSV is not needed
    csv_path.unlink()
    with pytest.raises(DataFileNotFoundError) as e:
        read_deap(copy_root, [1])
    _one_line(e, csv_path)


def test_base_refuses_missing_channels_ratings_and_short_trials() -> None:
    def dm(trial: EEGFaceTrial, **kw) -> EEGFaceDataModule:
        class One(EEGFaceDataModule):
            def read_trials(self) -> list[EEGFaceTrial]:
                return [trial]
        return One("nowhere", inputs=["eeg"], **kw)

    src = Path("/data/s01.bdf")
    eeg = np.zeros((30, 1024), np.float32)
    with pytest.raises(DataFormatError) as e:
        _ = dm(EEGFaceTrial(1, 1, eeg, EEG_CHANNELS_28[:-2] + ("X", "Y"), {"arousal": 5}, source=src)).splits
    assert "lacks 2 of the 28 configured (PO4, O2)" in _one_line(e, src)
    good = EEGFaceTrial(1, 1, np.zeros((28, 1024), np.float32), EEG_CHANNELS_28, {"arousal": 9.5}, source=src)
    with pytest.raises(DataFormatError) as e:
        _ = dm(good).splits
    assert "arousal rating 9.5 is outside 1..9" in _one_line(e, src)
    with pytest.raises(DataFormatError) as e:
        _ = dm(good, target="valence").splits
    assert "no valence rating" in _one_line(e, src)
    short = EEGFaceTrial(1, 1, np.zeros((28, 300), np.float32), EEG_CHANNELS_28, {"arousal": 5}, source=src)
    with pytest.raises(DataFormatError) as e:
        _ = dm(short).splits
    assert "shorter than one 4 s window" in _one_line(e, src)


@pytest.mark.parametrize("kw", [{"target": "dominance"}, {"protocol": "loso"}, {"n_folds": 2}, {"fold": 3},
                                {"inputs": ["eeg", "audio"]}, {"face_features": "r3d"}, {"window_s": 0},
                                {"valid_by": "windows"}])
def test_bad_options_are_config_errors(kw: dict) -> None:
    with pytest.raises(ConfigError) as e:
        DEAPDataModule("nowhere", **{"n_folds": 3, **kw})
    assert "\n" not in str(e.value) and "Fix: set data.init_args." in str(e.value)


# -- video backbone features and their cache ---------------------------------------------------------------------------
def test_backbone_features_and_cache(deap_root: Path, tmp_path: Path) -> None:
    kw = dict(face_features="backbone", video_backbone="resnet10t", video_input_size=32, inputs=["face"],
              cache_dir=str(tmp_path / "cache"))
    dm = _dm(deap_root, **kw)
    splits = _quiet_splits(dm)
    n_videos = 3 * TRIALS - 1
    assert dm._backbone.encoded == n_videos and len(list((tmp_path / "cache").glob("*.npz"))) == n_videos
    assert dm.feature_dims == {"face": 512} and dm.seq_lens == {"face": 5}
    again = _dm(deap_root, **kw)
    same = _quiet_splits(again)
    assert again._backbone.encoded == 0 and again._backbone.hits == n_videos  # every video a hit ...
    assert again._backbone._model is None  # ... and no model built
    assert torch.equal(same["train"].inputs["face"], splits["train"].inputs["face"])

    import timm

    weights = tmp_path / "r10t.pth"
    torch.manual_seed(3)
    torch.save(timm.create_model("resnet10t", pretrained=False).state_dict(), weights)  # a head to ignore
    trained = _dm(deap_root, **kw, video_weights=str(weights))
    other = _quiet_splits(trained)
    assert trained._backbone.encoded == n_videos  # other weights: a miss for every video
    assert not torch.equal(other["train"].inputs["face"], splits["train"].inputs["face"])

    video = next(t.video for t in read_deap(deap_root, [2]))
    feats = VideoBackboneFeatures("resnet10t", None, 32, tmp_path / "cache")
    times = window_times(2, 4.0, 5)
    with pytest.warns(UserWarning, match="RANDOMLY initialised resnet10t"):
        k = feats.key(video, times)
    assert k != feats.key(next(t.video for t in read_deap(deap_root, [3])), times)  # keyed by the video's bytes
    assert k != feats.key(video, times[:5]) and k != VideoBackboneFeatures("resnet10t", str(weights), 32,
                                                                           tmp_path / "cache").key(video, times)
    copy = tmp_path / "copy.avi"
    shutil.copy(video, copy)
    assert feats.key(copy, times) == k  # ... not by its name


def test_missing_backbone_weights_name_the_option(deap_root: Path, tmp_path: Path) -> None:
    dm = _dm(deap_root, face_features="backbone", video_backbone="resnet10t", video_weights=str(tmp_path / "no.pth"),
             cache_dir=str(tmp_path / "cache"))
    with pytest.raises(WeightsError) as e:
        _quiet_splits(dm)
    assert "data.init_args.video_weights" in _one_line(e, tmp_path / "no.pth")
    wrong = tmp_path / "vit.pth"
    import timm

    torch.save(timm.create_model("test_vit", pretrained=False).state_dict(), wrong)
    dm = _dm(deap_root, face_features="backbone", video_backbone="resnet10t", video_weights=str(wrong),
             cache_dir=str(tmp_path / "cache"))
    with pytest.raises(WeightsError) as e:
        _quiet_splits(dm)
    assert "of the timm model 'resnet10t'" in _one_line(e, wrong)


# -- the command -------------------------------------------------------------------------------------------------------
def test_generate_deap_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "DEAP"
    args = ["deap", "--out", str(out), "--subjects", "2", "--trials", "3", "--seconds", "4", "--seed", "1"]
    generate_cli(args)
    assert "DEAP layout" in capsys.readouterr().out
    assert len(read_deap(out)) == 6
    with pytest.raises(ConfigError, match="not overwritten"):
        generate_cli(args)
    generate_cli([*args, "--force"])
    with pytest.raises(ConfigError, match="--subjects 0"):
        generate_cli(["deap", "--out", str(tmp_path / "x"), "--subjects", "0"])
    with pytest.raises(ConfigError, match="size"):
        generate_cli(["deap", "--out", str(tmp_path / "y"), "--size", "30"])


# -- the property the method needs -------------------------------------------------------------------------------------
def _window_features(split) -> dict[str, np.ndarray]:
    from scipy.signal import welch

    f, p = welch(split.inputs["eeg"].numpy(), fs=128, nperseg=128, axis=-1)
    bands = [(4, 8), (8, 13), (13, 30), (30, 45)]
    eeg = np.log(np.stack([p[..., (f >= a) & (f < b)].mean(-1) for a, b in bands], -1)).reshape(len(split), -1)
    face = split.inputs["face"].numpy().mean(axis=1)
    return {"eeg": eeg, "face": face, "eeg+face": np.hstack([eeg, face]), "y": split.target.numpy()}


@pytest.mark.slow
@pytest.mark.parametrize("target", ["arousal", "valence"])
def test_eeg_carries_label_information_beyond_the_face(signal_root: Path, target: str) -> None:
    """Logistic regression on window features, subject-independent 3 folds: EEG band power + face > face > chance."""
    from sklearn.linear_model import LogisticRegression

    acc: dict[str, list[float]] = {"face": [], "eeg+face": []}
    chance = []
    for fold in range(3):
        splits = _quiet_splits(_dm(signal_root, target=target, fold=fold))
        train, test = _window_features(splits["train"]), _window_features(splits["test"])
        for k in acc:
            clf = LogisticRegression(C=0.1, max_iter=2000).fit(train[k], train["y"])
            acc[k].append(clf.score(test[k], test["y"]))
        chance.append(max(test["y"].mean(), 1 - test["y"].mean()))
    face, both, majority = (float(np.mean(v)) for v in (acc["face"], acc["eeg+face"], chance))
    print(f"{target}: eeg+face {both:.3f}, face {face:.3f}, majority {majority:.3f}")
    assert face > majority + 0.08 and both > face + 0.05, (both, face, majority)


def test_data_contract_for_cdgkd_stages(deap_root: Path) -> None:
    from lightning_kd.checkpoint import DataMismatchError
    from lightning_kd.data.contract import DataNeeds, check_data

    teacher = DataNeeds(inputs=("eeg", "face"), targets=("binary",))
    dm = _dm(deap_root)
    _quiet_splits(dm)
    check_data(teacher, dm, "CDGKD teacher")
    check_data(DataNeeds(inputs=("face",), targets=("binary",)), dm, "CDGKD student")
    face_only = _dm(deap_root, inputs=["face"])
    _quiet_splits(face_only)
    with pytest.raises(DataMismatchError, match="missing: eeg"):
        check_data(teacher, face_only, "CDGKD teacher")


def test_storage_dtype_holds_windows_in_half(deap_root: Path) -> None:
    ref, half = _dm(deap_root), _dm(deap_root, storage_dtype="float16")
    _quiet_splits(ref), _quiet_splits(half)
    assert {v.dtype for v in half.split("train").inputs.values()} == {torch.float16}
    a, b = next(iter(ref.val_dataloader())), next(iter(half.val_dataloader()))
    assert set(a.inputs) == set(b.inputs) == {"eeg", "face"}
    for k, x in a.inputs.items():
        assert b.inputs[k].dtype == torch.float32 and torch.equal(b.inputs[k], x.half().float())
