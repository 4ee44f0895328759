"""Encoders of multichannel biosignals (EMG / ECG / GSR windows, ``(B, C, T)``) into one ``out_dim`` vector (512),
the physiological backbone of MT-PKDOT (Aslam et al., arXiv 2408.09035, Sec. "teachers").

* ``kind="spectrogram"`` (the paper's): a log-magnitude STFT per channel (``log1p |STFT|``, Hann window
  ``n_fft``, hop ``hop``) gives a ``(B, C, n_fft // 2 + 1, frames)`` image for a timm 2-D backbone with
  ``in_chans = C`` (``resnet18``: a 1-channel stem for one EMG channel), built randomly initialised
  (``pretrained=False``; the released code also replaces the stem of its ImageNet ResNet-18 with a fresh
  1-channel convolution), pooled features -> Linear to ``out_dim`` when the widths differ.
* ``kind="resnet1d"`` (cheaper, for CPU runs): a 1-D ResNet on the raw signal: a stride-2 stem
  (``Conv1d(C, widths[0], stem_kernel)``, BN, ReLU, max-pool), one stage of ``blocks`` basic blocks per width
  (3-tap convolutions, stride 2 from the second stage on, 1 x 1 projection shortcuts), global average pooling,
  Linear to ``out_dim`` when ``widths[-1]`` differs.
* ``kind="envelope"`` (the cheapest, position-aware): the log-RMS envelope per channel over windows of ``hop``
  samples (``log(sqrt(mean x^2) + 1e-6)``, the usual EMG amplitude feature), flattened over channels and windows,
  then an MLP ``Linear(C * windows, widths[-1]) -> ReLU -> Linear(out_dim)``. A subject's gain is an additive
  constant of the log envelope, so the MLP can compare the envelope's parts (e.g. the response mid-window against
  its edges) where a globally pooled CNN sees mostly the mean amplitude.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import Tensor, nn

from lightning_kd.checkpoint import ConfigError
from lightning_kd.options import options

__all__ = ["BasicBlock1d", "BiosignalEncoder", "BiosignalEncoderOptions", "log_rms_envelope", "log_spectrogram"]


@dataclass(frozen=True)
class BiosignalEncoderOptions:
    """Options of :class:`BiosignalEncoder`.

    Attributes:
        kind: ``"resnet1d"`` (raw signal), ``"spectrogram"`` (STFT image through a timm backbone) or ``"envelope"``
            (log-RMS envelope through an MLP; needs ``samples``).
        out_dim: width of the output embedding (512).
        widths / blocks / stem_kernel: the 1-D ResNet's stage widths (64, 128, 256, 512), basic blocks per
            stage (2) and stem kernel (7).
        backbone: timm model name for ``"spectrogram"`` (``resnet18``).
        n_fft / hop: STFT size and hop in samples (256 / 32 at 512 Hz: 0.5 s windows every 62.5 ms); ``hop`` is
            also the envelope's window (``"envelope"``).
    """

    kind: Literal["resnet1d", "spectrogram", "envelope"] = "resnet1d"
    out_dim: int = 512
    widths: tuple[int, ...] = (64, 128, 256, 512)
    blocks: int = 2
    stem_kernel: int = 7
    backbone: str = "resnet18"
    n_fft: int = 256
    hop: int = 32


def log_spectrogram(x: Tensor, n_fft: int, hop: int) -> Tensor:
    """``(B, C, T)`` -> ``(B, C, n_fft // 2 + 1, frames)``: ``log1p |STFT|`` per channel (Hann window, centred)."""
    b, c, t = x.shape
    spec = torch.stft(x.reshape(b * c, t), n_fft=n_fft, hop_length=hop,
                      window=torch.hann_window(n_fft, device=x.device, dtype=x.dtype), return_complex=True)
    return torch.log1p(spec.abs()).reshape(b, c, *spec.shape[1:])


def log_rms_envelope(x: Tensor, hop: int, windows: int) -> Tensor:
    """``(B, C, T)`` -> ``(B, C, windows)``: ``log(sqrt(mean x^2) + 1e-6)`` over consecutive windows of ``hop`` samples
    (the first ``windows * hop`` samples)."""
    b, c, _ = x.shape
    seg = x[..., : windows * hop].reshape(b, c, windows, hop).float()
    return torch.log(seg.pow(2).mean(-1).sqrt() + 1e-6).to(x.dtype)


class BasicBlock1d(nn.Module):
    """Two 3-tap ``Conv1d``-BN layers with a residual (1 x 1 projection when the shape changes), then ReLU."""

    def __init__(self, cin: int, cout: int, stride: int = 1) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv1d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm1d(cout), nn.ReLU(inplace=True),
            nn.Conv1d(cout, cout, 3, 1, 1, bias=False), nn.BatchNorm1d(cout))
        self.skip = nn.Identity() if cin == cout and stride == 1 else nn.Sequential(
            nn.Conv1d(cin, cout, 1, stride, bias=False), nn.BatchNorm1d(cout))
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        return self.act(self.body(x) + self.skip(x))


