"""Reader of Aff-Wild2 (Kollias & Zafeiriou, ABAW) valence-arousal data as distributed.

Layout under ``root``:

* ``VA_Estimation_Challenge/{Train_Set,Validation_Set}/<video>.txt``: one file per annotated face; first line
  ``valence,arousal``, then line ``k + 1`` = frame ``k`` (1-based) of the video, two comma-separated values in
  [-1, 1]; ``-5`` marks a frame without annotation (a line holding ``-5`` in either column is dropped).
* ``cropped_aligned/<video>/<NNNNN>.jpg``: the cropped, aligned face of frame ``NNNNN`` (5 digits, 1-based); a frame
  where no face was found has no file (such frames are skipped and counted). Other files in the folder are ignored.
* ``videos/<any subfolder>/<raw>.mp4|.avi``: the raw videos with their sound track. ``<video>`` = ``<raw>``, or
  ``<raw>_left`` / ``<raw>_right`` for one of two faces in the same raw video (both read its sound track); the
  frame numbers of ``<video>`` are frames of ``<raw>``, frame ``k`` at time ``(k - 1) / fps`` of the raw video.

This project's per-video feature files (written by ``lightning-kd generate affwild2``; for the real data set,
extract them yourself or use ``video_features: backbone`` / ``audio_features: raw``):

* ``face_features/<video>.npz``: ``frames`` ``(n,)`` int64 1-based frame numbers of the frames with a face (strictly
  increasing) and ``features`` ``(n, D)`` float32, row ``i`` describing frame ``frames[i]``.
* ``audio_features/<raw>.npz``: ``features`` ``(n_frames, D_a)`` float32, row ``k - 1`` = the sound around video frame
  ``k`` of ``<raw>`` (shared by ``<raw>_left`` and ``<raw>_right``); frames past the last row take the last row.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lightning_kd.checkpoint import DataFileNotFoundError, DataFormatError

__all__ = [
    "ANNOTATION_DIR", "AUDIO_FEATURE_DIR", "FACE_FEATURE_DIR", "FACE_SUFFIXES", "FRAMES_DIR", "HEADER", "OFFICIAL_SETS",
    "UNANNOTATED", "VIDEOS_DIR", "VIDEO_EXTENSIONS", "AffWild2Video", "face_frames", "find_raw_videos",
    "raw_video_name", "read_affwild2", "read_annotation", "read_audio_feature_file", "read_audio_track",
    "read_face_feature_file",
]

ANNOTATION_DIR = "VA_Estimation_Challenge"
#: the official sets of the VA track with annotations (the challenge's test set is released without them)
OFFICIAL_SETS = ("Train_Set", "Validation_Set")
FRAMES_DIR = "cropped_aligned"
VIDEOS_DIR = "videos"
FACE_FEATURE_DIR = "face_features"
AUDIO_FEATURE_DIR = "audio_features"
HEADER = ("valence", "arousal")
#: the value of an unannotated frame
UNANNOTATED = -5.0
#: suffixes naming one of two faces of the same raw video
FACE_SUFFIXES = ("_left", "_right")
VIDEO_EXTENSIONS = (".mp4", ".avi")
_FIX = "re-download it from the Aff-Wild2 release, or regenerate the folder with `lightning-kd generate affwild2 --out DIR`"
_FRAME = re.compile(r"^(\d{5})\.jpg$", re.IGNORECASE)


def _err(path: Path, what: str, fix: str = _FIX) -> DataFormatError:
    return DataFormatError(f"{path}: {what}. Fix: {fix}.")


def raw_video_name(video: str) -> str:
    """The raw video a face's annotation belongs to: ``<raw>_left`` / ``<raw>_right`` -> ``<raw>``, else itself."""
    for suffix in FACE_SUFFIXES:
        if video.endswith(suffix) and len(video) > len(suffix):
            return video[: -len(suffix)]
    return video


@dataclass
class AffWild2Video:
    """One annotated face track.

    Attributes:
        name: the annotation file's stem (``<raw>`` or ``<raw>_left`` / ``<raw>_right``).
        official_set: ``Train_Set`` or ``Validation_Set``.
        annotation: the annotation file.
        labels: ``(n_lines, 2)`` float32 valence, arousal of frames ``1..n_lines``; NaN for an unannotated frame.
        root: the data set folder (other files are found from it by name).
    """

    name: str
    official_set: str
    annotation: Path
    labels: np.ndarray
    root: Path

    @property
    def raw_name(self) -> str:
        return raw_video_name(self.name)

    @property
    def frames_dir(self) -> Path:
        return self.root / FRAMES_DIR / self.name

    @property
    def face_feature_file(self) -> Path:
        return self.root / FACE_FEATURE_DIR / f"{self.name}.npz"

    @property
    def audio_feature_file(self) -> Path:
        return self.root / AUDIO_FEATURE_DIR / f"{self.raw_name}.npz"

    @property
    def annotated(self) -> np.ndarray:
        """1-based frame numbers with an annotation (int64, increasing)."""
        return np.flatnonzero(~np.isnan(self.labels[:, 0])) + 1


