"""Aff-Wild2 VA: the generator writes the distributed layout, the reader / datamodule read it back (-5 lines dropped,
frames without a face skipped and counted, ``_left`` / ``_right`` faces sharing one sound track, video-disjoint
splits), bad input stops with one line, and the audio carries label information the face lacks."""

from __future__ import annotations

import shutil
from pathlib import Path

import av
import numpy as np
import pytest
import torch

from lightning_kd.checkpoint import DataFormatError
from lightning_kd.data import AffWild2DataModule
from lightning_kd.data.affwild2_data import clip_starts
from lightning_kd.data.audio_features import log_mel_at
from lightning_kd.data.formats.affwild2 import (
    face_frames,
    find_raw_videos,
    raw_video_name,
    read_affwild2,
    read_annotation,
    read_audio_track,
    read_face_feature_file,
)
from lightning_kd.data.generate.affwild2 import write_affwild2
from lightning_kd.data.generate.command import generate_cli
from lightning_kd.metrics.ccc import ccc

F = 4


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_affwild2(tmp_path_factory.mktemp("aw") / "affwild2", train_videos=3, valid_videos=1,
                          frames=(60, 80), size=16, seed=3)


def _dm(root: Path, tmp: Path, **kw) -> AffWild2DataModule:
    return AffWild2DataModule(str(root), frames_per_clip=F, cache_dir=str(tmp / "cache"), **kw)


def _copy(root: Path, tmp: Path) -> Path:
    dst = tmp / "copy"
    shutil.copytree(root, dst)
    return dst


def _one_line(e: pytest.ExceptionInfo, *parts: str) -> str:
    msg = str(e.value)
    assert "\n" not in msg and "Fix:" in msg, msg
    for p in parts:
        assert p in msg, msg
    return msg


def test_generator_writes_the_real_layout(root: Path) -> None:
    train = sorted(p.name for p in (root / "VA_Estimation_Challenge/Train_Set").iterdir())
    assert train == ["1-10-16x16_left.txt", "1-10-16x16_right.txt", "2-10-16x16.txt", "3-10-16x16.txt"]
    assert [p.name for p in (root / "VA_Estimation_Challenge/Validation_Set").iterdir()] == ["4-10-16x16.txt"]
    lines = (root / "VA_Estimation_Challenge/Train_Set/2-10-16x16.txt").read_text().splitlines()
    assert lines[0] == "valence,arousal" and "-5,-5" in lines
    jpgs = sorted(p.name for p in (root / "cropped_aligned/2-10-16x16").iterdir())
    assert jpgs[0] == "00001.jpg" or jpgs[0][:-4].isdigit() and len(jpgs[0]) == 9
    assert len(jpgs) < len(lines) - 1  # some frames have no face
    raw = find_raw_videos(root)
    assert sorted(raw) == [f"{i}-10-16x16" for i in range(1, 5)] and raw["4-10-16x16"].parent.name == "batch2"
    with av.open(str(raw["1-10-16x16"])) as c:
        assert len(c.streams.video) == 1 and len(c.streams.audio) == 1
    assert raw_video_name("1-10-16x16_left") == raw_video_name("1-10-16x16_right") == "1-10-16x16"


def test_generator_is_seeded(tmp_path: Path) -> None:
    kw = {"train_videos": 2, "valid_videos": 1, "frames": (20, 24), "size": 8, "features": False}
    a, b = write_affwild2(tmp_path / "a", seed=1, **kw), write_affwild2(tmp_path / "b", seed=1, **kw)
    c = write_affwild2(tmp_path / "c", seed=2, **kw)
    name = "VA_Estimation_Challenge/Train_Set/2-10-8x8.txt"
    assert (a / name).read_text() == (b / name).read_text() != (c / name).read_text()


