"""``storage_dtype``: inputs held in float16 / bfloat16 between batches, handed out as float32."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
import torch

from lightning_kd.checkpoint import ConfigError
from lightning_kd.cli import build_cli
from lightning_kd.data import DataFormatError
from lightning_kd.data.formats.mmsa import MMSADataModule
from lightning_kd.data.formats.mult import MulTDataModule
from lightning_kd.data.split import SplitTensors, store_inputs_as


def _batches(dm) -> list:
    dm.setup("fit")
    return list(dm.val_dataloader()) + list(dm.train_dataloader())


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_mmsa_held_in_half_batches_float32(tiny_mmsa_aligned: Path, dtype: str) -> None:
    ref = MMSADataModule(str(tiny_mmsa_aligned), batch_size=8, seed=3)
    half = MMSADataModule(str(tiny_mmsa_aligned), batch_size=8, seed=3, storage_dtype=dtype)
    half.setup("fit")
    held = getattr(torch, dtype)
    for split in ("train", "valid", "test"):
        assert all(v.dtype == held for v in half.split(split).inputs.values())
        assert half.split(split).masks["text"].dtype == torch.bool
    for a, b in zip(_batches(ref), _batches(half), strict=True):
        assert torch.equal(a.index, b.index) and torch.equal(a.target, b.target)
        for k, x in a.inputs.items():
            assert b.inputs[k].dtype == torch.float32
            # exactly the float32 values rounded once to the storage dtype
            assert torch.equal(b.inputs[k], x.to(held).float())
            assert not torch.equal(b.inputs[k], x) or k != "text"  # the text features do get rounded
        assert all(torch.equal(a.masks[k], b.masks[k]) for k in a.masks)


def test_token_ids_stay_int64(tiny_mmsa_unaligned: Path) -> None:
    dm = MMSADataModule(str(tiny_mmsa_unaligned), text="bert_ids", storage_dtype="float16")
    dm.setup("fit")
    s = dm.split("train")
    assert s.inputs["text_bert"].dtype == torch.int64 and s.inputs["audio"].dtype == torch.float16
    batch = next(iter(dm.train_dataloader()))
    assert batch.inputs["text_bert"].dtype == torch.int64 and batch.inputs["vision"].dtype == torch.float32


def test_mult_reader_takes_the_option(tiny_mult_mosi: Path) -> None:
    dm = MulTDataModule(str(tiny_mult_mosi), storage_dtype="bfloat16")
    dm.setup("fit")
    assert {v.dtype for v in dm.split("valid").inputs.values()} == {torch.bfloat16}
    assert {v.dtype for v in next(iter(dm.val_dataloader())).inputs.values()} == {torch.float32}


def test_float16_overflow_names_the_input_and_the_fix(tiny_mmsa_aligned: Path, tmp_path: Path) -> None:
    with open(tiny_mmsa_aligned, "rb") as f:
        raw = pickle.load(f)
    raw["valid"]["vision"][3, 2, 1] = 1.0e6
    bad = tmp_path / "big.pkl"
    with open(bad, "wb") as f:
        pickle.dump(raw, f, protocol=4)
    with pytest.raises(DataFormatError, match=r"big\.pkl, split 'valid', input 'vision': holds 1e\+06.*bfloat16"):
        MMSADataModule(str(bad), storage_dtype="float16").setup("fit")
    dm = MMSADataModule(str(bad), storage_dtype="bfloat16")  # float32's range
    dm.setup("fit")
    assert float(dm.split("valid").inputs["vision"][3, 2, 1]) == pytest.approx(1.0e6, rel=4e-3)


def test_own_infinities_are_kept_not_refused() -> None:
    x = torch.tensor([[1.0, float("inf")], [2.0, -float("inf")]])
    split = SplitTensors(inputs={"bio": x.clone()}, masks={}, target=torch.zeros(2), ids=["a", "b"])
    store_inputs_as(split, torch.float16, "here", chunk=1)
    assert torch.equal(split.inputs["bio"].float(), x)


def test_unknown_storage_dtype_is_a_config_error(tiny_mmsa_aligned: Path) -> None:
    with pytest.raises(ConfigError, match=r"storage_dtype 'int8' is unknown.*float16"):
        MMSADataModule(str(tiny_mmsa_aligned), storage_dtype="int8")


def test_cli_fit_with_half_storage(tiny_run_args: list[str]) -> None:
    cli = build_cli(["fit", *tiny_run_args, "--data.init_args.storage_dtype=float16", "--trainer.fast_dev_run=2"])
    assert cli.datamodule.split("train").inputs["text"].dtype == torch.float16
    assert cli.trainer.global_step == 2  # tiny runs step every batch