def read_annotation(path: str | Path) -> np.ndarray:
    """``(n_lines, 2)`` float32 (valence, arousal) per frame of an annotation file; NaN where a value is ``-5``.

    Raises:
        DataFileNotFoundError: no such file.
        DataFormatError: header other than ``valence,arousal``, a line without two numbers, a value outside [-1, 1]
            other than -5, or no frame line (one line naming the file, and the line).
    """
    path = Path(path)
    if not path.is_file():
        raise DataFileNotFoundError(f"{path}: Aff-Wild2 annotation file not found. Fix: {_FIX}.")
    try:
        lines = path.read_text(encoding="utf-8-sig").splitlines()
    except UnicodeDecodeError as e:
        raise _err(path, f"is not a text file ({e})") from None
    head = [c.strip().lower() for c in lines[0].split(",")] if lines else []
    if tuple(head) != HEADER:
        raise _err(path, f"line 1 must be the header 'valence,arousal', got {lines[0][:60]!r}" if lines else "is empty",
                   "use an annotation file of the VA track (VA_Estimation_Challenge), whose first line is "
                   "'valence,arousal'")
    body = list(lines[1:])
    while body and not body[-1].strip():  # a trailing blank line
        body.pop()
    if not body:
        raise _err(path, "holds the header but no frame line")
    values = np.empty((len(body), 2), dtype=np.float64)
    for i, ln in enumerate(body):
        parts = ln.split(",")
        try:
            if len(parts) != 2:
                raise ValueError
            values[i] = (float(parts[0]), float(parts[1]))
        except ValueError:
            raise _err(path, f"line {i + 2}: expected two comma-separated numbers 'valence,arousal', got {ln[:60]!r}") \
                from None
    missing = (values == UNANNOTATED).any(axis=1)
    bad = ~missing & (~np.isfinite(values).all(axis=1) | (np.abs(values) > 1).any(axis=1))
    if bad.any():
        i = int(np.argmax(bad))
        raise _err(path, f"line {i + 2}: values {values[i, 0]:g},{values[i, 1]:g} are outside [-1, 1] (only -5, an "
                   "unannotated frame, may lie outside)", "correct the line, or write -5,-5 for an unannotated frame, "
                   "or re-download the file")
    values[missing] = np.nan
    return values.astype(np.float32)


def face_frames(frames_dir: str | Path) -> tuple[np.ndarray, list[Path]]:
    """``(frame numbers (n,) int64 increasing, jpg paths)`` of the face images ``NNNNN.jpg`` in ``frames_dir``."""
    frames_dir = Path(frames_dir)
    if not frames_dir.is_dir():
        return np.zeros(0, np.int64), []
    found = sorted((int(m.group(1)), p) for p in frames_dir.iterdir() if (m := _FRAME.match(p.name)) and p.is_file())
    return np.asarray([n for n, _ in found], dtype=np.int64), [p for _, p in found]


def find_raw_videos(root: str | Path) -> dict[str, Path]:
    """``<raw> -> path`` of every ``.mp4`` / ``.avi`` under ``root/videos`` (any depth); a name twice stops."""
    out: dict[str, Path] = {}
    base = Path(root) / VIDEOS_DIR
    if not base.is_dir():
        return out
    for p in sorted(base.rglob("*")):
        if p.suffix.lower() in VIDEO_EXTENSIONS and p.is_file():
            if p.stem in out:
                raise _err(p, f"a second raw video named {p.stem!r} (also {out[p.stem]})",
                           "keep one file per video name under videos/")
            out[p.stem] = p
    return out


def read_affwild2(root: str | Path, videos: list[str] | None = None,
                  sets: tuple[str, ...] = OFFICIAL_SETS) -> list[AffWild2Video]:
    """Every annotated face track of ``sets`` under ``root`` (``videos``: only these names), sorted by name.

    Raises:
        DataFileNotFoundError: no annotation folder.
        DataFormatError: an annotation file is bad (see :func:`read_annotation`), a name in ``videos`` has no
            annotation file, or a name is annotated in two sets.
    """
    root = Path(root).expanduser()
    base = root / ANNOTATION_DIR
    if not base.is_dir():
        raise DataFileNotFoundError(f"{base}: Aff-Wild2 VA annotation folder not found. Fix: set data.init_args.root "
                                    f"to the folder holding {ANNOTATION_DIR}/, {FRAMES_DIR}/ and {VIDEOS_DIR}/, or "
                                    "generate one (`lightning-kd generate affwild2 --out DIR`).")
    out: dict[str, AffWild2Video] = {}
    for official in sets:
        folder = base / official
        for path in sorted(folder.glob("*.txt")) if folder.is_dir() else []:
            if videos is not None and path.stem not in videos:
                continue
            if path.stem in out:
                raise _err(path, f"video {path.stem!r} is annotated in {out[path.stem].official_set} too",
                           "keep each video in one official set")
            out[path.stem] = AffWild2Video(path.stem, official, path, read_annotation(path), root)
    if videos is not None:
        unknown = [v for v in videos if v not in out]
        if unknown:
            raise DataFormatError(f"{base}: video(s) {unknown} have no annotation file in {list(sets)}. Fix: set "
                                  "data.init_args.videos to names of files <video>.txt there, or null for all.")
    if not out:
        raise DataFormatError(f"{base}: no annotation file <video>.txt in {list(sets)}. Fix: set data.init_args.root "
                              f"to the Aff-Wild2 folder ({_FIX}).")
    return [out[k] for k in sorted(out)]


