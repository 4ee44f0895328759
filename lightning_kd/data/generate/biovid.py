"""Writer of the BioVid Heat Pain layout (``samples.csv``, ``biosignals_filtered/<subject>/<sample>_bio.csv``,
``video/<subject>/<sample>.mp4``, and this project's ``video_features/<subject>/<sample>.npz``), read by
:mod:`lightning_kd.data.formats.biovid`, with a privileged biosignal.

Signal model, per sample of class ``c`` (0 = BL1 .. 4 = PA4), one ``numpy.random.Generator`` (``seed``):

* pain intensity ``s = (c - 2) / sqrt(2)`` (unit variance over the five classes); a bio view
  ``b = W_BIO s + sqrt(1 - W_BIO^2) n_b`` and a face view ``v = W_VIDEO s + sqrt(1 - W_VIDEO^2) n_v`` with
  independent sample-level noises, so the biosignals carry pain information the face lacks;
* a response envelope ``e(t) = exp(-(t - 2.75)^2 / (2 * 1.1^2))`` over the 5.5 s window (peak mid-window);
* ``emg_trapezius``: 20-200 Hz band-limited noise whose amplitude is ``g_subject exp(A_EMG b e(t))`` (muscle
  tension rises with pain; ``g_subject`` log-normal, sd 0.3); ``gsr``: a subject level plus a slow rise
  ``0.4 (0.6 b + 0.8 n) smoothstep(t)`` microsiemens; ``ecg``: R-peaks (Gaussian, 1 mV) and T-waves at a heart rate
  ``hr_subject (1 + 0.04 b)`` plus noise; Part B's ``emg_corrugator`` / ``emg_zygomaticus``: band-limited noise
  with a weaker pain modulation (``0.5 A_EMG``);
* face: latents ``(expr_subject v e(t) + wobble, u_1, u_2, u_3)`` (pain grimace + label-free movements, per frame)
  drawn by :func:`~lightning_kd.data.generate.video.render_face_frames`; ``expr_subject`` in [0.6, 1.4]
  (people differ in how much pain shows on the face).

``W_BIO`` (0.6) > ``W_VIDEO`` (0.45): a video-only model is above chance on BL1 vs PA4, video + bio better
(checked in ``tests/test_data_biovid.py``). Subject names follow BioVid's ``<mmddyy>_<w|m>_<age>``; sample names
``<subject>-<class>-<nnn>`` with ``nnn`` the running number of the subject's samples in a random presentation
order; ``time`` in ms from 0 at 512 Hz.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from scipy.signal import butter, sosfiltfilt

from lightning_kd.data.formats.biovid import (
    BIO_COLUMNS_A,
    BIO_COLUMNS_B,
    BIO_RATE_HZ,
    CLASSES,
    SAMPLE_SECONDS,
    SAMPLES_COLUMNS,
    SAMPLES_CSV,
    VIDEO_FPS,
    BiovidSample,
)
from lightning_kd.data.generate.video import frame_descriptor, render_face_frames, write_avi, write_face_features
from lightning_kd.io import atomic_write_text

__all__ = ["A_EMG", "BIOVID_DEFAULTS", "W_BIO", "W_VIDEO", "subject_name", "write_biovid"]

#: small by default (10 subjects x 5 classes x 20 samples, as BioVid has 20 per class; 32 px frames): the MT-PKDOT
#: stages train in minutes on 2 CPU cores. The published Part A: 87 subjects.
BIOVID_DEFAULTS = {"subjects": 10, "samples_per_class": 20, "seconds": SAMPLE_SECONDS, "fps": VIDEO_FPS, "size": 32}
#: how much of the pain intensity the biosignals / the face see (correlation at sample level)
W_BIO = 0.6
W_VIDEO = 0.45
#: log-amplitude of the trapezius EMG per unit of bio view at the envelope's peak
A_EMG = 0.8


def subject_name(i: int) -> str:
    """BioVid-like subject folder name of subject ``i`` (0-based): ``<mmddyy>_<w|m>_<age>``, unique for i < 420."""
    return f"{i % 12 + 1:02d}{i % 28 + 1:02d}{9 + i % 5:02d}_{'wm'[i % 2]}_{18 + (7 * i) % 48}"


def _band(rng: np.random.Generator, n: int, lo: float, hi: float) -> np.ndarray:
    sos = butter(4, [lo, hi], btype="bandpass", fs=BIO_RATE_HZ, output="sos")
    x = sosfiltfilt(sos, rng.standard_normal(n))
    return x / (x.std() + 1e-12)


def _envelope(t: np.ndarray, seconds: float) -> np.ndarray:
    return np.exp(-((t - seconds / 2) ** 2) / (2 * 1.1**2))


def _ecg(rng: np.random.Generator, t: np.ndarray, hr: float) -> np.ndarray:
    period = 60.0 / hr
    beats = np.arange(rng.uniform(0, period), t[-1] + period, period)
    d = t[None, :] - beats[:, None]
    x = np.exp(-(d**2) / (2 * 0.012**2)).sum(0) + 0.25 * np.exp(-((d - 0.25) ** 2) / (2 * 0.04**2)).sum(0)
    return x + 0.03 * rng.standard_normal(len(t))


def _bio_text(columns: tuple[str, ...], data: np.ndarray) -> str:
    buf = io.StringIO()
    buf.write("\t".join(columns) + "\n")
    np.savetxt(buf, data, delimiter="\t", fmt=["%.3f"] + ["%.6g"] * (data.shape[1] - 1))
    return buf.getvalue()


def write_biovid(out: str | Path, subjects: int = 10, samples_per_class: int = 20, seconds: float = SAMPLE_SECONDS,
                 fps: float = VIDEO_FPS, size: int = 32, seed: int = 0, video_features: bool = True,
                 part: str = "A") -> Path:
    """Write a BioVid folder under ``out`` (see the module doc); returns ``out``.

    Args:
        subjects: subjects ``0..subjects-1`` (subject_id as in BioVid's samples.csv).
        samples_per_class: samples per subject and class (BioVid: 20).
        seconds: recording length (BioVid: 5.5 s = 2816 rows at 512 Hz).
        fps / size: video frame rate (BioVid: 25) and frame height = width (a multiple of 4).
        seed: every random draw comes from ``numpy.random.default_rng(seed)``.
        video_features: also write ``video_features/<subject>/<sample>.npz`` (pooled-colour frame descriptors).
        part: ``A`` (gsr, ecg, emg_trapezius) or ``B`` (adds emg_corrugator, emg_zygomaticus).
    """
    if subjects < 1 or samples_per_class < 1:
        raise ValueError(f"subjects={subjects}, samples_per_class={samples_per_class}: need at least 1 of each")
    if not seconds > 0 or not fps > 0 or size < 4 or size % 4:
        raise ValueError(f"seconds={seconds}, fps={fps}, size={size}: need seconds > 0, fps > 0 and a size that is "
                         "a multiple of 4")
    if part not in ("A", "B"):
        raise ValueError(f"part={part!r}: need A or B")
    out = Path(out)
    rng = np.random.default_rng(seed)
    columns = BIO_COLUMNS_A if part == "A" else BIO_COLUMNS_B
    rows = int(round(seconds * BIO_RATE_HZ))
    t = np.arange(rows) / BIO_RATE_HZ
    env = _envelope(t, seconds)
    n_frames = max(1, int(round(seconds * fps)))
    t_frames = np.arange(n_frames) / fps
    env_frames = _envelope(t_frames, seconds)
    rise = np.clip(t / seconds, 0, 1) ** 2 * (3 - 2 * np.clip(t / seconds, 0, 1))
    table: list[BiovidSample] = []
    sample_id = 0
    for i in range(subjects):
        name = subject_name(i)
        gain, expr = np.exp(0.3 * rng.standard_normal()), rng.uniform(0.6, 1.4)
        hr, gsr_level = rng.uniform(60, 85), rng.uniform(2.0, 12.0)
        order = rng.permutation(np.repeat(np.arange(len(CLASSES)), samples_per_class))
        for k, c in enumerate(order, start=1):
            s = (c - 2) / np.sqrt(2)
            b = W_BIO * s + np.sqrt(1 - W_BIO**2) * rng.standard_normal()
            v = W_VIDEO * s + np.sqrt(1 - W_VIDEO**2) * rng.standard_normal()
            sample = BiovidSample(i, name, int(c), CLASSES[c], sample_id, f"{name}-{CLASSES[c]}-{k:03d}")
            sample_id += 1
            cols = [t * 1000.0,
                    gsr_level + 0.4 * (0.6 * b + 0.8 * rng.standard_normal()) * rise + 0.02 * rng.standard_normal(rows),
                    _ecg(rng, t, hr * (1 + 0.04 * b)),
                    gain * np.exp(A_EMG * b * env) * _band(rng, rows, 20.0, 200.0) * 1e-5]
            if part == "B":
                cols += [np.exp(0.5 * A_EMG * b * env) * _band(rng, rows, 20.0, 200.0) * 1e-5 for _ in range(2)]
            text = _bio_text(columns, np.column_stack(cols))
            atomic_write_text(sample.bio_path(out), lambda f, text=text: f.write(text))
            latent = np.column_stack([expr * v * env_frames + 0.15 * rng.standard_normal(n_frames)]
                                     + [np.sin(2 * np.pi * t_frames / rng.uniform(1.5, 6.0) + rng.uniform(0, 2 * np.pi))
                                        for _ in range(3)])
            frames = render_face_frames(latent, rng, size=size, noise=3.0)
            write_avi(sample.video_path(out), frames, fps, container="mp4")
            if video_features:
                write_face_features(sample.feature_path(out), frame_descriptor(frames), fps)
            table.append(sample)
    lines = ["\t".join(SAMPLES_COLUMNS)] + ["\t".join(str(getattr(s, c)) for c in SAMPLES_COLUMNS) for s in table]
    text = "\n".join(lines) + "\n"
    atomic_write_text(out / SAMPLES_CSV, lambda f: f.write(text))
    return out
