"""Aff-Wild2 valence / arousal datamodule: clips of consecutive annotated face frames, face video + audio.

Reader and layout: :mod:`lightning_kd.data.formats.affwild2`.

* **Usable frames** of a face track: annotated (not ``-5``) and with a face (its ``cropped_aligned/`` jpg, or its row
  in the face feature file). Annotated frames without a face are skipped and counted (one log line for the data
  set; per video in :attr:`AffWild2DataModule.skipped_frames`).
* **Clips**: each run of consecutive usable frame numbers is cut into clips of ``frames_per_clip`` frames starting
  every ``clip_stride`` frames (default: ``frames_per_clip``, non-overlapping); a shorter tail is dropped.
  Sample id ``<video>_f<first frame, 5 digits>``.
* **Target**: the clip's mean (valence, arousal), float32 ``(B, 2)``, ``target_kind = "valence_arousal"``.
* **Inputs**: ``video (B, F, D)`` per-frame face features, from ``face_features/<video>.npz`` (``video_features:
  file``) or the jpgs through a timm backbone (``backbone``: LOCAL weights or random init; cached on disk keyed by
  the jpgs' bytes + weights, :class:`FrameBackboneFeatures`); ``audio (B, F, D_a)``, the privileged modality, one row
  per clip frame: log-mel energies of the raw video's sound track around the frame (``audio_features: raw``,
  :mod:`lightning_kd.data.audio_features`, cached keyed by the video's bytes) or the rows of
  ``audio_features/<raw>.npz`` (``file``). ``masks`` all True ``(B, F)``.
* **Splits** (whole raw videos, so the ``_left`` / ``_right`` faces of one video and the clips of a video never
  straddle splits): the official ``Validation_Set`` is ``test``; the raw videos of ``Train_Set`` (sorted names)
  are permuted by ``numpy.random.default_rng(split_seed)`` and the first ``max(1, round(valid_fraction * n))``
  are ``valid``, the rest ``train``. Pinned by ``split_seed``, not by the run seed.
* **Standardisation** (``standardize``): per feature of each input, training-split mean / std applied to every split.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import torch
from lightning.pytorch.utilities import rank_zero_info

from lightning_kd.checkpoint import ConfigError, DataFormatError
from lightning_kd.data.clip_features import FeatureCache
from lightning_kd.data.datamodule import SPLITS, InMemoryDataModule
from lightning_kd.data.face_features import CACHE_VERSION, VideoBackboneFeatures
from lightning_kd.data.formats import affwild2 as fmt
from lightning_kd.data.missing import MissingAugmentation, MissingCondition
from lightning_kd.data.split import SplitTensors, StorageDtype
from lightning_kd.io import file_sha256

__all__ = ["AUDIO_SOURCES", "INPUTS", "VIDEO_SOURCES", "AffWild2DataModule", "FrameBackboneFeatures", "clip_starts",
           "split_videos"]

INPUTS = ("video", "audio")
VIDEO_SOURCES = ("file", "backbone")
AUDIO_SOURCES = ("raw", "file")


def clip_starts(frames: np.ndarray, frames_per_clip: int, stride: int) -> np.ndarray:
    """Indices into ``frames`` (increasing frame numbers) where a clip of ``frames_per_clip`` consecutive frame
    numbers starts, every ``stride`` frames within each run of consecutive numbers (a shorter tail is dropped)."""
    frames = np.asarray(frames, dtype=np.int64)
    breaks = np.flatnonzero(np.diff(frames) != 1) + 1
    out = []
    for run in np.split(np.arange(len(frames)), breaks):
        out += list(run[: max(0, len(run) - frames_per_clip + 1)][::stride])
    return np.asarray(out, dtype=np.int64)


def split_videos(videos: list[fmt.AffWild2Video], valid_fraction: float, split_seed: int) -> dict[str, str]:
    """``video name -> train | valid | test`` by whole raw videos (module doc)."""
    test = {v.raw_name for v in videos if v.official_set == "Validation_Set"}
    train_raw = sorted({v.raw_name for v in videos if v.official_set != "Validation_Set"})
    both = sorted(test & set(train_raw))
    if both:
        raise DataFormatError(f"raw video {both[0]!r} has faces in Train_Set and Validation_Set. Fix: keep the faces of "
                              "one raw video in one official set.")
    if len(train_raw) < 2:
        raise DataFormatError(f"Train_Set holds {len(train_raw)} raw video(s); training and validation need at least 2 "
                              "(validation takes whole raw videos). Fix: add Train_Set videos, or widen "
                              "data.init_args.videos.")
    perm = np.random.default_rng(split_seed).permutation(np.asarray(train_raw, dtype=object))
    n_valid = max(1, int(round(valid_fraction * len(train_raw))))
    valid = set(perm[:n_valid])
    return {v.name: "test" if v.raw_name in test else "valid" if v.raw_name in valid else "train" for v in videos}


class FrameBackboneFeatures(VideoBackboneFeatures):
    """Cached timm features of a face track's jpg frames; ``features(jpgs) -> (n, D)`` float32.

    The backbone, weights and preprocessing are :class:`~lightning_kd.data.face_features.VideoBackboneFeatures`';
    the cache key holds the jpgs' bytes (sha256 of their sha256s, in order) instead of a video's.
    """

    def frames_key(self, jpgs: list[Path]) -> dict:
        import timm

        h = hashlib.sha256()
        for p in jpgs:
            h.update(file_sha256(p).encode())
        return {"kind": "face-backbone-jpg", "version": CACHE_VERSION, "timm": timm.__version__,
                "backbone": self.backbone, "weights": self.weights_id(), "input_size": self.input_size,
                "frames_sha256": h.hexdigest(), "n": len(jpgs)}

    def features(self, jpgs: list[Path]) -> np.ndarray:
        from PIL import Image

        key = self.frames_key(jpgs)
        cached = self.cache.load(key, required=("features",))
        if cached is not None:
            self.hits += 1
            return cached["features"].astype(np.float32, copy=False)
        images = []
        for p in jpgs:
            try:
                with Image.open(p) as im:
                    images.append(np.asarray(im.convert("RGB").resize((self.input_size, self.input_size))))
            except Exception as e:  # noqa: BLE001 - PIL raises many types for bad files
                raise DataFormatError(f"{p}: not a readable jpg ({type(e).__name__}: {e}). Fix: re-extract or "
                                      "re-download the cropped_aligned frames.") from None
        feats = self.encode(np.stack(images))
        self.cache.save(key, {"features": feats})
        self.encoded += 1
        return feats


class AffWild2DataModule(InMemoryDataModule):
    """Aff-Wild2 valence / arousal clips (module doc: frames, clips, target, inputs, splits).

    Args:
        root: the folder holding ``VA_Estimation_Challenge/``, ``cropped_aligned/`` and ``videos/`` (and this project's
            ``face_features/`` / ``audio_features/``).
        videos: annotation names to use (``None`` = all of Train_Set and Validation_Set).
        frames_per_clip: consecutive usable frames per sample (``F``); ``clip_stride``: frames between clip starts
            (``None`` = ``frames_per_clip``).
        valid_fraction / split_seed: part of Train_Set's raw videos that validates, and the seed choosing them.
        inputs: from ``video``, ``audio``.
        video_features: ``file`` (``face_features/<video>.npz``) or ``backbone`` (the jpgs through timm).
        video_backbone / video_weights / video_input_size / video_device: the timm model, its LOCAL weights file
            (``None`` = random init, tests only), the frame size it sees, where it runs.
        audio_features: ``raw`` (log-mel of the raw video's sound track) or ``file`` (``audio_features/<raw>.npz``).
        audio_rate / audio_window_s / n_mels: resampling rate (Hz), analysis window (s) and mel bands (``raw``).
        cache_dir: folder of the feature caches (backbone and log-mel).
        standardize: z-score every feature with training-split statistics.
        Other arguments: see :class:`~lightning_kd.data.datamodule.InMemoryDataModule` (``storage_dtype: float16``
            holds the clips' features in half the memory; batches stay float32).
    """

    def __init__(
        self,
        root: str,
        videos: list[str] | None = None,
        frames_per_clip: int = 8,
        clip_stride: int | None = None,
        valid_fraction: float = 0.2,
        split_seed: int = 0,
        inputs: list[str] = list(INPUTS),  # noqa: B006 - read only
        video_features: str = "file",
        video_backbone: str = "resnet18",
        video_weights: str | None = None,
        video_input_size: int = 112,
        video_device: str = "cpu",
        audio_features: str = "raw",
        audio_rate: int = 16000,
        audio_window_s: float = 0.064,
        n_mels: int = 32,
        cache_dir: str = "data/cache/affwild2",
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
        bad = [m for m in inputs if m not in INPUTS]
        if bad or not inputs:
            raise ConfigError(f"inputs {list(inputs)}: need a non-empty subset of {INPUTS}. Fix: set {opt}inputs.")
        if video_features not in VIDEO_SOURCES:
            raise ConfigError(f"video_features {video_features!r} is unknown. Fix: set {opt}video_features to one of "
                              f"{VIDEO_SOURCES}.")
        if audio_features not in AUDIO_SOURCES:
            raise ConfigError(f"audio_features {audio_features!r} is unknown. Fix: set {opt}audio_features to one of "
                              f"{AUDIO_SOURCES}.")
        stride = frames_per_clip if clip_stride is None else clip_stride
        if frames_per_clip < 1 or stride < 1:
            raise ConfigError(f"frames_per_clip={frames_per_clip}, clip_stride={clip_stride}: need both >= 1. Fix: set "
                              f"{opt}frames_per_clip / {opt}clip_stride.")
        if not 0 < valid_fraction < 1:
            raise ConfigError(f"valid_fraction={valid_fraction}: need 0 < valid_fraction < 1. Fix: set "
                              f"{opt}valid_fraction.")
        if audio_rate < 1000 or not audio_window_s > 0 or n_mels < 1:
            raise ConfigError(f"audio_rate={audio_rate}, audio_window_s={audio_window_s}, n_mels={n_mels}: need "
                              f"audio_rate >= 1000, audio_window_s > 0, n_mels >= 1. Fix: set {opt}audio_rate, "
                              f"{opt}audio_window_s, {opt}n_mels.")
        self.root, self.path = root, root
        self.videos = None if videos is None else [str(v) for v in videos]
        self.frames_per_clip, self.clip_stride = int(frames_per_clip), int(stride)
        self.valid_fraction, self.split_seed = float(valid_fraction), int(split_seed)
        self.inputs = tuple(inputs)
        self.video_features, self.audio_features = video_features, audio_features
        self.video_backbone, self.video_weights = video_backbone, video_weights
        self.video_input_size, self.video_device = int(video_input_size), video_device
        self.audio_rate, self.audio_window_s, self.n_mels = int(audio_rate), float(audio_window_s), int(n_mels)
        self.cache_dir, self.standardize = cache_dir, standardize
        #: video name -> split (set when the splits are built)
        self.video_splits: dict[str, str] = {}
        #: video name -> annotated frames without a face (skipped)
        self.skipped_frames: dict[str, int] = {}
        self._backbone: FrameBackboneFeatures | None = None
        self._raw: dict[str, Path] | None = None

    @property
    def target_kind(self) -> str:
        return "valence_arousal"

    # -- per video ------------------------------------------------------------------------------
    def _faces(self, video: fmt.AffWild2Video) -> tuple[np.ndarray, np.ndarray | None]:
        """``(frame numbers with a face, their (n, D) features or None when the video is not an input)``."""
        if self.video_features == "file" and ("video" in self.inputs or video.face_feature_file.is_file()):
            return fmt.read_face_feature_file(video.face_feature_file)
        frames, jpgs = fmt.face_frames(video.frames_dir)
        if not len(frames):
            raise DataFormatError(f"{video.frames_dir}: no face frame NNNNN.jpg for the annotated video {video.name} "
                                  f"({video.annotation}). Fix: extract cropped_aligned/{video.name}/ from the Aff-Wild2 "
                                  "release, or leave the video out with data.init_args.videos.")
        if "video" not in self.inputs:
            return frames, None
        keep = np.isin(frames, video.annotated)  # only annotated frames are encoded
        frames, jpgs = frames[keep], [p for p, k in zip(jpgs, keep) if k]
        if self._backbone is None:
            self._backbone = FrameBackboneFeatures(self.video_backbone, self.video_weights, self.video_input_size,
                                                   Path(self.cache_dir) / "face", self.video_device)
        return frames, self._backbone.features(jpgs) if jpgs else np.zeros((0, 1), np.float32)

    def _audio(self, video: fmt.AffWild2Video, frames: np.ndarray) -> np.ndarray:
        """``(len(frames), D_a)`` audio rows of the 1-based video frames ``frames``."""
        if self.audio_features == "file":
            feats = fmt.read_audio_feature_file(video.audio_feature_file)
            return feats[np.clip(frames - 1, 0, len(feats) - 1)]
        if self._raw is None:
            self._raw = fmt.find_raw_videos(self.root)
        raw = self._raw.get(video.raw_name)
        if raw is None:
            raise DataFormatError(f"{Path(self.root) / fmt.VIDEOS_DIR}: no raw video {video.raw_name}.mp4|.avi (any "
                                  f"subfolder) for the annotated video {video.name}, whose sound track is the audio "
                                  "input. Fix: add the raw video, set data.init_args.audio_features: file, or "
                                  "inputs: [video].")
        from lightning_kd.data.audio_features import cached_log_mel

        return cached_log_mel(raw, frames, self.audio_rate, self.audio_window_s, self.n_mels,
                              FeatureCache(Path(self.cache_dir) / "audio", prefix="log-mel"), fmt.read_audio_track)

    # -- splits ---------------------------------------------------------------------------------
    def load_splits(self) -> dict[str, SplitTensors]:
        videos = fmt.read_affwild2(self.root, self.videos)
        self.video_splits = split_videos(videos, self.valid_fraction, self.split_seed)
        parts = {s: {"video": [], "audio": [], "y": [], "ids": []} for s in SPLITS}
        self.skipped_frames = {}
        n_annotated = 0
        dims: dict[str, tuple[int, str]] = {}
        f, stride = self.frames_per_clip, self.clip_stride
        for video in videos:
            annotated = video.annotated
            if not len(annotated):
                raise DataFormatError(f"{video.annotation}: every frame is unannotated (-5). Fix: leave the video out "
                                      "with data.init_args.videos, or use a complete annotation file.")
            face_frames, face_feats = self._faces(video)
            has_face = np.isin(annotated, face_frames)
            self.skipped_frames[video.name] = int((~has_face).sum())
            n_annotated += len(annotated)
            usable = annotated[has_face]
            starts = clip_starts(usable, f, stride)
            if not len(starts):
                continue
            idx = starts[:, None] + np.arange(f)[None]  # (clips, F) indices into usable
            clip_frames = usable[idx]
            part = parts[self.video_splits[video.name]]
            if "video" in self.inputs:
                rows = np.searchsorted(face_frames, clip_frames)
                part["video"].append(face_feats[rows])
            if "audio" in self.inputs:
                part["audio"].append(self._audio(video, clip_frames.reshape(-1)).reshape(len(starts), f, -1))
            for m in self.inputs:
                d = part[m][-1].shape[-1]
                src = str(video.face_feature_file if m == "video" else video.audio_feature_file)
                if m in dims and dims[m][0] != d:
                    raise DataFormatError(f"{src}: {m} features of size {d}, those of {dims[m][1]} have {dims[m][0]}. "
                                          "Fix: extract every video's features with the same settings.")
                dims.setdefault(m, (d, src))
            part["y"].append(video.labels[clip_frames - 1].mean(axis=1))
            part["ids"] += [f"{video.name}_f{int(k):05d}" for k in clip_frames[:, 0]]
        skipped = sum(self.skipped_frames.values())
        rank_zero_info(f"Aff-Wild2 {self.root}: {skipped} of {n_annotated} annotated frames have no face (absent from "
                       f"{fmt.FRAMES_DIR}/ or the face feature file) and are skipped, in "
                       f"{sum(1 for v in self.skipped_frames.values() if v)} of {len(videos)} videos")
        if self._backbone is not None:
            rank_zero_info(self._backbone.summary())
        arrays = {s: {m: np.concatenate(p[m]).astype(np.float32) if p[m] else None for m in self.inputs}
                  for s, p in parts.items()}
        if self.standardize:
            self._standardize(arrays)
        out = {}
        for s, p in parts.items():
            inputs, masks = {}, {}
            for m in self.inputs:
                a = arrays[s][m]
                if a is None:  # an empty split (refused by check_splits)
                    a = np.zeros((0, f, dims.get(m, (1,))[0]), np.float32)
                inputs[m] = torch.from_numpy(np.ascontiguousarray(a))
                masks[m] = torch.ones(a.shape[0], f, dtype=torch.bool)
            y = np.concatenate(p["y"]) if p["y"] else np.zeros((0, 2), np.float32)
            out[s] = SplitTensors(inputs=inputs, masks=masks, target=torch.from_numpy(y.astype(np.float32)),
                                  ids=p["ids"])
        return out

    def _standardize(self, arrays: dict[str, dict[str, np.ndarray | None]]) -> None:
        """z-score per feature (last axis) with training statistics, in place."""
        for m in self.inputs:
            train = arrays["train"][m]
            if train is None:
                continue
            mean = train.mean(axis=(0, 1), keepdims=True, dtype=np.float64)
            std = train.std(axis=(0, 1), keepdims=True, dtype=np.float64)
            std = np.where(std > 1e-8, std, 1.0)
            for s in SPLITS:
                if arrays[s][m] is not None:
                    arrays[s][m] = ((arrays[s][m] - mean) / std).astype(np.float32)

    def split_videos(self, split: str) -> list[str]:
        """The video names of ``split`` (after the splits are built)."""
        _ = self.splits
        return sorted(k for k, s in self.video_splits.items() if s == split)
