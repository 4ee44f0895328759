"""Writer of the MAHNOB-HCI ``Sessions/`` layout (read by :mod:`lightning_kd.data.formats.mahnob`).

Sessions are numbered as in the download (``sessionId = 130 (s - 1) + cutNr`` for subject ``s``). Per stimulus
``k`` the download has the neutral clip (``cutNr = 2k - 1``, ``isStim="0"``, no ratings,
``Part_<s>_N_Trial<k>_emotion.bdf``; written here for ``k = 1`` only, a 5 s clip) and the stimulus (``cutNr = 2k``, ``isStim="1"``, ratings ``feltArsl feltVlnc feltCtrl feltPred`` on 1..9,
``Part_<s>_S_Trial<k>_emotion.bdf`` and the frontal colour camera
``P<s>-Rec1-<date>_C1 trigger _C_Section_<cutNr>.avi``, and this project's ``face_features.npz``).

Each ``.bdf`` is BioSemi BDF (pyEDFlib, 24 bit) at 256 Hz: the 32 EEG channels, the 14 peripheral channels and
``Status``; 30 s before the stimulus and at least 30 s after it (the record is padded to whole 1 s data records);
``Status`` carries one trigger pulse at stimulus onset and one at stimulus end (code :data:`TRIGGER_CODE` in
the trigger bits, :data:`PULSE_SAMPLES` samples long). The video starts at stimulus onset and lasts the stimulus.
"""

from __future__ import annotations

import datetime as dt
import secrets
import shutil
import tempfile
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from lightning_kd.data.formats.mahnob import (
    FEATURE_FILE,
    MAHNOB_EEG_CHANNELS,
    MAHNOB_PERIPHERAL_CHANNELS,
    MAHNOB_RATE_HZ,
    STATUS_CHANNEL,
)
from lightning_kd.data.generate.eeg_face import draw_factors, eeg_trial, face_latent, subject_gains
from lightning_kd.data.generate.video import frame_descriptor, render_face_frames, write_avi, write_face_features
from lightning_kd.io import atomic_write_binary

__all__ = ["BASELINE_S", "BDF_CHANNELS", "PULSE_SAMPLES", "TRIGGER_CODE", "bdf_name", "integer_rating", "recording",
           "session_id", "video_name", "write_bdf", "write_mahnob", "write_session_xml"]

#: seconds of signal before the stimulus and (at least) after it
BASELINE_S = 30
#: the trigger value of the onset and end pulses (a public reader found the real files' trigger bits in {0, 268})
TRIGGER_CODE = 268
#: length of each trigger pulse in samples
PULSE_SAMPLES = 4
#: sessions per subject in the download's numbering (``sessionId = 130 (subject - 1) + cutNr``)
_IDS_PER_SUBJECT = 130
#: BioSemi's physical range of an EEG / ExG channel in microvolts over the 24-bit digital range
_PHYS_UV = (-262144, 262143)
_DIG = (-8388608, 8388607)
_START = dt.datetime(2009, 7, 9, 17, 53, 46)


def session_id(subject: int, cut_nr: int) -> int:
    """The download's session folder number."""
    return _IDS_PER_SUBJECT * (subject - 1) + cut_nr


def bdf_name(subject: int, cut_nr: int) -> str:
    """``Part_<subject>_<S|N>_Trial<k>_emotion.bdf`` (``S`` for a stimulus, even ``cutNr``; ``k = ceil(cutNr/2)``)."""
    kind = "S" if cut_nr % 2 == 0 else "N"
    return f"Part_{subject}_{kind}_Trial{(cut_nr + 1) // 2}_emotion.bdf"


def video_name(subject: int, cut_nr: int, stamp: str = "2009.07.09.17.53.46") -> str:
    """The frontal colour camera's file name."""
    return f"P{subject}-Rec1-{stamp}_C1 trigger _C_Section_{cut_nr}.avi"