def _npz(path: Path, keys: tuple[str, ...], what: str, fix: str) -> dict[str, np.ndarray]:
    if not path.is_file():
        raise DataFileNotFoundError(f"{path}: {what} not found. Fix: {fix}.")
    try:
        with np.load(path, allow_pickle=False) as z:
            missing = [k for k in keys if k not in z.files]
            if missing:
                raise _err(path, f"lacks key(s) {missing}; present: {sorted(z.files)}", fix)
            return {k: np.asarray(z[k]) for k in keys}
    except DataFormatError:
        raise
    except Exception as e:  # noqa: BLE001 - truncated / not-an-npz files raise many types
        raise _err(path, f"is not a readable .npz file ({type(e).__name__}: {e})", fix) from None


def _features(path: Path, feats: np.ndarray, fix: str) -> np.ndarray:
    if feats.ndim != 2 or len(feats) == 0 or not np.issubdtype(feats.dtype, np.floating):
        raise _err(path, f"key 'features' must be a non-empty float 2-D array, got {feats.dtype} {feats.shape}", fix)
    if not np.isfinite(feats).all():
        raise _err(path, f"key 'features' holds NaN or inf (row {int(np.argmin(np.isfinite(feats).all(axis=1)))})", fix)
    return feats.astype(np.float32, copy=False)


def read_face_feature_file(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """``(frames (n,) int64, features (n, D) float32)`` of a per-video face feature file (see the module doc)."""
    path = Path(path)
    fix = ("regenerate it (`lightning-kd generate affwild2`), write `frames` (n,) and `features` (n, D) with np.savez, "
           "or set data.init_args.video_features: backbone (features from cropped_aligned/ jpgs)")
    z = _npz(path, ("frames", "features"), "Aff-Wild2 face feature file", fix)
    frames, feats = z["frames"], _features(path, z["features"], fix)
    if frames.ndim != 1 or len(frames) != len(feats) or not np.issubdtype(frames.dtype, np.integer):
        raise _err(path, f"key 'frames' must be integer (n,) with n = {len(feats)} rows of 'features', got "
                   f"{frames.dtype} {frames.shape}", fix)
    if (frames < 1).any() or (np.diff(frames) <= 0).any():
        raise _err(path, "key 'frames' must hold strictly increasing 1-based frame numbers", fix)
    return frames.astype(np.int64), feats


def read_audio_feature_file(path: str | Path) -> np.ndarray:
    """``(n_frames, D_a)`` float32 of a per-raw-video audio feature file, row ``k - 1`` = video frame ``k``."""
    path = Path(path)
    fix = ("regenerate it (`lightning-kd generate affwild2`), write `features` (n_frames, D) with np.savez, or set "
           "data.init_args.audio_features: raw (log-mel from the sound track of videos/<raw>.mp4|.avi)")
    return _features(path, _npz(path, ("features",), "Aff-Wild2 audio feature file", fix)["features"], fix)


def read_audio_track(path: str | Path, rate: int) -> tuple[np.ndarray, float]:
    """``(mono samples (n,) float32 at rate Hz, video frame rate)`` of a raw video, decoded with PyAV.

    Raises:
        DataFileNotFoundError: no such file.
        DataFormatError: unreadable, without a video stream (its frame rate numbers the frames), without a sound track,
            or damaged (one line naming the file).
    """
    import av

    path = Path(path)
    if not path.is_file():
        raise DataFileNotFoundError(f"{path}: raw video not found. Fix: {_FIX}.")
    try:
        container = av.open(str(path))
    except Exception as e:  # noqa: BLE001 - av raises many error types
        raise _err(path, f"is not a readable video ({type(e).__name__}: {e})") from None
    with container:
        if not container.streams.video or not container.streams.audio:
            raise _err(path, f"holds no {'video' if not container.streams.video else 'audio'} stream",
                       "use the raw video with its sound track, or set data.init_args.audio_features: file")
        vs = container.streams.video[0]
        fps_rate = vs.average_rate or vs.base_rate or vs.guessed_rate
        if not fps_rate or float(fps_rate) <= 0:
            raise _err(path, "states no video frame rate")
        resampler = av.AudioResampler(format="flt", layout="mono", rate=int(rate))
        chunks: list[np.ndarray] = []
        try:
            for frame in container.decode(container.streams.audio[0]):
                chunks += [f.to_ndarray().reshape(-1) for f in resampler.resample(frame)]
            chunks += [f.to_ndarray().reshape(-1) for f in resampler.resample(None)]
        except Exception as e:  # noqa: BLE001
            raise _err(path, f"has a damaged sound track ({type(e).__name__}: {e})") from None
    if not chunks:
        raise _err(path, "holds no decodable audio")
    return np.concatenate(chunks).astype(np.float32), float(fps_rate)
