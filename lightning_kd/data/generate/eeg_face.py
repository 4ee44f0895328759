"""The signal model of the EEG + face generators (DEAP and MAHNOB-HCI layouts): ratings, EEG and face latents
of one trial, drawn from one ``numpy.random.Generator`` (seeded by the generator's ``--seed``).

Per trial, two label factors ``z = (z_valence, z_arousal) ~ N(0, I)`` give the self-assessment ratings
``r = clip(5 + 2 z, 1, 9)`` rounded to 0.01 (so ``r >= 5`` iff ``z >= 0``, about half the trials high). A writer's
``rating_noise`` makes the ratings noisy self-reports ``z + rating_noise * n`` of the felt ``z`` that the EEG and
the face see (``write_deap(..., rating_noise=0.5)``).

* **EEG** (:func:`eeg_trial`, the 32 DEAP channels in Geneva order): per channel, pink-like background noise plus
  a 10 Hz alpha rhythm. Arousal scales the beta band (18-26 Hz) amplitude of the frontal and central channels by
  ``exp(0.8 e_a)``; valence sets the frontal alpha asymmetry, left-hemisphere alpha scaled by ``exp(0.5 e_v)`` and
  right by ``exp(-0.5 e_v)``, with ``e = W_EEG z + sqrt(1 - W_EEG^2) n_eeg`` (trial-level noise ``n_eeg ~ N(0, I)``)
  and a slow per-second amplitude jitter, so window band powers are noisy views of ``e``.
* **Face** (:func:`face_latent`): per frame, four latents ``(f_valence, f_arousal, u_1, u_2)`` with
  ``f = W_FACE z + sqrt(1 - W_FACE^2) n_face`` (trial-level noise, which averaging frames cannot remove) plus a
  smooth per-frame wobble; ``u`` are label-free nuisance movements.
  :func:`~lightning_kd.data.generate.video.render_face_frames` draws them into frames.

``W_EEG`` (0.92) > ``W_FACE`` (0.6), and the two noises are independent, so the EEG carries label information
beyond the face: EEG + face beats face alone, which is clearly above chance (checked in
``tests/test_data_deap.py``). A subject changes the EEG channel gains (log-normal, sd 0.2) and the face's lighting.
"""

from __future__ import annotations

import numpy as np
from scipy.signal import butter, sosfiltfilt

from lightning_kd.data.eeg_face import DEAP_EEG_CHANNELS

__all__ = ["LABELS", "W_EEG", "W_FACE", "TrialFactors", "draw_factors", "eeg_trial", "face_latent", "ratings",
           "subject_gains"]

#: label factors, in the order of ``TrialFactors.z`` columns
LABELS = ("valence", "arousal")
#: how much of the label factor the EEG / the face latent sees (correlation at trial level)
W_EEG = 0.92
W_FACE = 0.6

_FRONTAL_CENTRAL = {"Fp1", "AF3", "F3", "F7", "FC5", "FC1", "C3", "Fp2", "AF4", "Fz", "F4", "F8", "FC6", "FC2", "Cz",
                    "C4"}
_LEFT_FRONTAL = {"Fp1", "AF3", "F3", "F7", "FC5", "FC1"}
_RIGHT_FRONTAL = {"Fp2", "AF4", "F4", "F8", "FC6", "FC2"}


class TrialFactors:
    """Latent factors of ``n`` trials: ``z`` (n, 2) label factors, ``eeg`` and ``face`` (n, 2) their views."""

    def __init__(self, z: np.ndarray, eeg: np.ndarray, face: np.ndarray) -> None:
        self.z, self.eeg, self.face = z, eeg, face

    def __len__(self) -> int:
        return len(self.z)


def draw_factors(rng: np.random.Generator, n: int, w_eeg: float = W_EEG, w_face: float = W_FACE) -> TrialFactors:
    """Label factors of ``n`` trials and their EEG / face views (see the module doc)."""
    z = rng.standard_normal((n, 2))
    eeg = w_eeg * z + np.sqrt(1 - w_eeg**2) * rng.standard_normal((n, 2))
    face = w_face * z + np.sqrt(1 - w_face**2) * rng.standard_normal((n, 2))
    return TrialFactors(z, eeg, face)


