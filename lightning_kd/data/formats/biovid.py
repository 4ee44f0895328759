"""Reader of the BioVid Heat Pain Database (Walter et al., IEEE CYBCONF 2013), Part A (or B) as distributed, and its
datamodule.

Layout under ``root``:

* ``samples.csv``: tab separated, header ``subject_id subject_name class_id class_name sample_id sample_name``
  (:data:`SAMPLES_COLUMNS`; extra columns are ignored), one row per sample. ``class_id`` 0..4 is the index of
  ``class_name`` in :data:`CLASSES` (BL1 = no pain baseline, PA1..PA4 = rising heat pain levels); ``sample_name``
  is ``<subject_name>-<class_name>-<nnn>``. Part A: 87 subjects x 5 classes x 20 samples.
* ``biosignals_filtered/<subject_name>/<sample_name>_bio.csv``: tab separated, header ``time gsr ecg emg_trapezius``
  (:data:`BIO_COLUMNS_A`; Part B adds ``emg_corrugator emg_zygomaticus``), one row per sample at 512 Hz for 5.5 s
  (2816 rows). ``time`` is in milliseconds; a file whose time step is in microseconds (1953.125) is read too.
* ``video/<subject_name>/<sample_name>.mp4``: the frontal face video, 25 fps, covering the same 5.5 s.
* ``video_features/<subject_name>/<sample_name>.npz`` (this project's per-sample visual feature file, not part of
  the distribution): ``features`` ``(n_frames, D)`` float32, one row per video frame, and ``fps`` (the face feature
  file layout of :mod:`lightning_kd.data.formats.video`); written by ``lightning-kd generate biovid``. For the real
  data set, extract it from the videos yourself or use ``video_features: backbone``.

Bad input stops with one line naming the file and the fix: a ``samples.csv`` or ``_bio.csv`` lacking a column, a
row of ``samples.csv`` whose files are absent, a non-numeric / NaN value, a recording of the wrong length or rate.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from lightning.pytorch.utilities import rank_zero_info

from lightning_kd.checkpoint import ConfigError, DataFileNotFoundError, DataFormatError
from lightning_kd.data.datamodule import SPLITS, InMemoryDataModule
from lightning_kd.data.eeg_face_data import assign_splits, standardize_splits, window_times
from lightning_kd.data.missing import MissingAugmentation, MissingCondition
from lightning_kd.data.split import SplitTensors, StorageDtype

__all__ = [
    "BIO_COLUMNS_A", "BIO_COLUMNS_B", "BIO_DIR", "BIO_RATE_HZ", "CLASSES", "FEATURE_DIR", "INPUTS", "SAMPLES_COLUMNS",
    "SAMPLES_CSV", "SAMPLE_SECONDS", "TASKS", "VIDEO_DIR", "VIDEO_FPS", "VIDEO_SOURCES", "BiovidDataModule",
    "BiovidSample", "parse_task", "read_bio", "read_biovid_samples",
]

SAMPLES_CSV = "samples.csv"
SAMPLES_COLUMNS = ("subject_id", "subject_name", "class_id", "class_name", "sample_id", "sample_name")
BIO_DIR = "biosignals_filtered"
VIDEO_DIR = "video"
FEATURE_DIR = "video_features"
#: header of a Part A ``_bio.csv``; Part B adds the two facial EMG channels
BIO_COLUMNS_A = ("time", "gsr", "ecg", "emg_trapezius")
BIO_COLUMNS_B = (*BIO_COLUMNS_A, "emg_corrugator", "emg_zygomaticus")
CLASSES = ("BL1", "PA1", "PA2", "PA3", "PA4")
BIO_RATE_HZ = 512.0
VIDEO_FPS = 25.0
SAMPLE_SECONDS = 5.5
#: task names besides ``<A>_vs_<B>`` (any two of :data:`CLASSES`)
TASKS = ("BL1_vs_PA4", "5class")
INPUTS = ("video", "bio")
VIDEO_SOURCES = ("file", "backbone")
_FIX = "re-extract it from the BioVid download, or regenerate the folder with `lightning-kd generate biovid --out DIR`"
_TASK = re.compile(r"^([A-Z]+\d)_vs_([A-Z]+\d)$")


def _err(path: Path, what: str, fix: str = _FIX) -> DataFormatError:
    return DataFormatError(f"{path}: {what}. Fix: {fix}.")


@dataclass(frozen=True)
class BiovidSample:
    """One row of ``samples.csv``; the paths of its files under ``root`` (module doc)."""

    subject_id: int
    subject_name: str
    class_id: int
    class_name: str
    sample_id: int
    sample_name: str

    def bio_path(self, root: Path) -> Path:
        return Path(root) / BIO_DIR / self.subject_name / f"{self.sample_name}_bio.csv"

    def video_path(self, root: Path) -> Path:
        return Path(root) / VIDEO_DIR / self.subject_name / f"{self.sample_name}.mp4"

    def feature_path(self, root: Path) -> Path:
        return Path(root) / FEATURE_DIR / self.subject_name / f"{self.sample_name}.npz"


def read_biovid_samples(root: str | Path) -> list[BiovidSample]:
    """The rows of ``root/samples.csv``, checked (header, integer ids, ``class_id`` matching ``class_name``, unique
    ``sample_name``), in file order."""
    path = Path(root) / SAMPLES_CSV
    if not path.is_file():
        raise DataFileNotFoundError(f"{path}: BioVid sample list not found (root must hold {SAMPLES_CSV}, {BIO_DIR}/ "
                                    f"and {VIDEO_DIR}/). Fix: set data.init_args.root to the BioVid folder (PartA), "
                                    "or write one with `lightning-kd generate biovid --out DIR`.")
    out: list[BiovidSample] = []
    seen: set[str] = set()
    try:
        with path.open(newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f, delimiter="\t")
            cols = [c.strip() for c in reader.fieldnames or []]
            missing = [c for c in SAMPLES_COLUMNS if c not in cols]
            if missing:
                raise _err(path, f"lacks column(s) {missing}; header: {cols} (tab separated: "
                           f"{' '.join(SAMPLES_COLUMNS)})")
            for line, row in enumerate(reader, start=2):
                row = {k.strip(): (v or "").strip() for k, v in row.items() if k is not None}
                try:
                    sid, cid, nid = (int(row[c]) for c in ("subject_id", "class_id", "sample_id"))
                except ValueError:
                    raise _err(path, f"line {line}: subject_id, class_id, sample_id must be integers, got "
                               f"{[row[c] for c in ('subject_id', 'class_id', 'sample_id')]}") from None
                cname, sname, name = row["class_name"], row["subject_name"], row["sample_name"]
                if cname not in CLASSES or CLASSES.index(cname) != cid:
                    raise _err(path, f"line {line}: class_id {cid} / class_name {cname!r} do not match BioVid's "
                               f"classes {dict(enumerate(CLASSES))}")
                if not sname or not name:
                    raise _err(path, f"line {line}: empty subject_name or sample_name")
                if name in seen:
                    raise _err(path, f"line {line}: sample_name {name!r} is listed twice")
                seen.add(name)
                out.append(BiovidSample(sid, sname, cid, cname, nid, name))
    except UnicodeDecodeError as e:
        raise _err(path, f"is not a text file ({e})") from None
    if not out:
        raise _err(path, "lists no sample")
    return out


def read_bio(path: str | Path, channels: Sequence[str], rows: int | None = None) -> np.ndarray:
    """``(len(channels), rows)`` float32: the named columns of one ``_bio.csv``, checked (header, numbers, no NaN,
    ``rows`` rows when given, a 512 Hz time column in ms or us)."""
    path = Path(path)
    if not path.is_file():
        raise DataFileNotFoundError(f"{path}: biosignal file not found. Fix: {_FIX}.")
    try:
        with path.open(encoding="utf-8-sig") as f:
            header = [c.strip() for c in f.readline().rstrip("\r\n").split("\t")]
            want = ["time", *channels]
            missing = [c for c in want if c not in header]
            if missing:
                raise _err(path, f"lacks column(s) {missing}; header: {header} (tab separated: "
                           f"{' '.join(BIO_COLUMNS_A)}; Part B adds {' '.join(BIO_COLUMNS_B[4:])})")
            try:
                data = np.loadtxt(f, delimiter="\t", dtype=np.float64, ndmin=2,
                                  usecols=[header.index(c) for c in want])
            except ValueError as e:
                raise _err(path, f"holds a value that is not a number ({e})") from None
    except UnicodeDecodeError as e:
        raise _err(path, f"is not a text file ({e})") from None
    if rows is not None and len(data) != rows:
        raise _err(path, f"has {len(data)} rows, expected {rows} ({rows / BIO_RATE_HZ:g} s at {BIO_RATE_HZ:g} Hz)",
                   f"{_FIX}, or set data.init_args.seconds to the recordings' length")
    if len(data) < 2:
        raise _err(path, f"has {len(data)} rows, need a recording")
    finite = np.isfinite(data)
    if not finite.all():
        r, c = map(int, np.argwhere(~finite)[0])
        raise _err(path, f"column {want[c]!r}, row {r + 1}: value {data[r, c]} is NaN or inf")
    step = float(np.median(np.diff(data[:, 0])))
    if not any(np.isclose(step, unit / BIO_RATE_HZ, rtol=0.02) for unit in (1e3, 1e6)):
        raise _err(path, f"time step {step:g}, expected {1e3 / BIO_RATE_HZ:g} (ms at {BIO_RATE_HZ:g} Hz)")
    return np.ascontiguousarray(data[:, 1:].T, dtype=np.float32)


def parse_task(task: str) -> tuple[str, ...]:
    """The classes of ``task`` in label order: ``"5class"`` -> all of :data:`CLASSES` (label = class_id);
    ``"<A>_vs_<B>"`` -> ``(A, B)`` (0 = A, 1 = B)."""
    if task == "5class":
        return CLASSES
    m = _TASK.match(task)
    if m and m.group(1) in CLASSES and m.group(2) in CLASSES and m.group(1) != m.group(2):
        return m.group(1), m.group(2)
    raise ConfigError(f"task {task!r} is unknown. Fix: set data.init_args.task to 5class or <A>_vs_<B> with two "
                      f"classes of {CLASSES}, e.g. BL1_vs_PA4.")


class BiovidDataModule(InMemoryDataModule):
    """BioVid Heat Pain (module doc) as batches: a visual input and the biosignals, one batch row per sample.

    * **Task**: ``BL1_vs_PA4`` (default; binary, 0 = BL1, 1 = PA4), any ``<A>_vs_<B>`` of two classes
      (``target_kind`` ``binary``), or ``5class`` (label = ``class_id`` 0..4, ``target_kind`` ``class_index``);
      samples of other classes are not read.
    * **Folds** (subject-disjoint): the subjects (sorted ``subject_id``) are permuted by
      ``numpy.random.default_rng(split_seed)`` and cut into ``n_folds`` near-equal groups; test = group ``fold``,
      valid = group ``(fold + 1) % n_folds`` (training subjects held out), train = the rest
      (:func:`~lightning_kd.data.eeg_face_data.assign_splits`, ``subject_independent`` / ``valid_by: subjects``).
      No subject is in two splits. The released MT-PKDOT code splits 5 folds over samples, which puts one
      person's samples in train and test (MT-PKDOT spec, "Protocol"); this module does not.
    * **video** ``(B, F, D)``: ``frames`` frames at the centres of ``frames`` equal parts of the ``seconds`` window
      (time ``(k + 0.5) seconds / F``), from the sample's feature file (``video_features: file``) or from the
      decoded ``.mp4`` through a timm backbone from local weights or random init, cached on disk
      (``video_features: backbone``, :class:`~lightning_kd.data.face_features.VideoBackboneFeatures`).
    * **bio** ``(B, C, T)``: the ``bio_channels`` columns by name (default ``emg_trapezius``, the EMG MT-PKDOT
      uses; ``gsr``, ``ecg`` and Part B's facial EMG are options), ``T = seconds * 512`` samples.
    * **Standardisation** (``standardize``): per bio channel and per video feature, mean / std of the training
      split applied to every split.

    ``feature_dims = {"video": D, "bio": C}``, ``seq_lens = {"video": F, "bio": T}``, ``step_axes`` video 1,
    bio 2 (the defaults of :func:`~lightning_kd.data.missing.default_step_axis`); masks all True; ids =
    ``sample_name``. ``subject_splits`` maps each subject_id used to its split.

    Args:
        root: the folder holding ``samples.csv``, ``biosignals_filtered/``, ``video/`` (and ``video_features/``).
        task: see above. subjects: subject_ids to use (``None`` = all listed).
        n_folds (>= 3) / fold / split_seed: see above.
        inputs: from ``video``, ``bio``. bio_channels: column names of the ``_bio.csv``.
        frames: frames per sample; seconds: recording length (rows = ``seconds * 512``; a file of another length
            stops).
        video_features: ``file`` or ``backbone``; video_backbone / video_weights / video_input_size /
            video_device / cache_dir: the timm model, its LOCAL weights file (``None`` = random, tests only), the
            frame size it sees, where it runs, the feature cache folder (``backbone`` only).
        standardize: z-score with training statistics.
        Other arguments: see :class:`~lightning_kd.data.datamodule.InMemoryDataModule` (``storage_dtype: float16``
            holds the windows in half the memory; batches stay float32).
    """

    def __init__(
        self,
        root: str,
        task: str = "BL1_vs_PA4",
        subjects: list[int] | None = None,
        n_folds: int = 5,
        fold: int = 0,
        split_seed: int = 0,
        inputs: list[str] = list(INPUTS),  # noqa: B006 - read only
        bio_channels: list[str] = ["emg_trapezius"],  # noqa: B006 - read only
        frames: int = 16,
        seconds: float = SAMPLE_SECONDS,
        video_features: str = "file",
        video_backbone: str = "resnet18",
        video_weights: str | None = None,
        video_input_size: int = 112,
        video_device: str = "cpu",
        cache_dir: str = "data/cache/biovid",
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
        self.classes = parse_task(task)
        if n_folds < 3 or not 0 <= fold < n_folds:
            raise ConfigError(f"n_folds={n_folds}, fold={fold}: need n_folds >= 3 (test, valid and train subjects) "
                              f"and 0 <= fold < n_folds. Fix: set {opt}n_folds and {opt}fold.")
        bad = [m for m in inputs if m not in INPUTS]
        if bad or not inputs:
            raise ConfigError(f"inputs {list(inputs)}: need a non-empty subset of {INPUTS}. Fix: set {opt}inputs.")
        unknown = [c for c in bio_channels if c not in BIO_COLUMNS_B[1:]]
        if "bio" in inputs and (unknown or not bio_channels):
            raise ConfigError(f"bio_channels {list(bio_channels)}: need names from {BIO_COLUMNS_B[1:]}. Fix: set "
                              f"{opt}bio_channels.")
        if video_features not in VIDEO_SOURCES:
            raise ConfigError(f"video_features {video_features!r} is unknown. Fix: set {opt}video_features to one of "
                              f"{VIDEO_SOURCES}.")
        if frames < 1 or not seconds > 0:
            raise ConfigError(f"frames={frames}, seconds={seconds}: need frames >= 1 and seconds > 0. Fix: set "
                              f"{opt}frames / {opt}seconds.")
        self.root, self.path, self.task = Path(root), root, task
        self.subjects = None if subjects is None else sorted(int(s) for s in subjects)
        self.n_folds, self.fold, self.split_seed = int(n_folds), int(fold), int(split_seed)
        self.inputs, self.bio_channels = tuple(inputs), tuple(bio_channels)
        self.frames, self.seconds = int(frames), float(seconds)
        self.video_features, self.video_backbone, self.video_weights = video_features, video_backbone, video_weights
        self.video_input_size, self.video_device, self.cache_dir = int(video_input_size), video_device, cache_dir
        self.standardize = standardize
        #: subject_id -> split of the subjects used (set when the splits are built)
        self.subject_splits: dict[int, str] = {}
        self._backbone = None

    @property
    def target_kind(self) -> str:
        return "class_index" if len(self.classes) > 2 else "binary"

    @property
    def bio_rows(self) -> int:
        return int(round(self.seconds * BIO_RATE_HZ))

    @property
    def feature_dims(self) -> dict[str, int]:
        """``{"video": D, "bio": channels}`` (those of ``inputs``); the steps run along :attr:`step_axes`."""
        return {k: int(v.shape[1] if k == "bio" else v.shape[-1]) for k, v in self.splits["train"].inputs.items()}

    def select_samples(self) -> list[BiovidSample]:
        """The rows of ``samples.csv`` of the task's classes and ``subjects``, each with its files present."""
        samples = [s for s in read_biovid_samples(self.root) if s.class_name in self.classes
                   and (self.subjects is None or s.subject_id in self.subjects)]
        if not samples:
            raise DataFormatError(f"{self.root / SAMPLES_CSV}: no sample of classes {self.classes} for subjects "
                                  f"{self.subjects or 'all'}. Fix: set data.init_args.subjects to subject_ids it lists.")
        for s in samples:
            need = [s.bio_path(self.root)] if "bio" in self.inputs else []
            if "video" in self.inputs:
                need.append(s.feature_path(self.root) if self.video_features == "file" else s.video_path(self.root))
            for p in need:
                if not p.is_file():
                    alt = ", or use video_features: backbone when only the videos exist" if p.suffix == ".npz" else ""
                    raise DataFileNotFoundError(f"{p}: not found, but {self.root / SAMPLES_CSV} lists sample "
                                                f"{s.sample_name}. Fix: restore the file (BioVid download, or "
                                                f"regenerate the folder), or drop the sample's row{alt}.")
        return samples

    def _video(self, s: BiovidSample, times: np.ndarray) -> np.ndarray:
        if self.video_features == "file":
            from lightning_kd.data.formats.video import frame_indices, read_face_features

            feats, fps = read_face_features(s.feature_path(self.root))
            return feats[frame_indices(times, fps, len(feats))]
        if self._backbone is None:
            from lightning_kd.data.face_features import VideoBackboneFeatures

            self._backbone = VideoBackboneFeatures(self.video_backbone, self.video_weights, self.video_input_size,
                                                   self.cache_dir, self.video_device)
        return self._backbone(s.video_path(self.root), times)

    def load_splits(self) -> dict[str, SplitTensors]:
        samples = self.select_samples()
        subjects = sorted({s.subject_id for s in samples})
        if len(subjects) < self.n_folds:
            raise DataFormatError(f"{self.root / SAMPLES_CSV}: {len(subjects)} subjects for {self.n_folds} "
                                  "subject-disjoint folds. Fix: lower data.init_args.n_folds (>= 3) or use more "
                                  "subjects.")
        by_key = assign_splits([(s.subject_id, 0) for s in samples], "subject_independent", self.n_folds, self.fold,
                               self.split_seed, "subjects")
        self.subject_splits = {k[0]: v for k, v in by_key.items()}
        times = window_times(1, self.seconds, self.frames)
        label = {c: i for i, c in enumerate(self.classes)}
        parts: dict[str, dict[str, list]] = {s: {"video": [], "bio": [], "y": [], "ids": []} for s in SPLITS}
        dim: tuple[int, str] | None = None
        for s in samples:
            part = parts[self.subject_splits[s.subject_id]]
            if "bio" in self.inputs:
                part["bio"].append(read_bio(s.bio_path(self.root), self.bio_channels, self.bio_rows))
            if "video" in self.inputs:
                v = self._video(s, times)
                if dim is not None and v.shape[-1] != dim[0]:
                    raise DataFormatError(f"{s.feature_path(self.root)}: visual features of size {v.shape[-1]}, "
                                          f"those of {dim[1]} have {dim[0]}. Fix: extract every sample's features "
                                          "with the same model.")
                dim = dim or (int(v.shape[-1]), s.sample_name)
                part["video"].append(v)
            part["y"].append(label[s.class_name])
            part["ids"].append(s.sample_name)
        if self._backbone is not None:
            rank_zero_info(self._backbone.summary())
        arrays = {sp: {m: np.stack(p[m]).astype(np.float32) if p[m] else None for m in self.inputs}
                  for sp, p in parts.items()}
        if self.standardize:
            standardize_splits(arrays, {"bio": (0, 2), "video": (0, 1)})
        out = {}
        for sp, p in parts.items():
            n = len(p["ids"])
            inputs, masks = {}, {}
            for m in self.inputs:
                a = arrays[sp][m]
                if a is None:  # an empty split (refused by check_splits)
                    a = np.zeros((0, 1, 1), np.float32)
                inputs[m] = torch.from_numpy(np.ascontiguousarray(a))
                masks[m] = torch.ones(n, a.shape[2] if m == "bio" else a.shape[1], dtype=torch.bool)
            out[sp] = SplitTensors(inputs=inputs, masks=masks, target=torch.tensor(p["y"], dtype=torch.int64),
                                   ids=p["ids"])
        return out

    def split_subjects(self, split: str) -> list[int]:
        """The subject_ids of ``split`` (after the splits are built)."""
        _ = self.splits
        return sorted(k for k, v in self.subject_splits.items() if v == split)
