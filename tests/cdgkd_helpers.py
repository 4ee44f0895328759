"""Test helpers for CDGKD: a tiny EEG + face datamodule of random tensors and tiny model options.

``TinyEEGFaceData`` mimics the EEG + face datamodules' contract (inputs ``eeg (B, C, T)`` and ``face (B, F, D)``,
``feature_dims = {"eeg": C, "face": D}``, ``seq_lens = {"eeg": T, "face": F}``, binary targets), with the label
carried by the modalities named in ``informative`` and pure noise in the others. Importable by the CLI as
``cdgkd_helpers.TinyEEGFaceData`` (tests/ is on ``sys.path`` under pytest).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

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


# -- the several-teachers API (lightning_kd.distill.teacher, built in parallel): a stand-in for these tests ----
def install_teacher_shim(monkeypatch) -> None:  # noqa: ANN001 - pytest's MonkeyPatch
    """Give TeacherMixin ``init_teachers`` / ``teachers`` / ``teachers_forward`` when it lacks them, holding
    teachers set by :func:`set_teachers` (loading checkpoints is the real API's job, not tested here)."""
    from lightning_kd.distill.teacher import TeacherMixin

    if not hasattr(TeacherMixin, "init_teachers"):
        def init_teachers(self, teacher_ckpts, save_teacher=False):  # noqa: ANN001, ANN202
            self.init_teacher(None, save_teacher)

        monkeypatch.setattr(TeacherMixin, "init_teachers", init_teachers, raising=False)
    from lightning_kd.methods.cdgkd import CDGKD

    monkeypatch.setattr(CDGKD, "teachers", property(lambda self: self.__dict__.get("_test_teachers", [])),
                        raising=False)

    def teachers_forward(self, fn):  # noqa: ANN001, ANN202
        with torch.no_grad():
            return [fn(t.eval()) for t in self.teachers]

    monkeypatch.setattr(CDGKD, "teachers_forward", teachers_forward, raising=False)


def set_teachers(module: torch.nn.Module, teachers: list[torch.nn.Module]) -> None:
    """Attach frozen ``teachers`` to ``module`` (outside its module tree), for the shim above."""
    for t in teachers:
        t.requires_grad_(False).eval()
    object.__setattr__(module, "_test_teachers", list(teachers))
