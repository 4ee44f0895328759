"""Writers of face videos for the EEG + face generators (DEAP, MAHNOB-HCI): ``.avi`` files through PyAV, small
synthetic face frames that carry a latent signal, and the per-trial face feature file.

Video codec (:func:`write_avi`): Motion JPEG (``mjpeg``, bundled with PyAV's ffmpeg) in an AVI container, full-range
4:4:4 chroma at the finest quantiser, so every frame is coded on its own (any frame decodes without its neighbours)
and the pixel values survive coding within a few grey levels. ``container="mp4"`` writes H.264 (``libx264``, 4:4:4
chroma, CRF 8) in an MP4 container instead, as Biovid distributes its videos.

Frames (:func:`render_face_frames`): a fixed face template (skin-coloured ellipse, two eyes, a mouth) on a
background; latent ``k`` of frame ``t`` brightens or darkens region ``k`` of :data:`REGIONS` (eyebrows, mouth
corners, cheeks, forehead) by ``AMPLITUDE * latent[t, k]`` grey levels; a per-video lighting offset and gain
(nuisance) and per-pixel noise are added. The regions are the same for every video, so a feature extractor
learns one mapping for all subjects.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np

from lightning_kd.io import atomic_write_binary

__all__ = ["AMPLITUDE", "REGIONS", "frame_descriptor", "render_face_frames", "write_avi", "write_face_features"]

#: grey levels per unit of latent
AMPLITUDE = 45.0
#: latent index -> region of the face it acts on, as (row centre, column centre, radius) in units of the frame
#: size; more latents than regions reuse them cyclically with the other colour channel
REGIONS: tuple[tuple[float, float, float], ...] = (
    (0.30, 0.50, 0.12),  # forehead / eyebrows
    (0.72, 0.50, 0.10),  # mouth
    (0.55, 0.28, 0.09),  # left cheek
    (0.55, 0.72, 0.09),  # right cheek
)


#: container -> (codec, pixel format, encoder options) of :func:`write_avi`
_CODECS = {
    "avi": ("mjpeg", "yuvj444p", {"qmin": "1", "qmax": "1"}),
    "mp4": ("libx264", "yuv444p", {"crf": "8", "preset": "veryfast"}),
}


def write_avi(path: Path, frames: np.ndarray, fps: float, container: str = "avi", audio: np.ndarray | None = None,
              audio_rate: int = 16000) -> None:
    """Write ``frames`` ``(T, H, W, 3)`` uint8 RGB as an MJPEG ``.avi`` at ``fps`` (temporary file, then renamed);
    ``container="mp4"``: H.264 in an ``.mp4`` (module doc).

    ``H`` and ``W`` must be even (the encoder's constraint); ``T >= 1``. ``audio`` (optional): a mono sound track
    ``(n_samples,)`` float in [-1, 1] at ``audio_rate`` Hz, stored as 16-bit PCM (``pcm_s16le``).
    """
    import av

    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8 or len(frames) == 0:
        raise ValueError(f"frames must be a non-empty (T, H, W, 3) uint8 array, got {frames.shape} {frames.dtype}")
    if frames.shape[1] % 2 or frames.shape[2] % 2:
        raise ValueError(f"frame height and width must be even, got {frames.shape[1]}x{frames.shape[2]}")
    if not fps > 0:
        raise ValueError(f"fps must be > 0, got {fps}")
    if container not in _CODECS:
        raise ValueError(f"container must be one of {sorted(_CODECS)}, got {container!r}")
    rate = Fraction(fps).limit_denominator(1001)
    codec, pix_fmt, options = _CODECS[container]

    def write(f) -> None:
        with av.open(f, mode="w", format=container) as out:
            stream = out.add_stream(codec, rate=rate)
            stream.width, stream.height = int(frames.shape[2]), int(frames.shape[1])
            stream.pix_fmt = pix_fmt
            stream.options = dict(options)
            sound = None if audio is None else out.add_stream("pcm_s16le", rate=int(audio_rate), layout="mono")
            for frame in frames:
                for packet in stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")):
                    out.mux(packet)
            for packet in stream.encode():
                out.mux(packet)
            if sound is not None:
                _encode_pcm(out, sound, audio, int(audio_rate))

    atomic_write_binary(Path(path), write)


def _encode_pcm(container, stream, audio: np.ndarray, rate: int, chunk: int = 4096) -> None:
    """Encode ``audio`` (mono float in [-1, 1]) as 16-bit PCM into ``stream`` of an open PyAV output container."""
    import av

    pcm = np.rint(np.clip(np.asarray(audio, dtype=np.float64).reshape(-1), -1, 1) * 32767).astype(np.int16)
    for i in range(0, len(pcm), chunk):
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(pcm[None, i:i + chunk]), format="s16", layout="mono")
        frame.sample_rate = rate
        for packet in stream.encode(frame):
            container.mux(packet)
    for packet in stream.encode():
        container.mux(packet)


def _template(size: int) -> tuple[np.ndarray, np.ndarray]:
    """The neutral face ``(size, size, 3)`` float and the region masks ``(len(REGIONS), size, size)``."""
    r, c = np.mgrid[0:size, 0:size].astype(np.float64) / size
    img = np.empty((size, size, 3))
    img[:] = (60.0, 70.0, 90.0)  # background
    face = ((r - 0.5) / 0.42) ** 2 + ((c - 0.5) / 0.33) ** 2 <= 1.0
    img[face] = (190.0, 150.0, 125.0)
    for cc in (0.36, 0.64):  # eyes
        img[((r - 0.42) / 0.05) ** 2 + ((c - cc) / 0.07) ** 2 <= 1.0] = (40.0, 40.0, 50.0)
    masks = np.stack([np.exp(-((r - rr) ** 2 + (c - rc) ** 2) / (2 * rad**2)) for rr, rc, rad in REGIONS])
    return img, masks


def render_face_frames(latent: np.ndarray, rng: np.random.Generator, size: int = 32, noise: float = 6.0,
                       lighting: float = 8.0) -> np.ndarray:
    """Face frames ``(T, size, size, 3)`` uint8 whose regions follow ``latent`` ``(T, K)`` (see the module doc).

    Args:
        latent: per-frame latent values (about unit scale).
        rng: draws the per-video lighting (offset ``N(0, lighting)``, gain ``1 + N(0, 0.05)``) and pixel noise.
        size: frame height and width (even).
        noise: std of the per-pixel noise in grey levels.
        lighting: std of the per-video brightness offset in grey levels.
    """
    latent = np.asarray(latent, dtype=np.float64)
    if latent.ndim != 2:
        raise ValueError(f"latent must be (T, K), got shape {latent.shape}")
    t, k = latent.shape
    img, masks = _template(size)
    frames = np.broadcast_to(img, (t, size, size, 3)).copy()
    for j in range(k):
        channel = (j // len(REGIONS)) % 3
        region = masks[j % len(REGIONS)]
        frames[..., channel] += AMPLITUDE * latent[:, j, None, None] * region
        if channel == 0:  # luminance-like change: all channels, the first strongest
            frames[..., 1] += 0.5 * AMPLITUDE * latent[:, j, None, None] * region
    frames = frames * (1.0 + 0.05 * rng.standard_normal()) + lighting * rng.standard_normal()
    frames += noise * rng.standard_normal(frames.shape)
    return np.clip(np.rint(frames), 0, 255).astype(np.uint8)


def frame_descriptor(frames: np.ndarray, grid: int = 4) -> np.ndarray:
    """``(T, grid * grid * 3)`` float32: each frame's mean colour over a ``grid x grid`` tiling, scaled to 0..1.

    The features the generators store in the per-trial face feature file (a stand-in for a pre-extracted face
    embedding; the ``backbone`` option computes learned features from the video instead).
    """
    frames = np.asarray(frames, dtype=np.float32)
    t, h, w, ch = frames.shape
    if h % grid or w % grid:
        raise ValueError(f"frame size {h}x{w} is not a multiple of the grid {grid}")
    pooled = frames.reshape(t, grid, h // grid, grid, w // grid, ch).mean(axis=(2, 4))
    return (pooled.reshape(t, -1) / 255.0).astype(np.float32)


def write_face_features(path: Path, features: np.ndarray, fps: float) -> None:
    """Write the per-trial face feature file: ``.npz`` with ``features`` ``(n_frames, D)`` float32 and ``fps``
    (a float64 scalar), atomically (read by :func:`lightning_kd.data.formats.video.read_face_features`)."""
    arrays = {"features": np.ascontiguousarray(features, dtype=np.float32), "fps": np.float64(fps)}
    atomic_write_binary(Path(path), lambda f: np.savez(f, **arrays))