def write_bdf(path: str | Path, names: Sequence[str], data: np.ndarray, rate: int = MAHNOB_RATE_HZ) -> Path:
    """Write ``data`` ``(channels, samples)`` (microvolts; the ``Status`` row in trigger codes) as a BioSemi BDF
    through pyEDFlib, atomically. ``samples`` must be a multiple of ``rate`` (whole 1 s data records)."""
    import pyedflib

    data = np.asarray(data, dtype=np.float64)
    if data.ndim != 2 or data.shape[0] != len(names):
        raise ValueError(f"data must be (len(names)={len(names)}, samples), got {data.shape}")
    if data.shape[1] % rate:
        raise ValueError(f"samples ({data.shape[1]}) must be a multiple of the rate ({rate}): whole data records")
    headers = []
    for name in names:
        if name == STATUS_CHANNEL:
            headers.append(dict(label=name, dimension="Boolean", sample_frequency=rate, physical_min=_DIG[0],
                                physical_max=_DIG[1], digital_min=_DIG[0], digital_max=_DIG[1],
                                transducer="Triggers and Status", prefilter="No filtering"))
        else:
            headers.append(dict(label=name, dimension="uV", sample_frequency=rate, physical_min=_PHYS_UV[0],
                                physical_max=_PHYS_UV[1], digital_min=_DIG[0], digital_max=_DIG[1],
                                transducer="Active Electrode", prefilter="HP: DC; LP: 52 Hz"))
    path = Path(path)
    with tempfile.TemporaryDirectory() as tmp:
        scratch = Path(tmp) / path.name
        writer = pyedflib.EdfWriter(str(scratch), len(names), file_type=pyedflib.FILETYPE_BDF)
        try:
            writer.setStartdatetime(_START)  # fixed, so the same seed writes the same bytes
            writer.setSignalHeaders(headers)
            writer.writeSamples(list(data))
        finally:
            writer.close()
        payload = scratch.read_bytes()
    return atomic_write_binary(path, lambda f: f.write(payload))


def write_session_xml(path: str | Path, attributes: dict[str, str], subject: int,
                      tracks: Sequence[dict[str, str]] = ()) -> Path:
    """Write a ``session.xml``: ``<session **attributes>`` with ``<subject id=..>`` and one ``<track>`` per dict."""
    root = ET.Element("session", attributes)
    ET.SubElement(root, "subject", {"id": str(subject)})
    for t in tracks:
        ET.SubElement(root, "track", dict(t))
    ET.indent(root)
    text = ET.tostring(root, encoding="utf-8", xml_declaration=True) + b"\n"
    return atomic_write_binary(Path(path), lambda f: f.write(text))