def ratings(z: np.ndarray) -> np.ndarray:
    """Ratings on 1..9 of label factors ``z``: ``clip(5 + 2 z, 1, 9)`` rounded to 0.01 (float64)."""
    return np.round(np.clip(5.0 + 2.0 * np.asarray(z, dtype=np.float64), 1.0, 9.0), 2)


def _band(rng: np.random.Generator, shape: tuple[int, int], lo: float, hi: float, rate: float) -> np.ndarray:
    sos = butter(4, [lo, hi], btype="bandpass", fs=rate, output="sos")
    x = sosfiltfilt(sos, rng.standard_normal(shape), axis=-1)
    return x / (x.std(axis=-1, keepdims=True) + 1e-12)


def eeg_trial(rng: np.random.Generator, eeg_view: np.ndarray, samples: int, rate: float = 128.0,
              gains: np.ndarray | None = None, channels: tuple[str, ...] = DEAP_EEG_CHANNELS) -> np.ndarray:
    """One trial's EEG ``(len(channels), samples)`` float64 in microvolt-like units.

    Args:
        eeg_view: the trial's ``(e_valence, e_arousal)``.
        samples: samples per channel at ``rate``.
        gains: per-channel gain of the subject (default 1).
    """
    c = len(channels)
    background = np.cumsum(rng.standard_normal((c, samples)), axis=-1)
    background -= np.linspace(0, 1, samples)[None] * background[:, -1:]  # no drift over the trial
    background = background / (background.std(axis=-1, keepdims=True) + 1e-12) * 8.0
    background += 3.0 * rng.standard_normal((c, samples))
    alpha = _band(rng, (c, samples), 8.0, 12.0, rate)
    beta = _band(rng, (c, samples), 18.0, 26.0, rate)
    seconds = max(1, int(np.ceil(samples / rate)))
    jitter = np.exp(0.25 * rng.standard_normal((c, seconds)))  # slow amplitude jitter, one value per second
    jitter = np.repeat(jitter, int(rate), axis=1)[:, :samples]
    e_val, e_aro = float(eeg_view[0]), float(eeg_view[1])
    alpha_amp = np.full(c, 4.0)
    beta_amp = np.full(c, 2.0)
    for i, name in enumerate(channels):
        if name in _FRONTAL_CENTRAL:
            beta_amp[i] *= np.exp(0.8 * e_aro)
        if name in _LEFT_FRONTAL:
            alpha_amp[i] *= np.exp(0.5 * e_val)
        elif name in _RIGHT_FRONTAL:
            alpha_amp[i] *= np.exp(-0.5 * e_val)
    x = background + jitter * (alpha_amp[:, None] * alpha + beta_amp[:, None] * beta)
    if gains is not None:
        x *= np.asarray(gains, dtype=np.float64)[:, None]
    return x


def face_latent(rng: np.random.Generator, face_view: np.ndarray, n_frames: int, fps: float) -> np.ndarray:
    """Per-frame face latents ``(n_frames, 4)``: ``(f_valence, f_arousal, u_1, u_2)`` (see the module doc)."""
    t = np.arange(n_frames) / fps
    out = np.empty((n_frames, 4))
    for j in range(4):
        period = rng.uniform(3.0, 9.0)
        wobble = np.sin(2 * np.pi * t / period + rng.uniform(0, 2 * np.pi))
        base = float(face_view[j]) if j < 2 else 0.0
        scale = 0.3 if j < 2 else 1.0
        out[:, j] = base + scale * wobble + 0.15 * rng.standard_normal(n_frames)
    return out


def subject_gains(rng: np.random.Generator, n_channels: int = len(DEAP_EEG_CHANNELS)) -> np.ndarray:
    """A subject's per-channel EEG gains: log-normal with sd 0.2."""
    return np.exp(0.2 * rng.standard_normal(n_channels))

