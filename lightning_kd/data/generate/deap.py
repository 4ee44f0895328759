"""Writer of the DEAP layout (``data_preprocessed_python/sNN.dat``, ``face_video/sNN/sNN_trialMM.avi``,
``metadata_csv/participant_ratings.csv``), read by :mod:`lightning_kd.data.formats.deap`, with the signal model of
:mod:`lightning_kd.data.generate.eeg_face`.

Per subject: ``trials`` trials in video (Experiment_id) order, each ``3 s`` of label-free baseline then ``seconds``
of stimulus, 40 channels at 128 Hz (EEG 0-31 in the Geneva order, peripheral 32-39 noise), ``labels`` (trials, 4)
valence, arousal (from the label factors), dominance, liking. The ``.dat`` is written as Python 2's cPickle wrote
the published files: protocol 2 with the array buffers as Python 2 ``str`` (``BINSTRING``), which Python 3 reads
only with ``encoding="latin1"`` (:class:`Py2Pickler`); ``{"labels": float64, "data": float32}`` (the published
files hold float arrays of shape (40, 40, 8064); float32 keeps the generated folder small; the reader accepts any
float dtype). Each subject sees the trials in its own
random presentation order, recorded in ``participant_ratings.csv``; face videos (the first ``video_subjects``
subjects only, as DEAP has videos for participants 1-22) and this project's face feature files are numbered in
presentation order, so a reader that pairs them by the ``.dat`` row number gets the wrong trial's face. The
first ``missing_videos`` video subjects lack the video (and feature file) of their last presented trial, as real
DEAP lacks a few. Videos: ``seconds`` long from the stimulus start, ``fps`` frames per second, ``size`` pixels.
"""

from __future__ import annotations

import csv
import io
import pickle
import struct
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from lightning_kd.data.eeg_face import EEG_RATE_HZ
from lightning_kd.data.formats.deap import (
    BASELINE_S,
    N_CHANNELS,
    RATINGS_COLUMNS,
    RATINGS_CSV,
    dat_path,
    feature_path,
    video_path,
)
from lightning_kd.data.generate import eeg_face as model
from lightning_kd.data.generate.video import frame_descriptor, render_face_frames, write_avi, write_face_features
from lightning_kd.io import atomic_write_binary, atomic_write_text

__all__ = ["DEAP_DEFAULTS", "Py2Pickler", "write_deap", "write_py2_pickle"]

#: small by default (8 x 20 trials of 20 s: 5 windows each, ~100 MB): the whole CDGKD chain trains in minutes on 2 CPU
#: cores, with enough trials that the face is clearly above chance and EEG + face above the face (trial-level
#: label noise dominates with fewer trials). The published data: 32 x 40 trials of 60 s.
DEAP_DEFAULTS = {"subjects": 8, "trials": 20, "seconds": 20.0, "fps": 5.0, "size": 32}


class Py2Pickler(pickle._Pickler):
    """Protocol-2 pickler that writes ``bytes`` as Python 2 ``str`` opcodes (``SHORT_BINSTRING`` / ``BINSTRING``),
    so numpy buffers come out as in a Python 2 pickle (one raw copy, read back with ``encoding="latin1"``)."""

    def save_bytes(self, obj: bytes) -> None:
        n = len(obj)
        if n >= 2**31:
            raise ValueError(f"a Python 2 string holds at most 2**31 - 1 bytes, got {n}")
        head = pickle.SHORT_BINSTRING + bytes([n]) if n < 256 else pickle.BINSTRING + struct.pack("<i", n)
        self.write(head + obj)
        self.memoize(obj)

    dispatch = pickle._Pickler.dispatch.copy()
    dispatch[bytes] = save_bytes


def write_py2_pickle(path: Path, obj: Any) -> None:
    """Write ``obj`` with :class:`Py2Pickler` (protocol 2) atomically."""
    def write(f: BinaryIO) -> None:
        Py2Pickler(f, protocol=2).dump(obj)

    atomic_write_binary(path, write)