def test_reader_round_trip(root: Path) -> None:
    path = root / "VA_Estimation_Challenge/Train_Set/2-10-16x16.txt"
    labels = read_annotation(path)
    rows = path.read_text().splitlines()[1:]
    assert labels.shape == (len(rows), 2)
    for row, lab in zip(rows, labels):
        if row == "-5,-5":
            assert np.isnan(lab).all()
        else:
            np.testing.assert_allclose(lab, [float(v) for v in row.split(",")], atol=1e-6)
    videos = read_affwild2(root)
    assert [v.name for v in videos][:2] == ["1-10-16x16_left", "1-10-16x16_right"]
    v = next(v for v in videos if v.name == "2-10-16x16")
    frames, _ = face_frames(v.frames_dir)
    assert np.array_equal(read_face_feature_file(v.face_feature_file)[0], frames)


def test_clips_drop_unannotated_and_faceless_frames(root: Path, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    import lightning_kd.data.affwild2_data as module

    logged: list[str] = []
    monkeypatch.setattr(module, "rank_zero_info", logged.append)
    dm = _dm(root, tmp_path, standardize=False)
    splits = dm.splits
    videos = {v.name: v for v in read_affwild2(root)}
    total_skipped = 0
    for v in videos.values():
        frames, _ = face_frames(v.frames_dir)
        skipped = int((~np.isin(v.annotated, frames)).sum())
        assert dm.skipped_frames[v.name] == skipped
        total_skipped += skipped
    assert total_skipped > 0
    lines = [ln for ln in logged if "have no face" in ln]
    assert len(lines) == 1 and lines[0].split(": ", 1)[1].startswith(f"{total_skipped} of ")
    for split in splits.values():
        assert split.target.dtype == torch.float32 and split.target.shape == (len(split), 2)
        assert split.inputs["video"].shape[1:] == (F, 48) and split.inputs["audio"].shape[1:] == (F, 32)
        for i, sid in enumerate(split.ids):
            name, first = sid.rsplit("_f", 1)
            clip = np.arange(int(first), int(first) + F)
            v = videos[name]
            assert not np.isnan(v.labels[clip - 1]).any()  # no -5 frame in a clip
            assert np.isin(clip, face_frames(v.frames_dir)[0]).all()  # every frame has a face
            np.testing.assert_allclose(split.target[i].numpy(), v.labels[clip - 1].mean(0), atol=1e-6)
    assert dm.target_kind == "valence_arousal" and dm.feature_dims == {"video": 48, "audio": 32}


def test_clip_starts_cut_runs() -> None:
    frames = np.array([1, 2, 3, 4, 5, 7, 8, 9, 10, 20])
    assert clip_starts(frames, 2, 2).tolist() == [0, 2, 5, 7]
    assert clip_starts(frames, 3, 1).tolist() == [0, 1, 2, 5, 6]


def test_left_right_share_the_raw_video_sound(root: Path, tmp_path: Path) -> None:
    dm = _dm(root, tmp_path, standardize=False, videos=["1-10-16x16_left", "1-10-16x16_right", "2-10-16x16",
                                                         "3-10-16x16", "4-10-16x16"])
    rows = {}
    for split in dm.splits.values():
        for i, sid in enumerate(split.ids):
            rows[sid] = split.inputs["audio"][i].numpy()
    assert dm.video_splits["1-10-16x16_left"] == dm.video_splits["1-10-16x16_right"]
    common = sorted({s.rsplit("_f", 1)[1] for s in rows if "_left_" in s}
                    & {s.rsplit("_f", 1)[1] for s in rows if "_right_" in s})
    assert common
    samples, fps = read_audio_track(find_raw_videos(root)["1-10-16x16"], 16000)
    for first in common:
        left, right = rows[f"1-10-16x16_left_f{first}"], rows[f"1-10-16x16_right_f{first}"]
        np.testing.assert_array_equal(left, right)
        frames = np.arange(int(first), int(first) + F)
        np.testing.assert_allclose(left, log_mel_at(samples, 16000, (frames - 1) / fps), rtol=1e-5, atol=1e-4)


def test_audio_feature_file_matches_the_sound_track(root: Path, tmp_path: Path) -> None:
    raw = _dm(root, tmp_path, inputs=["audio"], standardize=False, audio_rate=8000).splits["train"]
    file = _dm(root, tmp_path, inputs=["audio"], standardize=False, audio_features="file").splits["train"]
    assert raw.ids == file.ids
    r = np.corrcoef(raw.inputs["audio"].numpy().ravel(), file.inputs["audio"].numpy().ravel())[0, 1]
    assert r > 0.99


def test_splits_are_video_disjoint_and_seeded(root: Path, tmp_path: Path) -> None:
    def videos_of(dm):
        return {s: {sid.rsplit("_f", 1)[0] for sid in dm.splits[s].ids} for s in ("train", "valid", "test")}

    dm = _dm(root, tmp_path, inputs=["video"])
    got = videos_of(dm)
    assert got["test"] == {"4-10-16x16"}
    raws = {s: {raw_video_name(v) for v in vs} for s, vs in got.items()}
    assert not (raws["train"] & raws["valid"]) and not (raws["train"] | raws["valid"]) & raws["test"]
    assert got == videos_of(_dm(root, tmp_path, inputs=["video"]))
    valids = {frozenset(videos_of(_dm(root, tmp_path, inputs=["video"], split_seed=s))["valid"]) for s in range(6)}
    assert len(valids) > 1  # the seed chooses the validation videos
    for vs in valids:  # a _left/_right pair is never split
        assert ("1-10-16x16_left" in vs) == ("1-10-16x16_right" in vs)


def test_backbone_features_from_jpgs_are_cached(root: Path, tmp_path: Path) -> None:
    kw = {"inputs": ["video"], "video_features": "backbone", "video_backbone": "resnet10t", "video_input_size": 32,
          "videos": ["2-10-16x16", "3-10-16x16", "4-10-16x16"]}
    with pytest.warns(UserWarning, match="RANDOMLY"):
        dm = _dm(root, tmp_path, **kw)
        first = dm.splits["train"].inputs["video"]
    assert dm._backbone.encoded == 3 and dm._backbone.hits == 0
    again = _dm(root, tmp_path, **kw)
    with pytest.warns(UserWarning, match="RANDOMLY"):
        torch.testing.assert_close(again.splits["train"].inputs["video"], first)
    assert again._backbone.encoded == 0 and again._backbone.hits == 3
    ids = _dm(root, tmp_path, inputs=["video"], videos=kw["videos"]).splits["train"].ids
    assert dm.splits["train"].ids == ids  # the same clips as from the feature file


@pytest.mark.parametrize("line, what", [
    ("valance,arousal", "header"),
    ("1.5,0.2", "outside [-1, 1]"),
    ("0.1", "two comma-separated numbers"),
])
def test_bad_annotation_file_is_one_line(root: Path, tmp_path: Path, line: str, what: str) -> None:
    dst = _copy(root, tmp_path)
    path = dst / "VA_Estimation_Challenge/Train_Set/2-10-16x16.txt"
    rows = path.read_text().splitlines()
    if what == "header":
        rows[0] = line
    else:
        rows[3] = line
    path.write_text("\n".join(rows) + "\n")
    with pytest.raises(DataFormatError) as e:
        read_affwild2(dst)
    _one_line(e, str(path), what)


@pytest.mark.filterwarnings("ignore:face features from a RANDOMLY")
def test_bad_videos_are_one_line(root: Path, tmp_path: Path) -> None:
    with pytest.raises(DataFormatError) as e:
        _ = _dm(root, tmp_path, videos=["2-10-16x16", "nope"]).splits
    _one_line(e, "nope", "no annotation file")
    with pytest.raises(DataFormatError) as e:
        _ = _dm(root, tmp_path, videos=["2-10-16x16", "4-10-16x16"]).splits
    _one_line(e, "Train_Set holds 1 raw video")
    dst = _copy(root, tmp_path)
    shutil.rmtree(dst / "cropped_aligned/3-10-16x16")
    with pytest.raises(DataFormatError) as e:
        _ = _dm(dst, tmp_path, video_features="backbone", video_backbone="resnet10t").splits
    _one_line(e, "cropped_aligned/3-10-16x16", "no face frame")
    (dst / "face_features/3-10-16x16.npz").unlink()
    with pytest.raises(DataFormatError) as e:
        _ = _dm(dst, tmp_path, inputs=["video"]).splits
    _one_line(e, "face_features/3-10-16x16.npz", "not found")
    (dst / "videos/batch1/2-10-16x16.avi").unlink()
    with pytest.raises(DataFormatError) as e:
        _ = _dm(dst, tmp_path, inputs=["audio"], videos=["2-10-16x16", "3-10-16x16", "4-10-16x16"]).splits
    _one_line(e, "2-10-16x16.mp4|.avi", "audio_features: file")


def test_generate_command(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "aw"
    argv = ["affwild2", "--out", str(out), "--valid-videos", "1", "--frames", "20", "24", "--size", "8",
            "--no-features"]
    generate_cli([*argv, "--train-videos", "3"])
    assert "Aff-Wild2 VA layout" in capsys.readouterr().out
    assert len(list((out / "VA_Estimation_Challenge/Train_Set").glob("*.txt"))) == 4
    assert not (out / "face_features").exists()
    with pytest.raises(Exception, match="not overwritten"):
        generate_cli([*argv, "--train-videos", "2"])
    generate_cli([*argv, "--train-videos", "2", "--force"])  # a smaller data set replaces it: nothing stale is left
    assert len(list((out / "VA_Estimation_Challenge/Train_Set").glob("*.txt"))) == 3
    assert [p.name for p in (out / "VA_Estimation_Challenge/Validation_Set").iterdir()] == ["3-10-8x8.txt"]
    assert sorted(find_raw_videos(out)) == ["1-10-8x8", "2-10-8x8", "3-10-8x8"]


@pytest.mark.slow
def test_audio_carries_label_information_the_face_lacks(tmp_path: Path) -> None:
    from sklearn.linear_model import Ridge

    root = write_affwild2(tmp_path / "aw", train_videos=6, valid_videos=3, frames=(150, 200), size=16, seed=0)
    dm = AffWild2DataModule(str(root), frames_per_clip=F, cache_dir=str(tmp_path / "cache"))
    s = dm.splits

    def x(split: str, inputs: list[str]) -> np.ndarray:  # clip means of each input
        return np.concatenate([s[split].inputs[m].mean(1).numpy() for m in inputs], axis=1)

    scores = {}
    for inputs in (["video"], ["audio"], ["video", "audio"]):
        reg = Ridge(alpha=1.0).fit(x("train", inputs), s["train"].target.numpy())
        scores["+".join(inputs)] = ccc(torch.from_numpy(reg.predict(x("test", inputs))), s["test"].target).numpy()
    print({k: np.round(v, 3).tolist() for k, v in scores.items()})
    # seed 0 gives video (0.70, 0.17), audio (0.53, 0.81), video + audio (0.74, 0.77) (valence, arousal)
    assert (scores["video"] > 0.05).all() and scores["video"].mean() > 0.3
    assert scores["video+audio"].mean() > scores["video"].mean() + 0.1
    assert scores["video+audio"][1] > scores["video"][1]  # arousal: the face's weak dimension


def test_storage_dtype_holds_clips_in_half(root: Path, tmp_path: Path) -> None:
    ref, half = _dm(root, tmp_path), _dm(root, tmp_path, storage_dtype="float16")
    ref.setup("fit"), half.setup("fit")
    assert {v.dtype for v in half.split("train").inputs.values() if v.is_floating_point()} == {torch.float16}
    a, b = next(iter(ref.val_dataloader())), next(iter(half.val_dataloader()))
    for k, x in a.inputs.items():
        held = x.half().float() if x.is_floating_point() else x
        assert b.inputs[k].dtype == x.dtype and torch.equal(b.inputs[k], held)