def recording(eeg_uv: np.ndarray, rng: np.random.Generator, rate: int = MAHNOB_RATE_HZ,
              baseline_eeg_uv: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
    """The full ``(47, samples)`` BDF payload around a stimulus segment ``eeg_uv`` ``(32, S)``: 30 s before, the
    stimulus, at least 30 s after (to a whole second), peripheral channels, and ``Status`` with the onset and end
    pulses. ``baseline_eeg_uv`` gives the EEG of the before / after parts (default: noise like the stimulus's)."""
    n_eeg, n_stim = eeg_uv.shape
    pre = BASELINE_S * rate
    total = -(-(pre + n_stim + BASELINE_S * rate) // rate) * rate
    post = total - pre - n_stim
    scale = float(eeg_uv.std()) or 1.0
    if baseline_eeg_uv is None:
        before = scale * rng.standard_normal((n_eeg, pre))
        after = scale * rng.standard_normal((n_eeg, post))
    else:
        before, after = baseline_eeg_uv
    eeg = np.concatenate([before, eeg_uv, after], axis=1)
    t = np.arange(total) / rate
    periph = np.empty((len(MAHNOB_PERIPHERAL_CHANNELS), total))
    for i, name in enumerate(MAHNOB_PERIPHERAL_CHANNELS):
        if name == "Resp":
            periph[i] = 500.0 * np.sin(2 * np.pi * 0.25 * t)
        elif name == "Temp":
            periph[i] = 3000.0 + 5.0 * rng.standard_normal(total)
        elif name.startswith("GSR"):
            periph[i] = 1000.0 + np.cumsum(rng.standard_normal(total))
        else:
            periph[i] = 50.0 * np.sin(2 * np.pi * 1.2 * t) + 5.0 * rng.standard_normal(total)
    status = np.zeros((1, total))
    status[0, pre:pre + PULSE_SAMPLES] = TRIGGER_CODE
    status[0, pre + n_stim:pre + n_stim + PULSE_SAMPLES] = TRIGGER_CODE
    return np.concatenate([eeg, periph, status], axis=0)


#: channel names of a generated ``.bdf``, in file order
BDF_CHANNELS: tuple[str, ...] = (*MAHNOB_EEG_CHANNELS, *MAHNOB_PERIPHERAL_CHANNELS, STATUS_CHANNEL)


def integer_rating(z: float) -> int:
    """A whole-number rating on 1..9 (as the real ``felt*`` attributes are) of label factor ``z``: ``5 + 2 z``
    rounded, kept on the side of 5 that ``z`` is on (``rating >= 5`` iff ``z >= 0``)."""
    r = int(np.clip(np.rint(5.0 + 2.0 * z), 1, 9))
    return max(r, 5) if z >= 0 else min(r, 4)


def _session(folder: Path, subject: int, cut_nr: int, eeg_uv: np.ndarray, rng: np.random.Generator,
             ratings: dict[str, int] | None, frames: np.ndarray | None, fps: float, face_features: bool) -> None:
    """Write one session folder: the ``.bdf`` (30 s of label-free EEG before and after), the colour ``.avi`` (and
    with ``face_features`` its feature file) when ``frames`` are given, and ``session.xml`` (ratings only for a
    stimulus)."""
    n_stim = eeg_uv.shape[1]
    pre = BASELINE_S * MAHNOB_RATE_HZ
    post = -(-(pre + n_stim + pre) // MAHNOB_RATE_HZ) * MAHNOB_RATE_HZ - pre - n_stim
    calm = np.zeros(2)
    before = eeg_trial(rng, calm, pre, rate=MAHNOB_RATE_HZ, channels=MAHNOB_EEG_CHANNELS)
    after = eeg_trial(rng, calm, post, rate=MAHNOB_RATE_HZ, channels=MAHNOB_EEG_CHANNELS)
    bdf = bdf_name(subject, cut_nr)
    write_bdf(folder / bdf, BDF_CHANNELS, recording(eeg_uv, rng, baseline_eeg_uv=(before, after)))
    tracks = [{"type": "Physiological", "filename": bdf}]
    if frames is not None:
        avi = video_name(subject, cut_nr)
        write_avi(folder / avi, frames, fps)
        tracks.append({"type": "Video", "color": "1", "filename": avi})
        if face_features:
            write_face_features(folder / FEATURE_FILE, frame_descriptor(frames), fps)
    attrs = {"cutNr": str(cut_nr), "cutLenSec": f"{n_stim / MAHNOB_RATE_HZ:.4f}",
             "sessionId": str(session_id(subject, cut_nr)), "isStim": "1" if ratings else "0",
             "mediaFile": f"{cut_nr}.avi", "vidRate": f"{fps:g}", "date": "2009-07-09", "time": "17:53:46"}
    if ratings:
        attrs.update({k: str(v) for k, v in ratings.items()})
    write_session_xml(folder / "session.xml", attrs, subject, tracks)


def write_mahnob(out: str | Path, subjects: int = 6, sessions: int = 5, seconds: tuple[float, float] = (20.0, 40.0),
                 fps: float = 5.0, frame_size: int = 32, seed: int = 0, face_features: bool = True,
                 overwrite: bool = False) -> Path:
    """Write ``out/Sessions/`` in the MAHNOB-HCI layout (see the module doc) with the label model of
    :mod:`lightning_kd.data.generate.eeg_face`; returns the ``Sessions`` folder.

    Per subject: ``sessions`` stimuli of ``U(seconds)`` s each (ratings ``feltVlnc``/``feltArsl`` from the label
    factors, :func:`integer_rating`; ``feltCtrl``/``feltPred`` label-free), plus the neutral clip before the
    first one (a 5 s ``isStim="0"`` session without ratings or video). Face frames: ``frame_size`` pixels square at
    ``fps``; with ``face_features`` each stimulus session also gets ``face_features.npz`` (pooled-colour descriptors
    of its frames, :func:`~lightning_kd.data.generate.video.frame_descriptor`). The folder is built next to
    ``out/Sessions`` and renamed into place when complete; an existing one is replaced only with ``overwrite``.

    Raises:
        ValueError: a bad size (``subjects < 1``, ``sessions`` outside 1..20, ``seconds`` not ``0 < MIN <= MAX``,
            ``fps <= 0``, ``frame_size`` not a positive multiple of 4).
        FileExistsError: ``out/Sessions`` exists and not ``overwrite``.
    """
    if subjects < 1:
        raise ValueError(f"--subjects {subjects}: need at least 1 subject")
    if not 1 <= sessions <= 20:
        raise ValueError(f"--sessions {sessions}: MAHNOB-HCI has 1..20 stimulus sessions per subject")
    lo, hi = (float(x) for x in seconds)
    if not 0 < lo <= hi:
        raise ValueError(f"--seconds {lo:g} {hi:g}: need 0 < MIN <= MAX")
    if not fps > 0:
        raise ValueError(f"--fps {fps:g}: need a frame rate > 0")
    if frame_size < 4 or frame_size % 4:
        raise ValueError(f"--size {frame_size}: need a frame size that is a positive multiple of 4")
    target = Path(out) / "Sessions"
    if target.exists() and not overwrite:
        raise FileExistsError(f"{target} exists")
    rng = np.random.default_rng(seed)
    factors = draw_factors(rng, subjects * sessions)
    build = Path(out) / f".Sessions.{secrets.token_hex(6)}.tmp"
    try:
        for s in range(1, subjects + 1):
            gains = subject_gains(rng, len(MAHNOB_EEG_CHANNELS))
            neutral = eeg_trial(rng, np.zeros(2), 5 * MAHNOB_RATE_HZ, rate=MAHNOB_RATE_HZ, gains=gains,
                                channels=MAHNOB_EEG_CHANNELS)
            _session(build / str(session_id(s, 1)), s, 1, neutral, rng, None, None, fps, False)
            for k in range(1, sessions + 1):
                i = (s - 1) * sessions + k - 1
                n_stim = int(round(rng.uniform(lo, hi) * MAHNOB_RATE_HZ))
                eeg = eeg_trial(rng, factors.eeg[i], n_stim, rate=MAHNOB_RATE_HZ, gains=gains,
                                channels=MAHNOB_EEG_CHANNELS)
                n_frames = max(1, int(np.ceil(n_stim / MAHNOB_RATE_HZ * fps)))
                frames = render_face_frames(face_latent(rng, factors.face[i], n_frames, fps), rng, size=frame_size)
                ratings = {"feltVlnc": integer_rating(factors.z[i, 0]), "feltArsl": integer_rating(factors.z[i, 1]),
                           "feltCtrl": int(rng.integers(1, 10)), "feltPred": int(rng.integers(1, 10)),
                           "feltEmo": int(rng.integers(0, 13))}
                _session(build / str(session_id(s, 2 * k)), s, 2 * k, eeg, rng, ratings, frames, fps, face_features)
        old = None
        if target.exists():
            old = target.with_name(f".Sessions.{secrets.token_hex(6)}.old")
            target.rename(old)
        build.rename(target)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(build, ignore_errors=True)
        raise
    return target
