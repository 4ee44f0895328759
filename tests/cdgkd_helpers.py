"""Test helpers for CDGKD: a tiny EEG + face datamodule of random tensors and tiny model options.

``TinyEEGFaceData`` mimics the EEG + face datamodules' contract (inputs ``eeg (B, C, T)`` and ``face (B, F, D)``,
``feature_dims = {"eeg": C, "face": D}``, ``seq_lens = {"eeg": T, "face": F}``, binary targets), with the label
carried by the modalities named in ``informative`` and pure noise in the others. Importable by the CLI as
``cdgkd_helpers.TinyEEGFaceData`` (tests/ is on ``sys.path`` under pytest).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import torch

from lightning_kd.data.datamodule import InMemoryDataModule
from lightning_kd.data.split import SplitTensors

TINY_EEG = {"windows": [0.5, 0.25, 0.125], "sampling_rate": 32, "num_t": 4, "num_s": 4, "pool_t": 4, "pool_s": 2,
            "pool_fusion": 2}
TINY_VISUAL = {"channels": 8, "feature_kernel": 4, "feature_stride": 2, "frame_kernel": 3, "dims": [8, 8],
               "heads": 2, "ff": 16, "fuse_dim": 4, "out_dim": 16, "dropout": 0.0}
TINY_NET = {"hidden": 16}


class TinyEEGFaceData(InMemoryDataModule):
    """Random EEG + face windows; the label is in the ``informative`` modalities only.

    EEG: Gaussian noise plus, where informative, a 4 Hz sine of amplitude ``strength`` (sign = label) on every
    channel. Face: Gaussian noise plus, where informative, ``strength`` x (2 label - 1) on the first half of
    the features of every frame.
    """

    def __init__(self, n: Sequence[int] = (64, 16, 16), channels: int = 4, samples: int = 64, frames: int = 5,
                 dim: int = 16, informative: Sequence[str] = ("eeg", "face"), strength: float = 1.5,
                 data_seed: int = 0, batch_size: int = 16, seed: int | None = None) -> None:
        super().__init__(batch_size=batch_size, seed=seed)
        self.n, self.channels, self.samples, self.frames, self.dim = tuple(n), channels, samples, frames, dim
        self.informative, self.strength, self.data_seed = tuple(informative), strength, data_seed

    def load_splits(self) -> dict[str, SplitTensors]:
        g = torch.Generator().manual_seed(self.data_seed)
        out = {}
        for name, n in zip(("train", "valid", "test"), self.n):
            y = torch.randint(0, 2, (n,), generator=g)
            sign = (2.0 * y - 1.0)[:, None, None]
            eeg = torch.randn(n, self.channels, self.samples, generator=g)
            face = torch.randn(n, self.frames, self.dim, generator=g)
            if "eeg" in self.informative:
                t = torch.arange(self.samples) / 32.0
                eeg = eeg + self.strength * sign * torch.sin(2 * math.pi * 4.0 * t)
            if "face" in self.informative:
                face[..., : self.dim // 2] += self.strength * sign
            out[name] = SplitTensors(inputs={"eeg": eeg, "face": face}, masks={}, target=y,
                                     ids=[f"{name}_{i}" for i in range(n)])
        return out

    @property
    def feature_dims(self) -> dict[str, int]:
        return {"eeg": self.channels, "face": self.dim}

    @property
    def seq_lens(self) -> dict[str, int]:
        return {"eeg": self.samples, "face": self.frames}

    @property
    def target_kind(self) -> str:
        return "binary"


def tiny_module_kwargs(**overrides: object) -> dict[str, object]:
    """Init args of a tiny CDGKD for :class:`TinyEEGFaceData` defaults."""
    kw: dict[str, object] = {"feature_dims": {"eeg": 4, "face": 16}, "seq_lens": {"eeg": 64, "face": 5},
                             "eeg": TINY_EEG, "visual": TINY_VISUAL, "net": TINY_NET, "lr": 3e-3}
    kw.update(overrides)
    return kw


def save_tiny(path: Path, role: str = "teacher", seed: int = 0, logit_scale: float = 1.0, **overrides: object) -> Path:
    """Write a real checkpoint of a tiny CDGKD (freshly initialised with ``torch.manual_seed(seed)``) through a
    Trainer, as ``lightning-kd fit`` would: the teacher loader reads it like any stage's best checkpoint.
    ``logit_scale`` multiplies the last layer (a fresh network's logits are near 0: a confident teacher has
    something to teach)."""
    import lightning.pytorch as pl

    from lightning_kd.methods.cdgkd import CDGKD

    torch.manual_seed(seed)
    module = CDGKD(**tiny_module_kwargs(role=role, **overrides))
    with torch.no_grad():
        for p in module.net.head[-1].parameters():
            p.mul_(logit_scale)
    trainer = pl.Trainer(logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, max_epochs=0, accelerator="cpu", devices=1)
    trainer.strategy.connect(module)
    trainer.save_checkpoint(path)
    return Path(path)
