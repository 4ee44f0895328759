"""The datamodule base every EEG + face-video data set shares (DEAP, MAHNOB-HCI): windows, labels, splits, features.

A subclass implements :meth:`EEGFaceDataModule.read_trials` (its reader's list of
:class:`~lightning_kd.data.eeg_face.EEGFaceTrial`); everything else is here, written once:

* **EEG**: the configured channels by name (default the 28 of :data:`~lightning_kd.data.eeg_face.EEG_CHANNELS_28`;
  a file lacking one stops with one line naming it), resampled to 128 Hz where the reader's rate differs
  (:func:`scipy.signal.resample_poly`), cut into non-overlapping windows of ``window_s`` seconds from the stimulus
  start (a tail shorter than a window is dropped): ``eeg (B, channels, window_s * 128)``, channel-first.
* **Face**: ``frames_per_window`` frames per window at the centres of equal parts of it (window ``w``, frame ``k``:
  time ``(w + (k + 0.5) / F) window_s`` from the video's start, taken as the stimulus start): ``face (B, F, D)``,
  from the trial's face feature file (``face_features: file``, layout in :mod:`lightning_kd.data.formats.video`) or
  from the decoded video through a timm backbone (``face_features: backbone``,
  :mod:`lightning_kd.data.face_features`). Trials without one are left out when the face is used, with ONE warning
  listing them; an error only when no trial remains.
* **Target**: binary ``rating[target] >= threshold`` (1 = high) as int64 ``(B,)``; a rating outside 1..9 stops with
  one line naming the file.
* **Splits** (whole trials, so windows of one trial never straddle splits), deterministic in ``split_seed``
  (pinned: every run seed is scored on the same split):

  - ``subject_independent``: the subjects (sorted ids) are permuted by ``numpy.random.default_rng(split_seed)`` and
    cut into ``n_folds`` near-equal groups (:func:`numpy.array_split`); test = the subjects of group ``fold``.
    Validation comes from the other (training) subjects: ``valid_by: trials`` (default) = per training subject, the
    trials of group ``fold`` of its trials cut as below (more subjects left to train on); ``valid_by: subjects`` =
    the subjects of group ``(fold + 1) % n_folds``. No test subject is in train or valid.
  - ``subject_dependent``: per subject ``s``, its trials (sorted ids) are permuted by
    ``default_rng([split_seed, s])`` and cut into ``n_folds`` groups; test = group ``fold``, valid = group
    ``(fold + 1) % n_folds``, train = the others. Every subject is in every split, no trial in two.

* **Standardisation** (``standardize``): per EEG channel and per face feature, mean / std of the training split
  applied to every split (no statistic of valid / test data is used).

Batches: ``inputs {"eeg": (B, C, T) float32, "face": (B, F, D) float32}`` (those of ``inputs``), ``masks`` all True
``(B, T)`` / ``(B, F)``, ``target (B,)`` int64; ``feature_dims = {"eeg": C, "face": D}``,
``seq_lens = {"eeg": T, "face": F}``; ``target_kind = "binary"``. Sample ids ``s<subject>_t<trial>_w<window>``.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Sequence
from fractions import Fraction

import numpy as np
import torch
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn

from lightning_kd.checkpoint import ConfigError, DataFormatError
from lightning_kd.data.datamodule import SPLITS, InMemoryDataModule
from lightning_kd.data.eeg_face import EEG_CHANNELS_28, EEG_RATE_HZ, EEGFaceTrial
from lightning_kd.data.missing import MissingAugmentation, MissingCondition
from lightning_kd.data.split import SplitTensors, StorageDtype

__all__ = ["FACE_SOURCES", "INPUTS", "PROTOCOLS", "TARGETS", "VALID_BY", "EEGFaceDataModule", "assign_splits",
           "standardize_splits", "window_times"]

PROTOCOLS = ("subject_dependent", "subject_independent")
TARGETS = ("arousal", "valence")
INPUTS = ("eeg", "face")
FACE_SOURCES = ("file", "backbone")
VALID_BY = ("trials", "subjects")
RATING_RANGE = (1.0, 9.0)


def _fold_groups(units: Sequence[int], n_folds: int, rng: np.random.Generator, test: int,
                 valid: int | None) -> dict[int, str]:
    """Units permuted by ``rng``, cut into ``n_folds`` groups: group ``test`` -> test, ``valid`` -> valid, rest train."""
    perm = rng.permutation(np.asarray(sorted(units)))
    groups = np.array_split(perm, n_folds)
    out = {int(u): "train" for u in perm}
    out.update({int(u): "test" for u in groups[test]})
    if valid is not None:
        out.update({int(u): "valid" for u in groups[valid]})
    return out


def assign_splits(trials: Sequence[tuple[int, int]], protocol: str, n_folds: int, fold: int,
                  split_seed: int = 0, valid_by: str = "trials") -> dict[tuple[int, int], str]:
    """``(subject, trial) -> "train" | "valid" | "test"`` by the rule of ``protocol`` (see the module doc)."""
    if protocol not in PROTOCOLS:
        raise ConfigError(f"protocol {protocol!r} is unknown. Fix: set data.init_args.protocol to one of {PROTOCOLS}.")
    keys = sorted(set(trials))
    subjects = sorted({s for s, _ in keys})
    nxt = (fold + 1) % n_folds

    def trial_groups(s: int, valid: int | None) -> dict[int, str]:  # subject s's trials cut into n_folds groups
        mine = [t for ss, t in keys if ss == s]
        return _fold_groups(mine, n_folds, np.random.default_rng([split_seed, s]), fold, valid)

    if protocol == "subject_dependent":
        return {(s, t): split for s in subjects for t, split in trial_groups(s, nxt).items()}
    by_subject = _fold_groups(subjects, n_folds, np.random.default_rng(split_seed), fold,
                              nxt if valid_by == "subjects" else None)
    out = {k: by_subject[k[0]] for k in keys}
    if valid_by == "trials":  # group `fold` of each training subject's trials validates
        for s in (s for s in subjects if by_subject[s] == "train"):
            out.update({(s, t): "valid" if split == "test" else "train" for t, split in trial_groups(s, None).items()})
    return out


def standardize_splits(arrays: dict[str, dict[str, np.ndarray | None]], axes: dict[str, tuple[int, ...]]) -> None:
    """z-score input ``m`` of every split in place with the mean / std of the TRAINING split over ``axes[m]``
    (the axes not listed keep their own statistic: per channel, per feature); a std below 1e-8 counts as 1."""
    for m, axis in axes.items():
        train = arrays["train"].get(m)
        if train is None:
            continue
        mean = train.mean(axis=axis, keepdims=True, dtype=np.float64)
        std = train.std(axis=axis, keepdims=True, dtype=np.float64)
        std = np.where(std > 1e-8, std, 1.0)
        for s in SPLITS:
            if arrays[s].get(m) is not None:
                arrays[s][m] = ((arrays[s][m] - mean) / std).astype(np.float32)


def window_times(n_windows: int, window_s: float, frames_per_window: int) -> np.ndarray:
    """``(n_windows * F,)`` seconds from the stimulus start; window ``w``, frame ``k`` at
    ``(w + (k + 0.5) / F) window_s``."""
    w = np.arange(n_windows)[:, None]
    k = np.arange(frames_per_window)[None, :]
    return ((w + (k + 0.5) / frames_per_window) * window_s).reshape(-1)


class EEGFaceDataModule(InMemoryDataModule):
    """Base of the EEG + face-video datamodules (module doc: windows, features, target, split rules).

    Args:
        root: the data set's folder (DEAP: holds ``data_preprocessed_python/``, ...; MAHNOB-HCI: ``Sessions/``).
        subjects: participant ids to read; ``None`` = all found.
        target: ``arousal`` or ``valence``; ``threshold``: a rating ``>= threshold`` is class 1.
        protocol: ``subject_independent`` (leave-subjects-out folds) or ``subject_dependent`` (per subject, its
            trials split); ``n_folds`` (>= 3) groups, ``fold`` = the test group, the next group is validation;
            ``split_seed`` fixes the assignment; ``valid_by`` (subject_independent): validation trials of the
            training subjects (``trials``) or whole subjects (``subjects``).
        channels: EEG channel names, in the order given; ``None`` = the 28 of CDGKD.
        window_s: window length in seconds (non-overlapping); ``frames_per_window``: face frames per window.
        inputs: the inputs batches carry, from ``eeg``, ``face``.
        video_trials_only: keep only trials with a face source; ``None`` = when ``face`` is an input. Set it true
            for an EEG-only model that must see exactly the trials of a face-using one.
        face_features: ``file`` (the trial's face feature file) or ``backbone`` (decode the video, timm features).
        video_backbone / video_weights / video_input_size / video_device: the timm model name, its LOCAL weights file
            (``None`` = random weights, for tests), the frame size it sees, where it runs (``backbone`` only).
        cache_dir: folder of the backbone feature cache.
        standardize: z-score EEG channels and face features with training-split statistics.
        Other arguments: see :class:`~lightning_kd.data.datamodule.InMemoryDataModule` (``storage_dtype: float16``
            holds the windows in half the memory; batches stay float32).
    """

    def __init__(
        self,
        root: str,
        subjects: list[int] | None = None,
        target: str = "arousal",
        threshold: float = 5.0,
        protocol: str = "subject_independent",
        n_folds: int = 5,
        fold: int = 0,
        split_seed: int = 0,
        valid_by: str = "trials",
        channels: list[str] | None = None,
        window_s: float = 4.0,
        frames_per_window: int = 5,
        inputs: list[str] = list(INPUTS),  # noqa: B006 - read only
        video_trials_only: bool | None = None,
        face_features: str = "file",
        video_backbone: str = "resnet18",
        video_weights: str | None = None,
        video_input_size: int = 112,
        video_device: str = "cpu",
        cache_dir: str = "data/cache/face",
        standardize: bool = True,
        batch_size: int = 32,
        seed: int | None = None,
        predict_split: str = "test",
        eval_batch_size: int | None = None,
        train_missing: MissingAugmentation | None = None,
        eval_missing: MissingCondition | None = None,
        storage_dtype: StorageDtype = "float32",
    ) -> None:
        super().__init__(batch_size, seed, predict_split, eval_batch_size, train_missing, eval_missing, storage_dtype)
        opt = "data.init_args."
        if target not in TARGETS:
            raise ConfigError(f"target {target!r} is unknown. Fix: set {opt}target to one of {TARGETS}.")
        if protocol not in PROTOCOLS:
            raise ConfigError(f"protocol {protocol!r} is unknown. Fix: set {opt}protocol to one of {PROTOCOLS}.")
        if n_folds < 3 or not 0 <= fold < n_folds:
            raise ConfigError(f"n_folds={n_folds}, fold={fold}: need n_folds >= 3 (test, valid and train groups) and "
                              f"0 <= fold < n_folds. Fix: set {opt}n_folds and {opt}fold.")
        bad = [m for m in inputs if m not in INPUTS]
        if bad or not inputs:
            raise ConfigError(f"inputs {list(inputs)}: need a non-empty subset of {INPUTS}. Fix: set {opt}inputs.")
        if valid_by not in VALID_BY:
            raise ConfigError(f"valid_by {valid_by!r} is unknown. Fix: set {opt}valid_by to one of {VALID_BY}.")
        if face_features not in FACE_SOURCES:
            raise ConfigError(f"face_features {face_features!r} is unknown. Fix: set {opt}face_features to one of "
                              f"{FACE_SOURCES}.")
        if not window_s > 0 or frames_per_window < 1:
            raise ConfigError(f"window_s={window_s}, frames_per_window={frames_per_window}: need window_s > 0 and "
                              f"frames_per_window >= 1. Fix: set {opt}window_s / {opt}frames_per_window.")
        self.root, self.path = root, root
        self.subjects = None if subjects is None else [int(s) for s in subjects]
        self.target, self.threshold = target, float(threshold)
        self.protocol, self.n_folds, self.fold, self.split_seed = protocol, int(n_folds), int(fold), int(split_seed)
        self.valid_by = valid_by
        self.channels = tuple(EEG_CHANNELS_28 if channels is None else channels)
        self.window_s, self.frames_per_window = float(window_s), int(frames_per_window)
        self.inputs = tuple(inputs)
        self.video_trials_only = "face" in self.inputs if video_trials_only is None else bool(video_trials_only)
        self.face_features = face_features
        self.video_backbone, self.video_weights = video_backbone, video_weights
        self.video_input_size, self.video_device, self.cache_dir = int(video_input_size), video_device, cache_dir
        self.standardize = standardize
        #: ``(subject, trial) -> split`` of the trials used (set when the splits are built)
        self.trial_splits: dict[tuple[int, int], str] = {}
        self._backbone = None

    # -- to implement -------------------------------------------------------------------------
    @abstractmethod
    def read_trials(self) -> list[EEGFaceTrial]:
        """Every trial of ``self.subjects`` (all when ``None``) under ``self.root``, as the reader returns it."""

    # -- shared -------------------------------------------------------------------------------
    @property
    def window_samples(self) -> int:
        return int(round(self.window_s * EEG_RATE_HZ))

    @property
    def target_kind(self) -> str:
        return "binary"

    @property
    def feature_dims(self) -> dict[str, int]:
        """``{"eeg": channels, "face": D}`` (those of ``inputs``)."""
        s = self.splits["train"].inputs
        dims = {"eeg": int(s["eeg"].shape[1])} if "eeg" in s else {}
        return dims | ({"face": int(s["face"].shape[-1])} if "face" in s else {})

    @property
    def seq_lens(self) -> dict[str, int]:
        """``{"eeg": samples per window, "face": frames per window}`` (those of ``inputs``)."""
        s = self.splits["train"].inputs
        lens = {"eeg": int(s["eeg"].shape[-1])} if "eeg" in s else {}
        return lens | ({"face": int(s["face"].shape[1])} if "face" in s else {})

    def _face_source(self, trial: EEGFaceTrial):
        return trial.face_features if self.face_features == "file" else trial.video

    def select_trials(self, trials: list[EEGFaceTrial]) -> list[EEGFaceTrial]:
        """Trials with a face source when ``video_trials_only`` (one warning lists those left out)."""
        if not trials:
            raise DataFormatError(f"{self.root}: no trial found for subjects {self.subjects or 'all'}. Fix: set "
                                  "data.init_args.root to the data set's folder and subjects to ids it holds.")
        if not self.video_trials_only:
            return trials
        kept = [t for t in trials if self._face_source(t) is not None]
        dropped = [t for t in trials if self._face_source(t) is None]
        what = "face feature file" if self.face_features == "file" else "face video"
        if not kept:
            raise DataFormatError(f"{self.root}: none of the {len(trials)} trials has a {what}, and the face is used. "
                                  "Fix: use subjects with face videos (DEAP: participants 1-22), face_features: "
                                  "backbone when only videos exist, or inputs: [eeg] with video_trials_only: false.")
        if dropped:
            listing = ", ".join(f"s{t.subject:02d} trial {t.trial}" for t in dropped)
            rank_zero_warn(f"{self.root}: {len(dropped)} of {len(trials)} trials have no {what} and are left out: "
                           f"{listing}")
        return kept

    def _label(self, trial: EEGFaceTrial) -> int:
        src = trial.source or self.root
        if self.target not in trial.ratings:
            raise DataFormatError(f"{src}: subject {trial.subject} trial {trial.trial} has no {self.target} rating "
                                  f"(has {sorted(trial.ratings)}). Fix: use a complete file of the data set.")
        r = float(trial.ratings[self.target])
        lo, hi = RATING_RANGE
        if not (np.isfinite(r) and lo <= r <= hi):
            raise DataFormatError(f"{src}: subject {trial.subject} trial {trial.trial}: {self.target} rating {r:g} is "
                                  f"outside {lo:g}..{hi:g}. Fix: ratings are self-assessments on 1..9; correct or "
                                  "re-download the file.")
        return int(r >= self.threshold)

    def _eeg(self, trial: EEGFaceTrial) -> np.ndarray:
        """``(C, S)`` float32: the configured channels at 128 Hz."""
        src = trial.source or self.root
        names = list(trial.channels)
        missing = [c for c in self.channels if c not in names]
        if missing:
            raise DataFormatError(f"{src}: has {len(names)} EEG channels and lacks {len(missing)} of the "
                                  f"{len(self.channels)} configured ({', '.join(missing)}). Fix: set "
                                  "data.init_args.channels to channels this file holds, or use a complete file.")
        x = np.asarray(trial.eeg)[[names.index(c) for c in self.channels]]
        if float(trial.rate_hz) != EEG_RATE_HZ:
            from scipy.signal import resample_poly

            ratio = Fraction(EEG_RATE_HZ / float(trial.rate_hz)).limit_denominator(1000)
            x = resample_poly(x, ratio.numerator, ratio.denominator, axis=-1)
        return np.ascontiguousarray(x, dtype=np.float32)

    def _face(self, trial: EEGFaceTrial, n_windows: int) -> np.ndarray:
        """``(n_windows, F, D)`` float32 face features of the trial."""
        times = window_times(n_windows, self.window_s, self.frames_per_window)
        source = self._face_source(trial)
        if self.face_features == "file":
            from lightning_kd.data.formats.video import frame_indices, read_face_features

            feats, fps = read_face_features(source)
            x = feats[frame_indices(times, fps, len(feats))]
        else:
            if self._backbone is None:
                from lightning_kd.data.face_features import VideoBackboneFeatures

                self._backbone = VideoBackboneFeatures(self.video_backbone, self.video_weights, self.video_input_size,
                                                       self.cache_dir, self.video_device)
            x = self._backbone(source, times)
        return x.reshape(n_windows, self.frames_per_window, -1).astype(np.float32, copy=False)

    def load_splits(self) -> dict[str, SplitTensors]:
        trials = self.select_trials(self.read_trials())
        self.trial_splits = assign_splits([(t.subject, t.trial) for t in trials], self.protocol, self.n_folds,
                                          self.fold, self.split_seed, self.valid_by)
        parts: dict[str, dict[str, list]] = {s: {"eeg": [], "face": [], "y": [], "ids": []} for s in SPLITS}
        face_dim: tuple[int, object] | None = None
        spw = self.window_samples
        for trial in trials:
            y = self._label(trial)
            eeg = self._eeg(trial)
            n_win = eeg.shape[1] // spw
            if n_win == 0:
                raise DataFormatError(f"{trial.source or self.root}: subject {trial.subject} trial {trial.trial} has "
                                      f"{eeg.shape[1] / EEG_RATE_HZ:.2f} s of stimulus EEG, shorter than one "
                                      f"{self.window_s:g} s window. Fix: use the complete file, or a shorter "
                                      "data.init_args.window_s.")
            part = parts[self.trial_splits[(trial.subject, trial.trial)]]
            if "eeg" in self.inputs:
                part["eeg"].append(eeg[:, :n_win * spw].reshape(eeg.shape[0], n_win, spw).transpose(1, 0, 2))
            if "face" in self.inputs:
                face = self._face(trial, n_win)
                if face_dim is not None and face.shape[-1] != face_dim[0]:
                    raise DataFormatError(f"{self._face_source(trial)}: face features of size {face.shape[-1]}, those "
                                          f"of {face_dim[1]} have {face_dim[0]}. Fix: extract every trial's features "
                                          "with the same model.")
                face_dim = face_dim or (face.shape[-1], self._face_source(trial))
                part["face"].append(face)
            part["y"].append(np.full(n_win, y, dtype=np.int64))
            part["ids"] += [f"s{trial.subject:02d}_t{trial.trial:02d}_w{w:02d}" for w in range(n_win)]
        if self._backbone is not None:
            rank_zero_info(self._backbone.summary())
        arrays = {s: {m: np.concatenate(p[m]) if p[m] else None for m in self.inputs} for s, p in parts.items()}
        if self.standardize:
            self._standardize(arrays)
        out = {}
        for s, p in parts.items():
            n = len(p["ids"])
            inputs, masks = {}, {}
            for m in self.inputs:
                a = arrays[s][m]
                if a is None:  # an empty split (refused by check_splits): keep the shape of the others
                    other = next((arrays[o][m] for o in SPLITS if arrays[o][m] is not None), None)
                    a = np.zeros((0, *other.shape[1:]) if other is not None else (0, 1, 1), np.float32)
                inputs[m] = torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))
                masks[m] = torch.ones(n, a.shape[-1] if m == "eeg" else a.shape[1], dtype=torch.bool)
            target = torch.from_numpy(np.concatenate(p["y"]) if p["y"] else np.zeros(0, np.int64))
            out[s] = SplitTensors(inputs=inputs, masks=masks, target=target, ids=p["ids"])
        return out

    def _standardize(self, arrays: dict[str, dict[str, np.ndarray | None]]) -> None:
        """z-score per EEG channel (axis 1) and per face feature (last axis) with training statistics, in place."""
        standardize_splits(arrays, {"eeg": (0, 2), "face": (0, 1)})

    def split_trials(self, split: str) -> list[tuple[int, int]]:
        """The ``(subject, trial)`` pairs of ``split`` (after the splits are built)."""
        _ = self.splits
        return sorted(k for k, s in self.trial_splits.items() if s == split)
