"""TSception: multi-scale temporal and spatial (hemispheric) convolutions over EEG (Ding et al., "TSception:
Capturing Temporal Dynamics and Spatial Asymmetry from EEG for Emotion Recognition", IEEE TAC 2022, Sec. III).

Input ``(B, C, T)``: ``C`` electrodes x ``T`` samples at ``sampling_rate`` Hz (CDGKD: 28 x 512 at 128 Hz, 4 s).

* **Dynamic temporal layer**: one ``(1, k_i)`` convolution per window ``w_i`` (``k_i = int(w_i * rate)``;
  0.5 / 0.25 / 0.125 s = 64 / 32 / 16 samples at 128 Hz), ``num_t`` filters each, LeakyReLU, average pooling
  ``(1, pool_t)``; the outputs are concatenated along time, then batch-normalised.
* **Asymmetric spatial layer**: ``global`` = a ``(C, 1)`` kernel over all electrodes (1 row out);
  ``hemisphere`` = a ``(C/2, 1)`` kernel with stride ``(C/2, 1)`` (2 rows out: left, right hemisphere); ``num_s``
  filters, LeakyReLU, pooling ``(1, pool_s)``; rows concatenated, batch-normalised.
* **High-level fusion**: a convolution spanning all spatial rows (``(3, 1)`` for global + hemisphere, as in the
  paper), LeakyReLU, pooling ``(1, pool_fusion)``, batch norm.
* **Readout**: ``flatten`` (``num_s x time``; what CDGKD's released encoder feeds its fusion head, 32 x 22 = 704
  for 28 x 512) or ``mean`` over time (``num_s``; TSception's own readout before its classifier).

Channel grouping (the hemisphere kernel): rows ``0 .. C/2-1`` must be the LEFT hemisphere and rows
``C/2 .. C-1`` the RIGHT one, in mirrored order. DEAP's Geneva order without the midline
(:data:`lightning_kd.data.eeg_face.EEG_CHANNELS_28`) is exactly that: Fp1, AF3, F3, F7, FC5, FC1, C3, T7, CP5,
CP1, P3, P7, PO3, O1 | Fp2, AF4, F4, F8, FC6, FC2, C4, T8, CP6, CP2, P4, P8, PO4, O2 (pair ``i`` with ``i + 14``).

Teacher-assistant variants of CDGKD (IJCAI 2025) shrink this encoder through the options: TA1 = windows
``(0.5, 0.125)`` and one spatial convolution, TA2 = window ``(0.5,)`` and one spatial convolution. The released
TA code uses a ``(10, 1)`` kernel with stride 10 over the 28 rows, which silently ignores electrodes 20-27;
we keep a whole-head kernel (``global`` or ``hemisphere``) instead.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from lightning_kd.checkpoint import ConfigError
from lightning_kd.options import options

__all__ = ["SPATIAL_KERNELS", "TSception", "TSceptionOptions"]

SPATIAL_KERNELS = ("global", "hemisphere")


@dataclass(frozen=True)
class TSceptionOptions:
    """Options of :class:`TSception` (defaults: the paper's and CDGKD's teacher).

    Attributes:
        windows: temporal kernel lengths in seconds (0.5, 0.25, 0.125).
        spatial: spatial kernels, any of ``global`` ``(C, 1)`` and ``hemisphere`` ``(C/2, 1)``.
        num_t / num_s: temporal / spatial filters (64 / 32).
        pool_t / pool_s / pool_fusion: average-pooling widths after the temporal, spatial and fusion layers
            (8 / 2 / 4: TSception's ``pool``, ``pool * 0.25`` and 4).
        sampling_rate: Hz of the input (128).
        readout: ``flatten`` (CDGKD) or ``mean`` over time (TSception).
    """

    windows: tuple[float, ...] = (0.5, 0.25, 0.125)
    spatial: tuple[str, ...] = ("global", "hemisphere")
    num_t: int = 64
    num_s: int = 32
    pool_t: int = 8
    pool_s: int = 2
    pool_fusion: int = 4
    sampling_rate: int = 128
    readout: str = "flatten"


def _block(cin: int, cout: int, kernel: tuple[int, int], stride: tuple[int, int], pool: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, kernel, stride=stride), nn.LeakyReLU(),
                         nn.AvgPool2d((1, pool), stride=(1, pool)))


class TSception(nn.Module):
    """TSception feature extractor: ``(B, C, T)`` EEG -> ``(B, out_dim)`` (see the module docstring).

    Args:
        channels: electrodes ``C`` (even when the ``hemisphere`` kernel is used).
        samples: samples ``T`` per window.
        opts: :class:`TSceptionOptions` (instance, mapping or None); ``overrides`` replace single fields.

    Raises:
        ConfigError: an unknown spatial kernel or readout, an odd channel count for the hemisphere kernel, or a
            window too short for the temporal kernels and pools.
    """

    def __init__(self, channels: int, samples: int, opts: TSceptionOptions | dict[str, Any] | None = None,
                 **overrides: Any) -> None:
        super().__init__()
        o = self.options = options(TSceptionOptions, opts, **overrides)
        self.channels, self.samples = int(channels), int(samples)
        bad = [s for s in o.spatial if s not in SPATIAL_KERNELS]
        if bad or not o.spatial or len(set(o.spatial)) != len(o.spatial):
            raise ConfigError(f"TSception spatial kernels must be distinct names from {SPATIAL_KERNELS}, got "
                              f"{list(o.spatial)}")
        if o.readout not in ("flatten", "mean"):
            raise ConfigError(f"TSception readout must be 'flatten' or 'mean', got {o.readout!r}")
        if not o.windows:
            raise ConfigError("TSception needs at least one temporal window")
        if "hemisphere" in o.spatial and self.channels % 2:
            raise ConfigError(f"TSception's hemisphere kernel needs an even number of channels (left half, right "
                              f"half), got {self.channels}")
        kernels = [int(w * o.sampling_rate) for w in o.windows]
        widths = [(self.samples - k + 1) // o.pool_t for k in kernels]
        if min(kernels) < 1 or min(widths) < 1:
            raise ConfigError(f"TSception: windows {list(o.windows)} s at {o.sampling_rate} Hz (kernels {kernels}) "
                              f"with pool_t {o.pool_t} do not fit {self.samples} samples; use shorter windows or "
                              "longer EEG windows")
        self.temporal = nn.ModuleList(_block(1, o.num_t, (1, k), (1, 1), o.pool_t) for k in kernels)
        self.bn_t = nn.BatchNorm2d(o.num_t)
        half = self.channels // 2
        rows = {"global": (self.channels, 1), "hemisphere": (half, 2)}
        self.spatial = nn.ModuleList(
            _block(o.num_t, o.num_s, (rows[s][0], 1), (rows[s][0], 1), o.pool_s) for s in o.spatial)
        self.bn_s = nn.BatchNorm2d(o.num_s)
        height = sum(rows[s][1] for s in o.spatial)  # 3 for global + hemisphere: the paper's (3, 1) fusion kernel
        self.fusion = _block(o.num_s, o.num_s, (height, 1), (1, 1), o.pool_fusion)
        self.bn_fusion = nn.BatchNorm2d(o.num_s)
        time = sum(widths) // o.pool_s // o.pool_fusion
        if time < 1:
            raise ConfigError(f"TSception: {self.samples} samples leave no time step after pooling "
                              f"({o.pool_t}, {o.pool_s}, {o.pool_fusion}); lower the pools")
        self.time_steps = time
        self.out_dim = o.num_s * time if o.readout == "flatten" else o.num_s

    def forward(self, eeg: Tensor) -> Tensor:
        """``(B, C, T)`` -> ``(B, out_dim)``."""
        if eeg.ndim != 3 or eeg.shape[1:] != (self.channels, self.samples):
            raise ValueError(f"TSception expects EEG (B, {self.channels}, {self.samples}), got {tuple(eeg.shape)}")
        x = eeg.unsqueeze(1)  # (B, 1, C, T)
        x = self.bn_t(torch.cat([t(x) for t in self.temporal], dim=-1))  # (B, num_t, C, T')
        x = self.bn_s(torch.cat([s(x) for s in self.spatial], dim=2))  # (B, num_s, rows, T'')
        x = self.bn_fusion(self.fusion(x))  # (B, num_s, 1, time)
        return x.flatten(1) if self.options.readout == "flatten" else x.mean(-1).flatten(1)
