"""Reader of DEAP (Koelstra et al., IEEE TAC 2012) as downloaded: the preprocessed Python files, the face videos and
the participant ratings.

Layout under ``root``:

* ``data_preprocessed_python/sNN.dat``: a Python 2 pickle (read with ``encoding="latin1"`` through the restricted
  unpickler) of a dict with ``data`` (trials, 40 channels, samples) at 128 Hz, the first 3 s a pre-trial baseline
  (dropped here), and ``labels`` (trials, 4) = valence, arousal, dominance, liking on 1..9. The published files
  hold 40 trials of 8064 samples (3 s + 60 s); any number of trials and any length >= 3 s plus one window is
  accepted. Channels 0-31 are EEG in the Geneva order (:data:`~lightning_kd.data.eeg_face.DEAP_EEG_CHANNELS`),
  32-39 peripheral (not read). Trials are in video order: row ``i`` is ``Experiment_id`` ``i + 1``.
* ``face_video/sNN/sNN_trialMM.avi``: participants 1-22 only, some trials missing; ``MM`` is the PRESENTATION
  order (``Trial``), not the video order.
* ``metadata_csv/participant_ratings.csv``: columns ``Participant_id,Trial,Experiment_id,Start_time,Valence,
  Arousal,Dominance,Liking,Familiarity``; a row maps a participant's presentation ``Trial`` to the
  ``Experiment_id`` of the ``.dat`` row. Needed (and read) only to pair face videos or feature files.
* ``face_features/sNN/sNN_trialMM.npz`` (this project's per-trial face feature file, numbered like the videos;
  layout in :mod:`lightning_kd.data.formats.video`): written by ``lightning-kd generate deap``; for the real data
  set, extract it from the videos yourself or use ``face_features: backbone``.

Each trial is returned as an :class:`~lightning_kd.data.eeg_face.EEGFaceTrial` with ``trial`` = Experiment_id.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from lightning_kd.checkpoint import DataFileNotFoundError, DataFormatError
from lightning_kd.data.eeg_face import DEAP_EEG_CHANNELS, EEG_RATE_HZ, EEGFaceTrial
from lightning_kd.data.eeg_face_data import EEGFaceDataModule
from lightning_kd.data.formats.common import load_pickle

__all__ = [
    "BASELINE_S", "DAT_DIR", "FEATURE_DIR", "RATINGS_COLUMNS", "RATINGS_CSV", "RATING_NAMES", "VIDEO_DIR",
    "DEAPDataModule", "dat_path", "feature_path", "read_deap", "read_deap_subject", "read_presentation_order",
    "video_path",
]

DAT_DIR = "data_preprocessed_python"
VIDEO_DIR = "face_video"
FEATURE_DIR = "face_features"
RATINGS_CSV = "metadata_csv/participant_ratings.csv"
#: the header of DEAP's participant_ratings.csv
RATINGS_COLUMNS = ("Participant_id", "Trial", "Experiment_id", "Start_time", "Valence", "Arousal", "Dominance",
                   "Liking", "Familiarity")
#: columns of ``labels``
RATING_NAMES = ("valence", "arousal", "dominance", "liking")
#: pre-trial baseline at the start of every trial
BASELINE_S = 3.0
N_CHANNELS = 40
_FIX = ("re-download it from the DEAP site (data_preprocessed_python.zip), or regenerate the folder with "
        "`lightning-kd generate deap --out DIR`")
_DAT = re.compile(r"^s(\d+)\.dat$")


def dat_path(root: Path, subject: int) -> Path:
    return root / DAT_DIR / f"s{subject:02d}.dat"


def video_path(root: Path, subject: int, presentation_trial: int) -> Path:
    return root / VIDEO_DIR / f"s{subject:02d}" / f"s{subject:02d}_trial{presentation_trial:02d}.avi"


def feature_path(root: Path, subject: int, presentation_trial: int) -> Path:
    return root / FEATURE_DIR / f"s{subject:02d}" / f"s{subject:02d}_trial{presentation_trial:02d}.npz"


def _err(path: Path, what: str, fix: str = _FIX) -> DataFormatError:
    return DataFormatError(f"{path}: {what}. Fix: {fix}.")


def read_deap_subject(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """``(eeg (trials, 32, samples - 384) float32, labels (trials, 4) float64)`` of one ``sNN.dat``, checked."""
    d = load_pickle(path, f"DEAP subject file not found ({{hint}}). Fix: {_FIX}.", _FIX, encodings=("latin1",))
    if not isinstance(d, dict):
        raise _err(path, f"top level is a {type(d).__name__}, expected a dict with keys 'data' and 'labels'")
    missing = [k for k in ("data", "labels") if k not in d]
    if missing:
        raise _err(path, f"lacks key(s) {missing}; present: {sorted(map(str, d))}")
    data, labels = d["data"], d["labels"]
    base = int(round(BASELINE_S * EEG_RATE_HZ))
    if not isinstance(data, np.ndarray) or data.ndim != 3 or not np.issubdtype(data.dtype, np.floating):
        raise _err(path, f"key 'data' must be a float array (trials, {N_CHANNELS}, samples), got "
                   f"{getattr(data, 'dtype', type(data).__name__)} {getattr(data, 'shape', '')}")
    n, c, s = data.shape
    if c < len(DEAP_EEG_CHANNELS):
        raise _err(path, f"key 'data' has {c} channels, fewer than DEAP's {len(DEAP_EEG_CHANNELS)} EEG channels "
                   f"(shape {data.shape}; published: (40, 40, 8064))")
    if s <= base or n == 0:
        raise _err(path, f"key 'data' has shape {data.shape}: need at least one trial and more than the {base} samples "
                   f"of the {BASELINE_S:g} s baseline (published: (40, 40, 8064))")
    if not isinstance(labels, np.ndarray) or labels.shape != (n, len(RATING_NAMES)):
        raise _err(path, f"key 'labels' must have shape ({n}, 4) (valence, arousal, dominance, liking per trial of "
                   f"'data'), got {getattr(labels, 'shape', type(labels).__name__)}")
    labels = labels.astype(np.float64)
    bad = ~np.isfinite(labels) | (labels < 1) | (labels > 9)
    if bad.any():
        i, j = map(int, np.argwhere(bad)[0])
        raise _err(path, f"key 'labels': {RATING_NAMES[j]} rating {labels[i, j]:g} of trial {i + 1} is NaN or "
                   "outside 1..9")
    eeg = np.ascontiguousarray(data[:, : len(DEAP_EEG_CHANNELS), base:], dtype=np.float32)
    if not np.isfinite(eeg).all():
        i = int(np.argmin(np.isfinite(eeg).all(axis=(1, 2))))
        raise _err(path, f"key 'data': trial {i + 1} holds NaN or inf EEG samples")
    return eeg, labels


def read_presentation_order(root: Path) -> dict[int, dict[int, int]]:
    """``participant -> {Experiment_id: Trial}`` from ``metadata_csv/participant_ratings.csv``."""
    path = root / RATINGS_CSV
    if not path.is_file():
        raise DataFileNotFoundError(f"{path}: DEAP participant ratings not found; it pairs face videos (numbered in "
                                    f"presentation order) with the .dat trials (video order). Fix: {_FIX}.")
    out: dict[int, dict[int, int]] = {}
    try:
        with path.open(newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            cols = [c.strip() for c in reader.fieldnames or []]
            missing = [c for c in RATINGS_COLUMNS[:3] if c not in cols]
            if missing:
                raise _err(path, f"lacks column(s) {missing}; header: {cols}")
            for line, row in enumerate(reader, start=2):
                row = {k.strip(): v for k, v in row.items() if k is not None}
                try:
                    p, t, e = (int(float(row[c])) for c in RATINGS_COLUMNS[:3])
                except (TypeError, ValueError):
                    raise _err(path, f"line {line}: Participant_id, Trial, Experiment_id must be integers, got "
                               f"{[row.get(c) for c in RATINGS_COLUMNS[:3]]}") from None
                mine = out.setdefault(p, {})
                if e in mine:
                    raise _err(path, f"line {line}: participant {p} lists Experiment_id {e} twice")
                mine[e] = t
    except UnicodeDecodeError as e:
        raise _err(path, f"is not a text CSV ({e})") from None
    return out


def _subjects_found(root: Path) -> list[int]:
    folder = root / DAT_DIR
    if not folder.is_dir():
        raise DataFileNotFoundError(f"{folder}: DEAP folder not found (root must hold {DAT_DIR}/, {VIDEO_DIR}/, "
                                    f"metadata_csv/). Fix: set data.init_args.root to the DEAP folder, or write one "
                                    "with `lightning-kd generate deap --out DIR`.")
    found = sorted(int(m.group(1)) for p in folder.iterdir() if (m := _DAT.match(p.name)))
    if not found:
        raise DataFileNotFoundError(f"{folder}: no sNN.dat file. Fix: {_FIX}.")
    return found


def read_deap(root: str | Path, subjects: Sequence[int] | None = None) -> list[EEGFaceTrial]:
    """Every trial of ``subjects`` (``None`` = every ``sNN.dat`` found), in subject then Experiment_id order, with
    its face video and feature file paired through the ratings CSV (``None`` where the file does not exist)."""
    root = Path(root)
    subjects = _subjects_found(root) if subjects is None else [int(s) for s in subjects]
    order: dict[int, dict[int, int]] | None = None
    trials: list[EEGFaceTrial] = []
    for s in subjects:
        path = dat_path(root, s)
        eeg, labels = read_deap_subject(path)
        has_face = (root / VIDEO_DIR / f"s{s:02d}").is_dir() or (root / FEATURE_DIR / f"s{s:02d}").is_dir()
        if has_face and order is None:
            order = read_presentation_order(root)
        mapping = order.get(s) if (has_face and order is not None) else None
        if has_face and not mapping:
            raise _err(root / RATINGS_CSV, f"has no row of participant {s}, whose face videos need it for pairing")
        for i in range(len(eeg)):
            experiment = i + 1
            video = features = None
            if mapping is not None:
                if experiment not in mapping:
                    raise _err(root / RATINGS_CSV, f"has no row of participant {s} with Experiment_id {experiment} "
                               f"(trial {experiment} of {path})")
                presented = mapping[experiment]
                v, f = video_path(root, s, presented), feature_path(root, s, presented)
                video, features = (v if v.is_file() else None), (f if f.is_file() else None)
            trials.append(EEGFaceTrial(
                subject=s, trial=experiment, eeg=eeg[i], channels=DEAP_EEG_CHANNELS,
                ratings=dict(zip(RATING_NAMES, map(float, labels[i]))), video=video, source=path,
                rate_hz=EEG_RATE_HZ, face_features=features))
    return trials


class DEAPDataModule(EEGFaceDataModule):
    """DEAP as downloaded (module doc), windowed and split by
    :class:`~lightning_kd.data.eeg_face_data.EEGFaceDataModule`.

    Args:
        root: the folder holding ``data_preprocessed_python/``, ``face_video/`` and ``metadata_csv/``.
        subjects: participant ids (default: every ``sNN.dat`` found).
        Other arguments: see :class:`~lightning_kd.data.eeg_face_data.EEGFaceDataModule`.
    """

    def read_trials(self) -> list[EEGFaceTrial]:
        return read_deap(self.root, self.subjects)