def write_deap(out: str | Path, subjects: int = 8, trials: int = 20, seconds: float = 20.0,
               video_subjects: int | None = None, missing_videos: int = 1, fps: float = 5.0, size: int = 32,
               seed: int = 0, face_features: bool = True, rating_noise: float = 0.0) -> Path:
    """Write a DEAP folder under ``out`` (see the module doc); returns ``out``.

    Args:
        subjects / trials: participants ``1..subjects``, trials per participant.
        seconds: stimulus length (the published 60 s gives 8064 samples with the baseline).
        video_subjects: participants ``1..video_subjects`` get face videos (default ``subjects - 1``, at least 1).
        missing_videos: how many video subjects lack their last presented trial's video.
        fps / size: video frame rate and frame height = width (even).
        seed: every random draw comes from ``numpy.random.default_rng(seed)``.
        face_features: also write ``face_features/sNN/sNN_trialMM.npz`` (pooled-colour descriptors of the frames).
        rating_noise: self-report noise: valence / arousal ratings come from ``z + rating_noise * n`` (``n ~ N(0, I)``
            from its own stream ``default_rng([seed, 7919])``, so 0 gives exactly the noiseless files) while EEG and
            face see the felt ``z``: the labels are then noisy reports that a teacher seeing ``z`` well can
            denoise for a student (the setting where cross-modal distillation has something to transfer).
    """
    if subjects < 1 or trials < 1:
        raise ValueError(f"subjects={subjects}, trials={trials}: need at least 1 of each")
    if not seconds > 0 or not fps > 0 or size < 4 or size % 4:
        raise ValueError(f"seconds={seconds}, fps={fps}, size={size}: need seconds > 0, fps > 0 and a size that is "
                         "a multiple of 4")
    video_subjects = max(1, subjects - 1) if video_subjects is None else video_subjects
    if not 0 <= video_subjects <= subjects or missing_videos < 0:
        raise ValueError(f"video_subjects={video_subjects}, missing_videos={missing_videos}: need 0 <= video_subjects "
                         f"<= subjects ({subjects}) and missing_videos >= 0")
    out = Path(out)
    rng = np.random.default_rng(seed)
    if rating_noise < 0:
        raise ValueError(f"rating_noise must be >= 0, got {rating_noise}")
    report_rng = np.random.default_rng([seed, 7919])
    base = int(round(BASELINE_S * EEG_RATE_HZ))
    stim = int(round(seconds * EEG_RATE_HZ))
    n_frames = max(1, int(round(seconds * fps)))
    rows: list[list] = []
    for s in range(1, subjects + 1):
        factors = model.draw_factors(rng, trials)
        gains = model.subject_gains(rng)
        reported = factors.z + rating_noise * report_rng.standard_normal(factors.z.shape) if rating_noise else factors.z
        val_aro = model.ratings(reported)
        labels = np.column_stack([val_aro, model.ratings(rng.standard_normal((trials, 2)))])  # + dominance, liking
        data = np.empty((trials, N_CHANNELS, base + stim), dtype=np.float32)
        for i in range(trials):
            data[i, :32, :base] = model.eeg_trial(rng, np.zeros(2), base, EEG_RATE_HZ, gains)
            data[i, :32, base:] = model.eeg_trial(rng, factors.eeg[i], stim, EEG_RATE_HZ, gains)
            data[i, 32:] = 10.0 * rng.standard_normal((N_CHANNELS - 32, base + stim))
        payload = {"labels": labels.astype(np.float64), "data": data}
        write_py2_pickle(dat_path(out, s), payload)
        presented = rng.permutation(trials) + 1  # presented[t - 1] = Experiment_id shown as Trial t
        start = 0
        for t, experiment in enumerate(presented, start=1):
            rows.append([s, t, int(experiment), start, *labels[experiment - 1], int(rng.integers(1, 6))])
            start += int((BASELINE_S + seconds + 10.0) * 1000)
        if s > video_subjects:
            continue
        lacks = {int(presented[-1])} if s <= missing_videos else set()
        for t, experiment in enumerate(presented, start=1):
            if experiment in lacks:
                continue
            latent = model.face_latent(rng, factors.face[experiment - 1], n_frames, fps)
            frames = render_face_frames(latent, rng, size=size)
            write_avi(video_path(out, s, t), frames, fps)
            if face_features:
                write_face_features(feature_path(out, s, t), frame_descriptor(frames), fps)

    def write_csv(f) -> None:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(RATINGS_COLUMNS)
        for r in rows:
            w.writerow([*r[:4], *(f"{v:g}" for v in r[4:8]), r[8]])

    buf = io.StringIO()
    write_csv(buf)
    atomic_write_text(out / RATINGS_CSV, lambda f: f.write(buf.getvalue()))
    return out