class BiosignalEncoder(nn.Module):
    """``(B, C, T)`` biosignal windows -> ``(B, out_dim)`` (see the module docstring).

    Args:
        channels: ``C``.
        samples: ``T`` (needed by ``kind="envelope"`` only).
        opts: :class:`BiosignalEncoderOptions` (instance, mapping or None); ``overrides`` replace single fields.

    Raises:
        ConfigError: an unknown kind or timm backbone, or no stage widths.
    """

    def __init__(self, channels: int, opts: BiosignalEncoderOptions | dict[str, Any] | None = None,
                 samples: int | None = None, **overrides: Any) -> None:
        super().__init__()
        o = self.options = options(BiosignalEncoderOptions, opts, **overrides)
        self.channels, self.out_dim = int(channels), o.out_dim
        if o.kind == "resnet1d":
            if not o.widths or o.blocks < 1:
                raise ConfigError(f"biosignal encoder: resnet1d needs stage widths and blocks >= 1, got widths "
                                  f"{list(o.widths)}, blocks {o.blocks}")
            layers: list[nn.Module] = [
                nn.Conv1d(self.channels, o.widths[0], o.stem_kernel, 2, o.stem_kernel // 2, bias=False),
                nn.BatchNorm1d(o.widths[0]), nn.ReLU(inplace=True), nn.MaxPool1d(3, 2, 1)]
            cin = o.widths[0]
            for i, w in enumerate(o.widths):
                for j in range(o.blocks):
                    layers.append(BasicBlock1d(cin, w, 2 if i > 0 and j == 0 else 1))
                    cin = w
            layers += [nn.AdaptiveAvgPool1d(1), nn.Flatten()]
            self.body = nn.Sequential(*layers)
            width = cin
        elif o.kind == "spectrogram":
            import timm

            if not timm.is_model(o.backbone):
                raise ConfigError(f"biosignal encoder: {o.backbone!r} is not a timm model; set backbone to a name "
                                  "from timm.list_models(), e.g. resnet18 (resnet10t for a small one)")
            self.body = timm.create_model(o.backbone, pretrained=False, in_chans=self.channels, num_classes=0)
            width = self.body.num_features
        elif o.kind == "envelope":
            if samples is None or samples < o.hop or not o.widths:
                raise ConfigError(f"biosignal encoder: envelope needs the window length in samples (>= hop {o.hop}) "
                                  f"and a hidden width (widths), got samples={samples}, widths {list(o.widths)}")
            self.windows = int(samples) // o.hop
            self.body = nn.Sequential(nn.Flatten(), nn.Linear(self.channels * self.windows, o.widths[-1]), nn.ReLU())
            width = o.widths[-1]
        else:
            raise ConfigError(f"biosignal encoder: kind must be 'resnet1d', 'spectrogram' or 'envelope', got "
                              f"{o.kind!r}")
        self.out = nn.Linear(width, o.out_dim) if width != o.out_dim else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        """``(B, C, T)`` -> ``(B, out_dim)``."""
        if x.ndim != 3 or x.shape[1] != self.channels:
            raise ValueError(f"biosignal encoder expects (B, {self.channels}, T) signals, got {tuple(x.shape)}")
        if self.options.kind == "spectrogram":
            x = log_spectrogram(x, self.options.n_fft, self.options.hop)
        elif self.options.kind == "envelope":
            x = log_rms_envelope(x, self.options.hop, self.windows)
        return self.out(self.body(x))
