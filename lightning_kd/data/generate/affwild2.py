"""Writer of the Aff-Wild2 valence-arousal layout (:mod:`lightning_kd.data.formats.affwild2`): annotation files,
cropped-aligned jpg faces, raw ``.avi`` videos with a sound track, and this project's face / audio feature files.

Signal model, per face track of ``T`` frames at ``fps``: two smooth label factors ``z (T, 2)`` (valence, arousal):
a per-video offset ``N(0, 0.5^2)`` plus Gaussian noise low-passed below ``0.25`` Hz, scaled to unit variance; the
annotation is ``tanh(0.8 z)`` rounded to 3 decimals. Two views of ``z`` with independent smooth noises ``n``:

* **face** ``f = W_FACE z + sqrt(1 - W_FACE^2) n_face`` (plus two label-free nuisance latents), drawn into the frames
  by :func:`~lightning_kd.data.generate.video.render_face_frames`;
* **sound** ``a = W_AUDIO z + sqrt(1 - W_AUDIO^2) n_audio``: band-limited noise, low band (150-700 Hz) scaled by
  ``exp(0.5 a_valence)``, high band (1.5-3.5 kHz) by ``exp(-0.5 a_valence)``, both by ``exp(0.6 a_arousal)``, so the
  log-mel energies are near-linear in ``a``.

``W_FACE = (0.7, 0.35)`` < ``W_AUDIO = (0.6, 0.9)`` on arousal, and the noises are independent: audio + face predict
better than the face alone, which predicts better than chance (``tests/test_data_affwild2.py``). The first raw video
of Train_Set shows two faces (``<raw>_left``, ``<raw>_right``, label factors correlated 0.6); its sound track follows
the mean of their sound views.

Real-data defects reproduced: runs of ``-5`` lines (about ``unannotated`` of the frames) and runs of frames without a
face (about ``missing_faces``: no jpg and no feature row).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
from scipy.signal import butter, sosfiltfilt

from lightning_kd.data.audio_features import log_mel_at
from lightning_kd.data.formats.affwild2 import (
    ANNOTATION_DIR,
    AUDIO_FEATURE_DIR,
    FACE_FEATURE_DIR,
    FRAMES_DIR,
    OFFICIAL_SETS,
    VIDEOS_DIR,
)
from lightning_kd.data.generate.video import frame_descriptor, render_face_frames, write_avi
from lightning_kd.io import atomic_write_binary, atomic_write_text

__all__ = ["W_AUDIO", "W_FACE", "write_affwild2"]

#: small by default: 6 + 3 raw videos (one with two faces) of 150-250 frames at 10 fps, 32 px faces (~10 MB, ~2000
#: files; about 20 s to write on 2 busy cores)
AFFWILD2_DEFAULTS = {"train_videos": 6, "valid_videos": 3, "frames": (150, 250), "fps": 10.0, "size": 32,
                     "audio_rate": 8000}
W_FACE = np.array([0.7, 0.35])
W_AUDIO = np.array([0.6, 0.9])


def _smooth(rng: np.random.Generator, n: int, fps: float, k: int = 2, cutoff_hz: float = 0.25) -> np.ndarray:
    """``(n, k)`` unit-variance Gaussian noise low-passed below ``cutoff_hz``."""
    sos = butter(2, min(cutoff_hz, 0.45 * fps) / (fps / 2), output="sos")
    x = sosfiltfilt(sos, rng.standard_normal((n + 60, k)), axis=0)[30:-30]
    return (x - x.mean(axis=0)) / (x.std(axis=0) + 1e-12)


def _label_factors(rng: np.random.Generator, n: int, fps: float) -> np.ndarray:
    z = 0.5 * rng.standard_normal(2) + np.sqrt(0.75) * _smooth(rng, n, fps)
    return z / np.sqrt(0.25 + 0.75)


def _view(rng: np.random.Generator, z: np.ndarray, w: np.ndarray, fps: float) -> np.ndarray:
    return w * z + np.sqrt(1 - w**2) * _smooth(rng, len(z), fps)


def _runs(rng: np.random.Generator, n: int, fraction: float, mean_len: int = 6) -> np.ndarray:
    """Boolean ``(n,)``: about ``fraction`` of the positions, in runs of about ``mean_len``."""
    out = np.zeros(n, bool)
    for _ in range(int(round(fraction * n / mean_len))):
        start, length = int(rng.integers(0, n)), int(rng.integers(1, 2 * mean_len))
        out[start:start + length] = True
    return out


def _sound(rng: np.random.Generator, a: np.ndarray, fps: float, rate: int) -> np.ndarray:
    """Mono samples of the sound model (module doc) for per-frame sound views ``a (T, 2)``."""
    n = int(round(len(a) / fps * rate))
    t = np.arange(n) / rate
    frame_t = np.arange(len(a)) / fps
    av_, aa = (np.interp(t, frame_t, a[:, j]) for j in range(2))
    bands = []
    for lo, hi in ((150.0, 700.0), (1500.0, min(3500.0, 0.45 * rate))):
        b = sosfiltfilt(butter(4, [lo, hi], btype="bandpass", fs=rate, output="sos"), rng.standard_normal(n))
        bands.append(b / (b.std() + 1e-12))
    x = 0.01 * np.exp(0.6 * aa) * (np.exp(0.5 * av_) * bands[0] + np.exp(-0.5 * av_) * bands[1])
    return np.clip(x + 0.0005 * rng.standard_normal(n), -1.0, 1.0)


def _write_jpg(path: Path, frame: np.ndarray) -> None:
    from PIL import Image

    atomic_write_binary(path, lambda f: Image.fromarray(frame).save(f, format="JPEG", quality=95))


def write_affwild2(out: str | Path, train_videos: int = 6, valid_videos: int = 3,
                   frames: tuple[int, int] = (150, 250), fps: float = 10.0, size: int = 32, audio_rate: int = 8000,
                   unannotated: float = 0.05, missing_faces: float = 0.05, features: bool = True,
                   seed: int = 0, overwrite: bool = False) -> Path:
    """Write the Aff-Wild2 VA layout under ``out`` (module doc); returns ``out``. Small by default: 6 + 3 raw videos
    (one with two faces) of 150-250 frames at 10 fps, 32 px faces: about 10 MB in 2000 files.

    Args:
        train_videos / valid_videos: raw videos of Train_Set / Validation_Set (the first of Train_Set has a
            ``_left`` / ``_right`` pair of faces, so Train_Set holds ``train_videos + 1`` annotation files).
        frames: (min, max) frames per raw video; fps: its frame rate; size: face jpg height = width (multiple of 4).
        audio_rate: sample rate of the sound tracks (Hz).
        unannotated / missing_faces: fraction of frames written as ``-5`` / without a face.
        features: also write ``face_features/<video>.npz`` (:func:`frame_descriptor` of each face frame) and
            ``audio_features/<raw>.npz`` (:func:`log_mel_at` of the 16-bit samples at ``audio_rate``, window 0.064 s,
            32 mel bands, one row per video frame).
        overwrite: first remove the five folders of an earlier output under ``out`` (no stale video is left).
    """
    if train_videos < 2 or valid_videos < 1:
        raise ValueError(f"train_videos={train_videos}, valid_videos={valid_videos}: need at least 2 Train_Set videos "
                         "(train and validation) and 1 Validation_Set video")
    lo, hi = frames
    if not 20 <= lo <= hi:
        raise ValueError(f"frames={frames}: need 20 <= min <= max")
    if size < 8 or size % 4:
        raise ValueError(f"size={size}: need a multiple of 4, at least 8")
    if not fps > 0 or audio_rate < 4000:
        raise ValueError(f"fps={fps}, audio_rate={audio_rate}: need fps > 0 and audio_rate >= 4000")
    out = Path(out)
    if overwrite:
        for sub in (ANNOTATION_DIR, FRAMES_DIR, VIDEOS_DIR, FACE_FEATURE_DIR, AUDIO_FEATURE_DIR):
            shutil.rmtree(out / sub, ignore_errors=True)
    rng = np.random.default_rng(seed)
    raw_index = 0
    for official, n_raw in zip(OFFICIAL_SETS, (train_videos, valid_videos)):
        for i in range(n_raw):
            raw_index += 1
            raw = f"{raw_index}-{int(fps)}-{size}x{size}"
            n = int(rng.integers(lo, hi + 1))
            pair = official == OFFICIAL_SETS[0] and i == 0
            z_first = _label_factors(rng, n, fps)
            zs = [z_first, 0.6 * z_first + 0.8 * _label_factors(rng, n, fps)] if pair else [z_first]
            names = [f"{raw}_left", f"{raw}_right"] if pair else [raw]
            sound_views, raw_frames = [], None
            for name, z in zip(names, zs):
                labels = np.round(np.tanh(0.8 * z), 3)
                labels[_runs(rng, n, unannotated)] = -5.0
                face = np.concatenate([_view(rng, z, W_FACE, fps), _smooth(rng, n, fps)], axis=1)
                imgs = render_face_frames(face, rng, size=size)
                raw_frames = imgs if raw_frames is None else raw_frames
                sound_views.append(_view(rng, z, W_AUDIO, fps))
                has_face = ~_runs(rng, n, missing_faces)
                text = "valence,arousal\n" + "".join(
                    ("-5,-5" if v[0] == -5 else f"{v[0]:.3f},{v[1]:.3f}") + "\n" for v in labels)
                atomic_write_text(out / ANNOTATION_DIR / official / f"{name}.txt", lambda f, t=text: f.write(t))
                for k in np.flatnonzero(has_face):
                    _write_jpg(out / FRAMES_DIR / name / f"{k + 1:05d}.jpg", imgs[k])
                if features:
                    arrays = {"frames": (np.flatnonzero(has_face) + 1).astype(np.int64),
                              "features": frame_descriptor(imgs[has_face])}
                    atomic_write_binary(out / FACE_FEATURE_DIR / f"{name}.npz", lambda f, a=arrays: np.savez(f, **a))
            sound = _sound(rng, np.mean(sound_views, axis=0) * np.sqrt(len(sound_views)) if pair else sound_views[0],
                           fps, audio_rate)
            sub = "batch1" if official == OFFICIAL_SETS[0] else "batch2"
            write_avi(out / VIDEOS_DIR / sub / f"{raw}.avi", raw_frames, fps, audio=sound, audio_rate=audio_rate)
            if features:
                pcm = np.rint(sound * 32767) / 32767  # what the 16-bit track holds
                mel = {"features": log_mel_at(pcm, audio_rate, np.arange(n) / fps)}
                atomic_write_binary(out / AUDIO_FEATURE_DIR / f"{raw}.npz", lambda f, a=mel: np.savez(f, **a))
    return out
