"""Face video input of the EEG + face data sets: frames decoded with PyAV, and the per-trial face feature file.

Videos: any container / codec PyAV's ffmpeg decodes (DEAP's and MAHNOB-HCI's ``.avi`` files, the generators'
MJPEG ``.avi``). Frames are decoded in order (one pass, no seeking, so the frame numbering is exact for every
codec) and frame ``i`` is taken to show time ``i / fps``; the frame for time ``t`` is ``floor(t * fps)``,
clipped to the last frame.

Face feature file (``face_features: file``): ``.npz`` with ``features`` ``(n_frames, D)`` float32, one row per
video frame, and ``fps`` (scalar) = rows per second; row ``i`` describes time ``i / fps``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from lightning_kd.checkpoint import DataFileNotFoundError, DataFormatError

__all__ = ["frame_indices", "read_face_features", "read_frames", "video_info"]

_FIX = "re-extract or re-download this file, or regenerate the data set (`lightning-kd generate deap|mahnob`)"


def _err(path: Path, what: str, fix: str = _FIX) -> DataFormatError:
    return DataFormatError(f"{path}: {what}. Fix: {fix}.")


def _open(path: Path):
    import av

    if not path.is_file():
        raise DataFileNotFoundError(f"{path}: face video not found. Fix: {_FIX}.")
    try:
        container = av.open(str(path))
    except Exception as e:  # noqa: BLE001 - av raises many error types (InvalidDataError, ...)
        raise _err(path, f"is not a readable video ({type(e).__name__}: {e})") from None
    if not container.streams.video:
        container.close()
        raise _err(path, "holds no video stream")
    return container


def video_info(path: str | Path) -> tuple[float, int, float]:
    """``(fps, n_frames, duration_s)`` of a video, from a full decoding pass (exact frame count)."""
    path = Path(path)
    with _open(path) as container:
        stream = container.streams.video[0]
        fps = _fps(path, stream)
        n = 0
        try:
            for _ in container.decode(stream):
                n += 1
        except Exception as e:  # noqa: BLE001
            raise _err(path, f"is truncated or damaged after {n} frames ({type(e).__name__}: {e})") from None
        if n == 0:
            raise _err(path, "holds no decodable frame")
        _check_complete(path, stream, n)
    return fps, n, n / fps


def _check_complete(path: Path, stream, decoded: int) -> None:
    """A container whose header states more frames than decode (a file cut short) is refused."""
    stated = int(stream.frames or 0)
    if stated > decoded:
        raise _err(path, f"is truncated: its header states {stated} frames, {decoded} decode")


def _fps(path: Path, stream) -> float:
    rate = stream.average_rate or stream.base_rate or stream.guessed_rate
    if not rate or float(rate) <= 0:
        raise _err(path, "states no frame rate")
    return float(rate)


def frame_indices(times_s: np.ndarray, fps: float, n_frames: int) -> np.ndarray:
    """Frame shown at each time: ``floor(t * fps)`` clipped to ``[0, n_frames - 1]`` (int64)."""
    idx = np.floor(np.asarray(times_s, dtype=np.float64) * fps + 1e-9).astype(np.int64)
    return np.clip(idx, 0, n_frames - 1)


def read_frames(path: str | Path, times_s: np.ndarray) -> np.ndarray:
    """The frames shown at ``times_s`` (seconds from the video's start): ``(n, H, W, 3)`` uint8 RGB.

    One decoding pass keeps only the frames asked for. A time past the end gives the last frame.

    Raises:
        DataFileNotFoundError: no such file.
        DataFormatError: unreadable, without video stream or frames, or damaged before its end (one line naming
            the file).
    """
    path = Path(path)
    times_s = np.asarray(times_s, dtype=np.float64).reshape(-1)
    with _open(path) as container:
        stream = container.streams.video[0]
        fps = _fps(path, stream)
        want = np.floor(times_s * fps + 1e-9).astype(np.int64).clip(0)
        needed = set(want.tolist())
        top = max(needed) if needed else 0
        kept: dict[int, np.ndarray] = {}
        n, last = 0, None
        try:
            for frame in container.decode(stream):
                if n in needed:
                    kept[n] = frame.to_ndarray(format="rgb24")
                last, n = frame, n + 1
                if n > top:
                    break
        except Exception as e:  # noqa: BLE001
            raise _err(path, f"is truncated or damaged after {n} frames ({type(e).__name__}: {e})") from None
        if last is None:
            raise _err(path, "holds no decodable frame")
        final = n - 1
        if (want > final).any():
            _check_complete(path, stream, n)
        if final not in kept and (want > final).any():
            kept[final] = last.to_ndarray(format="rgb24")
    if len(want) == 0:
        return np.empty((0, last.height, last.width, 3), dtype=np.uint8)
    return np.stack([kept[min(int(i), final)] for i in want])


def read_face_features(path: str | Path) -> tuple[np.ndarray, float]:
    """``(features (n_frames, D) float32, fps)`` of a per-trial face feature file (see the module doc)."""
    path = Path(path)
    fix = ("regenerate it (`lightning-kd generate deap|mahnob`) or write `features` (n_frames, D) and `fps` with "
           "np.savez")
    if not path.is_file():
        raise DataFileNotFoundError(f"{path}: face feature file not found. Fix: {fix}, or use face_features: backbone.")
    try:
        with np.load(path, allow_pickle=False) as z:
            missing = [k for k in ("features", "fps") if k not in z.files]
            if missing:
                raise _err(path, f"lacks key(s) {missing}; present: {sorted(z.files)}", fix)
            feats, fps = np.asarray(z["features"]), float(np.asarray(z["fps"]).reshape(-1)[0])
    except DataFormatError:
        raise
    except Exception as e:  # noqa: BLE001 - truncated / not-an-npz files raise many types
        raise _err(path, f"is not a readable .npz file ({type(e).__name__}: {e})", fix) from None
    if feats.ndim != 2 or len(feats) == 0 or not np.issubdtype(feats.dtype, np.floating):
        raise _err(path, f"key 'features' must be a non-empty float (n_frames, D) array, got {feats.dtype} "
                   f"{feats.shape}", fix)
    if not np.isfinite(feats).all():
        row = int(np.argmin(np.isfinite(feats).all(axis=1)))
        raise _err(path, f"key 'features' holds NaN or inf (frame {row})", fix)
    if not (np.isfinite(fps) and fps > 0):
        raise _err(path, f"key 'fps' must be > 0, got {fps}", fix)
    return feats.astype(np.float32, copy=False), fps
