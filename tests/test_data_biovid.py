"""BioVid Heat Pain: generator -> reader round trip in the distributed layout, subject-disjoint folds, task options,
bad input (one line each), the feature-file and backbone paths, and the label signal MT-PKDOT needs."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from lightning_kd.checkpoint import ConfigError, DataFileNotFoundError, DataFormatError
from lightning_kd.data import BiovidDataModule, read_biovid_samples
from lightning_kd.data.formats.biovid import (
    BIO_COLUMNS_A,
    BIO_COLUMNS_B,
    CLASSES,
    SAMPLES_COLUMNS,
    SAMPLES_CSV,
    parse_task,
    read_bio,
)
from lightning_kd.data.formats.video import frame_indices, read_face_features, video_info
from lightning_kd.data.generate.biovid import write_biovid
from lightning_kd.data.generate.command import generate_cli

SUBJECTS, PER_CLASS, FPS = 5, 2, 5.0
ROWS = 2816  # 5.5 s at 512 Hz


@pytest.fixture(scope="session")
def biovid_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_biovid(tmp_path_factory.mktemp("biovid") / "PartA", subjects=SUBJECTS, samples_per_class=PER_CLASS,
                        fps=FPS, seed=0)


@pytest.fixture()
def copy_root(biovid_root: Path, tmp_path: Path) -> Path:
    """A copy of the generated folder to damage."""
    out = tmp_path / "PartA"
    shutil.copytree(biovid_root, out)
    return out


def _dm(root: Path, **kw) -> BiovidDataModule:
    return BiovidDataModule(str(root), **kw)


def _one_line(e: pytest.ExceptionInfo, path: Path | str) -> str:
    msg = str(e.value)
    assert "\n" not in msg and str(path) in msg and "Fix:" in msg, msg
    return msg


# -- layout and round trip -------------------------------------------------------------------------------------------
def test_generator_writes_the_distributed_layout(biovid_root: Path) -> None:
    lines = (biovid_root / SAMPLES_CSV).read_text().splitlines()
    assert lines[0].split("\t") == list(SAMPLES_COLUMNS)
    assert len(lines) == 1 + SUBJECTS * len(CLASSES) * PER_CLASS
    samples = read_biovid_samples(biovid_root)
    assert sorted({s.subject_id for s in samples}) == list(range(SUBJECTS))
    assert len({s.sample_id for s in samples}) == len(samples)
    for s in samples:
        assert re.fullmatch(r"\d{6}_[wm]_\d+", s.subject_name)
        assert s.sample_name.startswith(f"{s.subject_name}-{s.class_name}-") and CLASSES[s.class_id] == s.class_name
        assert s.bio_path(biovid_root).is_file() and s.video_path(biovid_root).is_file()
        assert s.bio_path(biovid_root).parent.parent.name == "biosignals_filtered"
    first = samples[0].bio_path(biovid_root)
    text = first.read_text().splitlines()
    assert text[0] == "\t".join(BIO_COLUMNS_A) == "time\tgsr\tecg\temg_trapezius"
    assert len(text) == 1 + ROWS
    time_ms = np.loadtxt(first, delimiter="\t", skiprows=1)[:, 0]
    assert time_ms[0] == 0 and abs(time_ms[-1] - (ROWS - 1) * 1000 / 512) < 1e-2
    fps, n, _ = video_info(samples[0].video_path(biovid_root))
    assert fps == FPS and n == round(5.5 * FPS)


def test_reader_round_trip(biovid_root: Path) -> None:
    """Batches hold exactly the file contents (standardize off): bio columns by name, video rows at the frame times."""
    dm = _dm(biovid_root, bio_channels=["ecg", "emg_trapezius"], frames=4, standardize=False)
    samples = {s.sample_name: s for s in read_biovid_samples(biovid_root)}
    for split in ("train", "valid", "test"):
        st = dm.splits[split]
        for i, name in enumerate(st.ids):
            s = samples[name]
            raw = np.loadtxt(s.bio_path(biovid_root), delimiter="\t", skiprows=1, dtype=np.float64)
            assert torch.equal(st.inputs["bio"][i], torch.from_numpy(raw[:, [2, 3]].T.astype(np.float32)))
            feats, fps = read_face_features(s.feature_path(biovid_root))
            rows = frame_indices(np.array([0.6875, 2.0625, 3.4375, 4.8125]), fps, len(feats))
            assert torch.equal(st.inputs["video"][i], torch.from_numpy(feats[rows]))
            assert int(st.target[i]) == {"BL1": 0, "PA4": 1}[s.class_name]
    assert dm.feature_dims == {"video": 48, "bio": 2} and dm.seq_lens == {"video": 4, "bio": ROWS}
    assert dm.step_axes == {"video": 1, "bio": 2} and dm.target_kind == "binary"
    batch = next(iter(dm.train_dataloader()))
    assert batch.inputs["bio"].shape[1:] == (2, ROWS) and batch.masks["bio"].shape[1] == ROWS
    assert batch.masks["video"].shape[1] == 4 and batch.masks["video"].all()


def test_missing_protocol_drops_bio_samples_along_axis_2(biovid_root: Path) -> None:
    """A frame drop removes a bio sample across all channels (step axis 2); removing bio empties its mask."""
    from lightning_kd.data.missing import MissingCondition

    dm = _dm(biovid_root, bio_channels=["gsr", "emg_trapezius"])
    assert dm.modality_layout.step_axes == {"video": 1, "bio": 2}
    batch = next(iter(dm.test_dataloader()))
    bio = MissingCondition(0.5, "video+bio", seed=1).apply(batch, dm.modality_layout).inputs["bio"]
    zero = bio == 0
    assert torch.equal(zero[:, 0], zero[:, 1]) and 0.45 < zero.float().mean() < 0.55
    video_only = MissingCondition(0.0, "video").apply(batch, dm.modality_layout)
    assert not video_only.masks["bio"].any() and video_only.masks["video"].all()


def test_standardize_with_training_statistics(biovid_root: Path) -> None:
    dm = _dm(biovid_root)
    train = dm.splits["train"].inputs
    assert abs(float(train["bio"].mean())) < 1e-4 and abs(float(train["bio"].std()) - 1) < 1e-3
    assert torch.allclose(train["video"].mean(dim=(0, 1)), torch.zeros(48), atol=1e-4)
    assert abs(float(dm.splits["test"].inputs["bio"].mean())) > 1e-6  # test statistics are not used


def test_part_b_and_channel_choice(tmp_path: Path) -> None:
    root = write_biovid(tmp_path / "PartB", subjects=3, samples_per_class=1, fps=FPS, part="B", video_features=False)
    s = read_biovid_samples(root)[0]
    assert s.bio_path(root).read_text().split("\n", 1)[0] == "\t".join(BIO_COLUMNS_B)
    assert read_bio(s.bio_path(root), ["emg_corrugator", "gsr"], ROWS).shape == (2, ROWS)
    assert not (root / "video_features").exists()
    dm = _dm(root, n_folds=3, inputs=["bio"], bio_channels=["gsr", "ecg", "emg_trapezius", "emg_zygomaticus"])
    assert dm.feature_dims == {"bio": 4} and dm.seq_lens == {"bio": ROWS}


def test_time_column_in_microseconds_is_read(copy_root: Path) -> None:
    path = read_biovid_samples(copy_root)[0].bio_path(copy_root)
    raw = np.loadtxt(path, delimiter="\t", skiprows=1)
    raw[:, 0] = np.arange(ROWS) * 1e6 / 512
    np.savetxt(path, raw, delimiter="\t", header="\t".join(BIO_COLUMNS_A), comments="")
    assert np.allclose(read_bio(path, ["gsr"], ROWS)[0], raw[:, 1])


# -- folds and tasks -------------------------------------------------------------------------------------------------
def test_folds_are_subject_disjoint_in_every_fold(biovid_root: Path) -> None:
    names = {s.sample_name: s.subject_id for s in read_biovid_samples(biovid_root)}
    tests = []
    for fold in range(5):
        dm = _dm(biovid_root, fold=fold, inputs=["bio"])
        per = {sp: {names[i] for i in dm.splits[sp].ids} for sp in ("train", "valid", "test")}
        assert per["train"] and per["valid"] and per["test"]
        assert not (per["train"] & per["valid"] or per["train"] & per["test"] or per["valid"] & per["test"])
        assert per["train"] | per["valid"] | per["test"] == set(range(SUBJECTS))
        assert per["test"] == set(dm.split_subjects("test"))
        tests.append(per["test"])
    assert sorted(s for t in tests for s in t) == list(range(SUBJECTS))  # each subject tested once over the folds
    a, b = _dm(biovid_root, inputs=["bio"]), _dm(biovid_root, inputs=["bio"], split_seed=3)
    assert a.split_subjects("test") == _dm(biovid_root, inputs=["bio"]).split_subjects("test")
    assert a.subject_splits != b.subject_splits


def test_task_options(biovid_root: Path) -> None:
    assert parse_task("BL1_vs_PA4") == ("BL1", "PA4") and parse_task("5class") == CLASSES
    five = _dm(biovid_root, task="5class", inputs=["bio"])
    y = torch.cat([five.splits[s].target for s in ("train", "valid", "test")])
    assert five.target_kind == "class_index" and torch.bincount(y).tolist() == [SUBJECTS * PER_CLASS] * 5
    pair = _dm(biovid_root, task="PA1_vs_PA3", inputs=["bio"])
    for sp in ("train", "valid", "test"):
        st = pair.splits[sp]
        assert all(int(t) == (1 if "-PA3-" in i else 0) and ("-PA1-" in i or "-PA3-" in i)
                   for t, i in zip(st.target, st.ids))
    for bad in ("BL1_vs_BL1", "PA5_vs_BL1", "binary"):
        with pytest.raises(ConfigError, match="data.init_args.task") as e:
            _dm(biovid_root, task=bad)
        assert "\n" not in str(e.value)


@pytest.mark.parametrize("kw", [dict(n_folds=2), dict(fold=5), dict(inputs=["face"]), dict(bio_channels=["emg"]),
                                dict(video_features="jpg"), dict(frames=0)])
def test_bad_options_are_config_errors(kw: dict) -> None:
    with pytest.raises(ConfigError, match="Fix: set data.init_args."):
        BiovidDataModule("x", **kw)


# -- bad input -------------------------------------------------------------------------------------------------------
def _rewrite_bio(path: Path, edit) -> None:
    lines = path.read_text().splitlines()
    path.write_text("\n".join(edit(lines)) + "\n")


def test_samples_csv_missing_column(copy_root: Path) -> None:
    path = copy_root / SAMPLES_CSV
    rows = [line.split("\t") for line in path.read_text().splitlines()]
    path.write_text("\n".join("\t".join(r[:3] + r[4:]) for r in rows) + "\n")  # no class_name
    with pytest.raises(DataFormatError) as e:
        _ = _dm(copy_root).splits
    assert "class_name" in _one_line(e, path)


def test_bio_csv_missing_column(copy_root: Path) -> None:
    path = read_biovid_samples(copy_root)[0].bio_path(copy_root)
    _rewrite_bio(path, lambda lines: ["\t".join(line.split("\t")[:3]) for line in lines])
    with pytest.raises(DataFormatError) as e:
        read_bio(path, ["emg_trapezius"], ROWS)
    assert "emg_trapezius" in _one_line(e, path)


@pytest.mark.parametrize("which", ["bio", "feature", "video"])
def test_listed_sample_without_its_files(copy_root: Path, which: str) -> None:
    s = next(s for s in read_biovid_samples(copy_root) if s.class_name == "PA4")
    path = {"bio": s.bio_path, "feature": s.feature_path, "video": s.video_path}[which](copy_root)
    path.unlink()
    kw = {"video_features": "backbone", "video_backbone": "resnet10t"} if which == "video" else {}
    with pytest.raises(DataFileNotFoundError) as e:
        _ = _dm(copy_root, **kw).splits
    assert s.sample_name in _one_line(e, path) and SAMPLES_CSV in str(e.value)


def test_bio_csv_with_nan(copy_root: Path) -> None:
    path = read_biovid_samples(copy_root)[0].bio_path(copy_root)
    _rewrite_bio(path, lambda lines: lines[:10] + ["\t".join(lines[10].split("\t")[:3] + ["nan"])] + lines[11:])
    with pytest.raises(DataFormatError) as e:
        read_bio(path, ["emg_trapezius"], ROWS)
    assert "row 10" in _one_line(e, path) and "NaN" in str(e.value)


def test_bio_csv_of_wrong_length(copy_root: Path) -> None:
    s = next(s for s in read_biovid_samples(copy_root) if s.class_name == "BL1")
    path = s.bio_path(copy_root)
    _rewrite_bio(path, lambda lines: lines[:-100])
    with pytest.raises(DataFormatError) as e:
        _ = _dm(copy_root).splits
    assert f"{ROWS - 100} rows, expected {ROWS}" in _one_line(e, path)


def test_bio_csv_bad_values(copy_root: Path) -> None:
    path = read_biovid_samples(copy_root)[0].bio_path(copy_root)
    _rewrite_bio(path, lambda lines: lines[:5] + ["1.0\tabc\t0\t0"] + lines[6:])
    with pytest.raises(DataFormatError) as e:
        read_bio(path, ["gsr"], ROWS)
    _one_line(e, path)
    _rewrite_bio(path, lambda lines: [lines[0]] + [f"{i * 4.0}\t0\t0\t0" for i in range(ROWS)])  # 250 Hz time steps
    with pytest.raises(DataFormatError, match="time step 4") as e:
        read_bio(path, ["gsr"], ROWS)
    _one_line(e, path)


def test_missing_samples_csv_and_bad_class(copy_root: Path, tmp_path: Path) -> None:
    with pytest.raises(DataFileNotFoundError) as e:
        read_biovid_samples(tmp_path / "nowhere")
    _one_line(e, tmp_path / "nowhere" / SAMPLES_CSV)
    path = copy_root / SAMPLES_CSV
    lines = path.read_text().splitlines()
    cells = lines[1].split("\t")
    cells[2] = "4" if cells[3] != "PA4" else "0"
    path.write_text("\n".join([lines[0], "\t".join(cells), *lines[2:]]) + "\n")
    with pytest.raises(DataFormatError, match="line 2") as e:
        read_biovid_samples(copy_root)
    _one_line(e, path)


# -- the backbone path -------------------------------------------------------------------------------------------------
def test_backbone_features_from_the_mp4_and_cache(biovid_root: Path, tmp_path: Path) -> None:
    kw = dict(video_features="backbone", video_backbone="resnet10t", video_input_size=32, inputs=["video"], frames=3,
              cache_dir=str(tmp_path / "cache"))
    dm = _dm(biovid_root, **kw)
    with pytest.warns(UserWarning, match="RANDOMLY"):  # no video_weights: random init, said once
        n = sum(len(dm.splits[s]) for s in ("train", "valid", "test"))
    assert n == SUBJECTS * 2 * PER_CLASS and dm._backbone.encoded == n
    assert dm.feature_dims == {"video": 512} and dm.seq_lens == {"video": 3}
    again = _dm(biovid_root, **kw)
    assert torch.equal(again.splits["test"].inputs["video"], dm.splits["test"].inputs["video"])
    assert again._backbone.hits == n and again._backbone._model is None


# -- the command -----------------------------------------------------------------------------------------------------
def test_generate_biovid_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "PartA"
    args = ["biovid", "--out", str(out), "--subjects", "1", "--samples-per-class", "1", "--seed", "1"]
    generate_cli(args)
    assert "BioVid Part A layout" in capsys.readouterr().out
    samples = read_biovid_samples(out)
    assert [s.class_name for s in sorted(samples, key=lambda s: s.class_id)] == list(CLASSES)
    fps, n, _ = video_info(samples[0].video_path(out))  # defaults: 25 fps, 5.5 s
    assert (fps, n) == (25.0, 138) and samples[0].video_path(out).suffix == ".mp4"
    assert read_bio(samples[0].bio_path(out), ["emg_trapezius"], ROWS).shape == (1, ROWS)
    with pytest.raises(ConfigError, match="not overwritten"):
        generate_cli(args)
    generate_cli([*args, "--force", "--no-features"])
    with pytest.raises(ConfigError, match="size"):
        generate_cli(["biovid", "--out", str(tmp_path / "y"), "--size", "30"])


def test_generator_is_deterministic(tmp_path: Path) -> None:
    a = write_biovid(tmp_path / "a", subjects=1, samples_per_class=1, fps=FPS, seed=4)
    b = write_biovid(tmp_path / "b", subjects=1, samples_per_class=1, fps=FPS, seed=4)
    for s in read_biovid_samples(a):
        assert s.bio_path(a).read_bytes() == s.bio_path(b).read_bytes()
        assert np.array_equal(read_face_features(s.feature_path(a))[0], read_face_features(s.feature_path(b))[0])


# -- the property the method needs -------------------------------------------------------------------------------------
def _features(split) -> dict[str, np.ndarray]:
    v, b = split.inputs["video"].numpy(), split.inputs["bio"].numpy()
    video = np.hstack([v.mean(axis=1), v.std(axis=1)])
    seg = b[:, 0, : 11 * 256].reshape(len(b), 11, 256)  # EMG log-RMS per 0.5 s
    bio = np.log(np.sqrt((seg**2).mean(-1)) + 1e-6)
    return {"video": video, "video+bio": np.hstack([video, bio]), "y": split.target.numpy()}


@pytest.mark.slow
def test_bio_carries_pain_information_beyond_the_video(tmp_path: Path) -> None:
    """Logistic regression, 5 subject-disjoint folds, BL1 vs PA4: video + EMG > video > chance."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    root = write_biovid(tmp_path / "PartA", subjects=10, samples_per_class=10, fps=FPS, seed=0)
    acc: dict[str, list[float]] = {"video": [], "video+bio": []}
    for fold in range(5):
        dm = _dm(root, fold=fold)
        train = [_features(dm.splits[s]) for s in ("train", "valid")]
        test = _features(dm.splits["test"])
        y = np.concatenate([t["y"] for t in train])
        for k in acc:
            clf = make_pipeline(StandardScaler(), LogisticRegression(C=0.1, max_iter=2000))
            clf.fit(np.concatenate([t[k] for t in train]), y)
            acc[k].append(clf.score(test[k], test["y"]))
    video, both = float(np.mean(acc["video"])), float(np.mean(acc["video+bio"]))
    print(f"BL1 vs PA4: video+bio {both:.3f}, video {video:.3f}, chance 0.500")
    assert video > 0.6 and both > video + 0.08, (both, video)


def test_storage_dtype_holds_samples_in_half(biovid_root: Path) -> None:
    ref, half = _dm(biovid_root), _dm(biovid_root, storage_dtype="bfloat16")
    ref.setup("fit"), half.setup("fit")
    assert {v.dtype for v in half.split("train").inputs.values()} == {torch.bfloat16}
    a, b = next(iter(ref.val_dataloader())), next(iter(half.val_dataloader()))
    for k, x in a.inputs.items():
        assert b.inputs[k].dtype == torch.float32 and torch.equal(b.inputs[k], x.bfloat16().float())
