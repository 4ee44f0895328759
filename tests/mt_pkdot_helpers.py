"""Test helpers for MT-PKDOT: a tiny video + biosignal datamodule of random tensors, tiny options, and a chain of real
stage checkpoints written by short fits."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import lightning.pytorch as pl
import torch

from lightning_kd.data.datamodule import InMemoryDataModule
from lightning_kd.data.split import SplitTensors

TINY_NET = {"dim": 8, "visual": {"width": 8, "heads": 2, "layers": 1, "dropout": 0.0},
            "biosignal": {"kind": "envelope", "widths": [8], "hop": 16}, "fusion": {"heads": 2, "ff": 16},
            "hallucination_hidden": [16]}
STAGES = ("visual", "privileged", "fusion", "align", "hallucination", "student")
TEACHERS = {"fusion": ("visual", "privileged"), "align": ("fusion",), "hallucination": ("visual", "privileged"),
            "student": ("align", "hallucination")}


class TinyVideoBioData(InMemoryDataModule):
    """``video (B, 4, 6)`` and ``bio (B, 1, 64)``: binary label, weakly in the video (first features) and strongly in
    the biosignal's amplitude (second half louder for class 1); ``inputs`` selects what the batches carry."""

    def __init__(self, n: Sequence[int] = (48, 16, 16), inputs: Sequence[str] = ("video", "bio"),
                 data_seed: int = 0, batch_size: int = 16, seed: int | None = None) -> None:
        super().__init__(batch_size=batch_size, seed=seed)
        self.n, self.inputs, self.data_seed = tuple(n), tuple(inputs), data_seed

    def load_splits(self) -> dict[str, SplitTensors]:
        g = torch.Generator().manual_seed(self.data_seed)
        out = {}
        for name, n in zip(("train", "valid", "test"), self.n):
            y = torch.randint(0, 2, (n,), generator=g)
            sign = (2.0 * y - 1.0)
            video = torch.randn(n, 4, 6, generator=g)
            video[..., :2] += 0.5 * sign[:, None, None]
            bio = torch.randn(n, 1, 64, generator=g)
            bio[..., 32:] *= torch.exp(0.8 * sign)[:, None, None]
            inputs = {"video": video, "bio": bio}
            out[name] = SplitTensors(inputs={k: v for k, v in inputs.items() if k in self.inputs}, masks={},
                                     target=y, ids=[f"{name}_{i}" for i in range(n)])
        return out

    @property
    def feature_dims(self) -> dict[str, int]:
        return {k: v for k, v in {"video": 6, "bio": 1}.items() if k in self.inputs}

    @property
    def seq_lens(self) -> dict[str, int]:
        return {k: v for k, v in {"video": 4, "bio": 64}.items() if k in self.inputs}

    @property
    def target_kind(self) -> str:
        return "binary"


def tiny_kwargs(role: str, **overrides: object) -> dict[str, object]:
    kw: dict[str, object] = {"feature_dims": {"video": 6, "bio": 1}, "seq_lens": {"video": 4, "bio": 64},
                             "role": role, "net": TINY_NET, "loss": {"ot": {"k": 8}}, "lr": 3e-3}
    kw.update(overrides)
    return kw


def trainer(root: Path, epochs: int = 2, **kw: object) -> pl.Trainer:
    args = {"logger": False, "enable_progress_bar": False, "enable_model_summary": False, "max_epochs": epochs,
            "accelerator": "cpu", "devices": 1, "default_root_dir": str(root), "enable_checkpointing": False}
    args.update(kw)
    return pl.Trainer(**args)


def fit_stage(role: str, root: Path, teachers: Sequence[Path] = (), epochs: int = 2, seed: int = 0,
              **overrides: object):
    """Fit a tiny stage on :class:`TinyVideoBioData` and save its checkpoint as ``root/<role>.ckpt``."""
    from lightning_kd.methods.mt_pkdot import MTPKDOT

    pl.seed_everything(seed, verbose=False)
    module = MTPKDOT(**tiny_kwargs(role, teacher_ckpts=[str(t) for t in teachers] or None, **overrides))
    tr = trainer(root, epochs)
    tr.fit(module, datamodule=TinyVideoBioData(seed=seed))
    path = root / f"{role}.ckpt"
    tr.save_checkpoint(path)
    return module, path


def stage_chain(root: Path, epochs: int = 2) -> dict[str, Path]:
    """Every stage up to the student's teachers: role -> checkpoint."""
    ckpts: dict[str, Path] = {}
    for role in STAGES[:-1]:
        _, ckpts[role] = fit_stage(role, root, [ckpts[t] for t in TEACHERS.get(role, ())], epochs)
    return ckpts
