"""StreamingCheckpointIO: checkpoints written straight to disk (no in-memory copy), atomically."""

from __future__ import annotations

import tracemalloc
from pathlib import Path

import pytest
import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO

from lightning_kd.trainer import KDTrainer, StreamingCheckpointIO


def _traced_peak(save) -> int:
    tracemalloc.start()
    try:
        save()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_saves_without_a_copy_in_memory(tmp_path: Path) -> None:
    ckpt = {"state_dict": {"w": torch.randn(4_000_000)}, "epoch": 3}  # 16 MB
    ours, theirs = tmp_path / "a" / "ours.ckpt", tmp_path / "theirs.ckpt"
    peak_ours = _traced_peak(lambda: StreamingCheckpointIO().save_checkpoint(ckpt, ours))
    peak_theirs = _traced_peak(lambda: TorchCheckpointIO().save_checkpoint(ckpt, theirs))
    assert peak_theirs > 16_000_000  # Lightning's writer: the whole checkpoint in a BytesIO (and getvalue)
    assert peak_ours < 2_000_000
    loaded = torch.load(ours, weights_only=True)
    assert loaded["epoch"] == 3 and torch.equal(loaded["state_dict"]["w"], ckpt["state_dict"]["w"])
    assert sorted(p.name for p in ours.parent.iterdir()) == ["ours.ckpt"]  # no temporary file left


def test_failed_save_leaves_nothing_and_keeps_the_old_file(tmp_path: Path) -> None:
    path = tmp_path / "last.ckpt"
    io = StreamingCheckpointIO()
    io.save_checkpoint({"epoch": 1}, path)
    with pytest.raises(Exception):  # noqa: B017 - whatever pickle raises for a lambda
        io.save_checkpoint({"epoch": 2, "bad": lambda: None}, path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.ckpt"]
    assert torch.load(path, weights_only=True) == {"epoch": 1}


def test_trainer_uses_it_unless_told_otherwise(tmp_path: Path) -> None:
    trainer = KDTrainer(accelerator="cpu", logger=False, default_root_dir=tmp_path, enable_progress_bar=False)
    assert type(trainer.strategy.checkpoint_io) is StreamingCheckpointIO

    class Mine(TorchCheckpointIO):
        pass

    trainer = KDTrainer(accelerator="cpu", logger=False, default_root_dir=tmp_path, plugins=[Mine()])
    assert type(trainer.strategy.checkpoint_io) is Mine


def test_urls_keep_lightnings_writer(tmp_path: Path) -> None:
    StreamingCheckpointIO().save_checkpoint({"epoch": 4}, "memory://ckpts/x.ckpt")
    import fsspec

    with fsspec.open("memory://ckpts/x.ckpt", "rb") as f:
        assert torch.load(f, weights_only=True) == {"epoch": 4}
