"""Log-mel frames of a sound track at given times (numpy / scipy only), and their on-disk cache.

:func:`log_mel_at`: per time ``t``, a Hann-windowed frame of ``round(window_s * rate)`` samples centred on ``t``
(zero-padded past either end), its power spectrum (``numpy.fft.rfft``) through a triangular mel filterbank
(:func:`mel_filterbank`, HTK mel scale ``2595 log10(1 + f / 700)``, 0 Hz .. Nyquist), then ``log(energy + 1e-10)``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from lightning_kd.data.clip_features import FeatureCache, array_fingerprint
from lightning_kd.io import file_sha256

__all__ = ["CACHE_VERSION", "cached_log_mel", "log_mel_at", "mel_filterbank"]

#: bump when a code change alters cached outputs
CACHE_VERSION = 1


def mel_filterbank(rate: int, n_fft: int, n_mels: int) -> np.ndarray:
    """``(n_mels, n_fft // 2 + 1)`` triangular filters equally spaced on the HTK mel scale from 0 Hz to ``rate / 2``."""
    def to_mel(f):
        return 2595.0 * np.log10(1.0 + np.asarray(f) / 700.0)

    edges = 700.0 * (10.0 ** (np.linspace(0.0, to_mel(rate / 2), n_mels + 2) / 2595.0) - 1.0)
    freqs = np.fft.rfftfreq(n_fft, 1.0 / rate)
    lo, mid, hi = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    return np.maximum(0.0, np.minimum((freqs - lo) / (mid - lo), (hi - freqs) / (hi - mid)))


def log_mel_at(samples: np.ndarray, rate: int, times_s: np.ndarray, window_s: float = 0.064,
               n_mels: int = 32) -> np.ndarray:
    """``(len(times_s), n_mels)`` float32 log-mel energies of mono ``samples`` around each time (module doc)."""
    n_fft = max(2, int(round(window_s * rate)))
    half = n_fft // 2
    x = np.pad(np.asarray(samples, dtype=np.float64).reshape(-1), (half, n_fft))
    centres = np.clip(np.rint(np.asarray(times_s, dtype=np.float64) * rate).astype(np.int64), 0, len(x) - n_fft - half)
    frames = np.lib.stride_tricks.sliding_window_view(x, n_fft)[centres]  # frame i starts at centre - half (unpadded)
    power = np.abs(np.fft.rfft(frames * np.hanning(n_fft), axis=-1)) ** 2
    return np.log(power @ mel_filterbank(rate, n_fft, n_mels).T + 1e-10).astype(np.float32)


def cached_log_mel(video: Path, frames: np.ndarray, rate: int, window_s: float, n_mels: int, cache: FeatureCache,
                   decode) -> np.ndarray:
    """``(len(frames), n_mels)``: :func:`log_mel_at` around the video frames ``frames`` (1-based; frame ``k`` at
    ``(k - 1) / fps``) of the sound track ``decode(video, rate) -> (samples, fps)``, cached in ``cache`` keyed by the
    video's bytes (sha256), the frames and the settings (a hit never decodes)."""
    frames = np.asarray(frames, dtype=np.int64)
    key = {"kind": "log-mel", "version": CACHE_VERSION, "video_sha256": file_sha256(video), "rate": int(rate),
           "window_s": float(window_s), "n_mels": int(n_mels), "frames": array_fingerprint(frames)}
    hit = cache.load(key, required=("features",))
    if hit is not None:
        return hit["features"].astype(np.float32, copy=False)
    samples, fps = decode(video, rate)
    feats = log_mel_at(samples, rate, (frames - 1) / fps, window_s, n_mels)
    cache.save(key, {"features": feats})
    return feats
