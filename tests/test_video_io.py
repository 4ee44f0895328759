"""Face video I/O: the MJPEG .avi writer, PyAV frame reading, the per-trial face feature file, the frame renderer."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from lightning_kd.checkpoint import DataFileNotFoundError, DataFormatError
from lightning_kd.data.formats.video import frame_indices, read_face_features, read_frames, video_info
from lightning_kd.data.generate.video import (
    REGIONS,
    frame_descriptor,
    render_face_frames,
    write_avi,
    write_face_features,
)


def _one_line(e: pytest.ExceptionInfo, path: Path) -> str:
    msg = str(e.value)
    assert "\n" not in msg and str(path) in msg and "Fix:" in msg, msg
    return msg


@pytest.fixture
def frames() -> np.ndarray:
    rng = np.random.default_rng(0)
    return render_face_frames(2 * rng.standard_normal((12, 4)), rng, size=32, noise=1.0)


def test_avi_round_trip(tmp_path: Path, frames: np.ndarray) -> None:
    path = tmp_path / "v.avi"
    write_avi(path, frames, fps=4.0)
    assert video_info(path) == (4.0, 12, 3.0)
    got = read_frames(path, np.array([0.0, 0.26, 2.9, 100.0]))  # frames 0, 1, 11, and past the end -> the last
    assert got.shape == (4, 32, 32, 3) and got.dtype == np.uint8
    want = frames[[0, 1, 11, 11]].astype(int)
    err = np.abs(got.astype(int) - want)
    assert err.mean() < 2.0 and err.max() <= 24  # MJPEG at the finest quantiser
    assert np.abs(got[1].astype(int) - frames[2]).mean() > 2 * err.mean()  # a neighbouring frame is clearly other
    assert [p.name for p in tmp_path.iterdir()] == ["v.avi"]  # no temporary file left


def test_write_avi_refuses_bad_frames(tmp_path: Path, frames: np.ndarray) -> None:
    for bad in (frames[0], frames.astype(np.float32), frames[:, :31], frames[:0]):
        with pytest.raises(ValueError):
            write_avi(tmp_path / "v.avi", bad, 5.0)
    assert not list(tmp_path.iterdir())


def test_truncated_garbage_and_missing_videos_are_one_line(tmp_path: Path, frames: np.ndarray) -> None:
    good = tmp_path / "v.avi"
    write_avi(good, frames, 4.0)
    cut = tmp_path / "cut.avi"
    cut.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(DataFormatError) as e:
        read_frames(cut, np.array([2.9]))
    assert "truncated" in _one_line(e, cut)
    with pytest.raises(DataFormatError) as e:
        video_info(cut)
    assert "truncated" in _one_line(e, cut)
    junk = tmp_path / "junk.avi"
    junk.write_bytes(b"not a video" * 20)
    with pytest.raises(DataFormatError) as e:
        read_frames(junk, np.array([0.0]))
    _one_line(e, junk)
    with pytest.raises(DataFileNotFoundError) as e:
        read_frames(tmp_path / "none.avi", np.array([0.0]))
    _one_line(e, tmp_path / "none.avi")


def test_frame_indices() -> None:
    assert frame_indices(np.array([0.0, 0.19, 0.2, 0.39, 5.0]), fps=5.0, n_frames=10).tolist() == [0, 0, 1, 1, 9]


def test_rendered_regions_follow_the_latent() -> None:
    rng = np.random.default_rng(1)
    latent = rng.standard_normal((200, 4))
    fr = render_face_frames(latent, rng, size=32).astype(float)
    for k, (r, c, _) in enumerate(REGIONS):
        patch = fr[:, int(r * 32) - 1:int(r * 32) + 2, int(c * 32) - 1:int(c * 32) + 2, 0].mean(axis=(1, 2))
        corr = np.corrcoef(patch, latent.T)[0, 1:]
        assert corr[k] > 0.8 and np.delete(np.abs(corr), k).max() < 0.3, (k, corr)


def test_face_feature_file(tmp_path: Path, frames: np.ndarray) -> None:
    feats = frame_descriptor(frames)
    assert feats.shape == (12, 48) and feats.dtype == np.float32
    path = tmp_path / "f.npz"
    write_face_features(path, feats, 4.0)
    got, fps = read_face_features(path)
    assert fps == 4.0 and np.array_equal(got, feats)
    np.savez(tmp_path / "nofps.npz", features=feats)
    with pytest.raises(DataFormatError) as e:
        read_face_features(tmp_path / "nofps.npz")
    assert "'fps'" in _one_line(e, tmp_path / "nofps.npz")
    bad = feats.copy()
    bad[3, 0] = np.nan
    np.savez(tmp_path / "nan.npz", features=bad, fps=4.0)
    with pytest.raises(DataFormatError) as e:
        read_face_features(tmp_path / "nan.npz")
    assert "frame 3" in _one_line(e, tmp_path / "nan.npz")
    (tmp_path / "junk.npz").write_bytes(b"junk")
    with pytest.raises(DataFormatError) as e:
        read_face_features(tmp_path / "junk.npz")
    _one_line(e, tmp_path / "junk.npz")
