"""The reader checks written once in ``formats/common.py``: every reader words the same defect the same way."""

from __future__ import annotations

import pickle
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from lightning_kd.checkpoint import DataFormatError
from lightning_kd.data.formats import common
from lightning_kd.data.formats.mmsa import read_mmsa
from lightning_kd.data.formats.mult import read_mult
from lightning_kd.data.split import SplitTensors

P = Path("/data/x.pkl")


def _raw(path: Path) -> dict:
    with path.open("rb") as f:
        return pickle.load(f)


def _dump(obj: dict, path: Path) -> Path:
    with path.open("wb") as f:
        pickle.dump(obj, f, protocol=4)
    return path


def _message(read, path: Path) -> str:
    with pytest.raises(DataFormatError) as err:
        read(path)
    msg = str(err.value)
    assert "\n" not in msg and msg.startswith(str(path)) and "Fix:" in msg
    return msg.split(": ", 1)[1].split(". Fix:")[0]  # what is wrong, without file and fix


@pytest.mark.parametrize("defect", ["no_split", "not_dict", "split_not_dict", "count", "dims"])
def test_both_pickle_readers_word_a_defect_alike(tmp_path: Path, tiny_mmsa_aligned: Path, tiny_mult_mosi: Path,
                                                 defect: str) -> None:
    msgs = []
    for read, src, key in ((read_mmsa, tiny_mmsa_aligned, "audio"), (read_mult, tiny_mult_mosi, "audio")):
        d = _raw(src)
        if defect == "no_split":
            del d["valid"]
        elif defect == "not_dict":
            d = [d["train"]]
        elif defect == "split_not_dict":
            d["test"] = [1, 2]
        elif defect == "count":
            d["train"][key] = d["train"][key][:-3]
        else:
            d["test"][key] = np.concatenate([d["test"][key], d["test"][key][..., :1]], axis=-1)
        msgs.append(_message(read, _dump(d, tmp_path / f"{read.__name__}.pkl")))
    # the counts name each format's own keys, and the fixtures' sizes differ; the sentence is the same
    msgs = [re.sub(r"\d+", "N", m.split(" (counts:")[0].split("; present:")[0]) for m in msgs]
    assert msgs[0] == msgs[1], msgs


def test_same_sample_count_names_the_odd_key() -> None:
    with pytest.raises(DataFormatError, match=r"key 'b': has 2 samples where the other keys have 3"):
        common.same_sample_count(P, "train", {"a": 3, "b": 2, "c": 3}, "fix it")
    common.same_sample_count(P, "train", {"a": 3, "b": 3}, "fix it")


def test_label_range_and_nonfinite() -> None:
    with pytest.raises(DataFormatError, match=r"label 3.5 of sample 1 is NaN or outside \[-3, 3\]"):
        common.check_label_range(P, "test", "y", np.array([0.0, 3.5, np.nan]), 3.0, "fix")
    with pytest.raises(DataFormatError, match="label nan of sample 0"):
        common.check_label_range(P, "test", "y", np.array([np.nan, 0.0]), 3.0, "fix")
    common.check_label_range(P, "test", "y", np.array([-3.0, 3.0]), 3.0, "fix")
    arr = np.zeros((600, 2, 2), dtype=np.float32)
    assert common.first_nonfinite(arr) is None
    arr[513, 1, 0] = -np.inf  # in the third chunk of 256
    assert common.first_nonfinite(arr) == 513
    assert "non-finite value (-inf) first in sample 513" in str(common.nonfinite_error(P, "s", "k", arr, 513, "f"))


def test_same_feature_sizes_and_min_classes() -> None:
    def split(d: int) -> SplitTensors:
        return SplitTensors(inputs={"a": torch.zeros(2, 5, d)}, masks={}, target=torch.zeros(2), ids=["0", "1"])

    common.same_feature_sizes(P, {"train": split(4), "valid": split(4)}, "fix")
    with pytest.raises(DataFormatError, match="split 'valid', key 'a': feature size 3 differs from 4 in split 'train'"):
        common.same_feature_sizes(P, {"train": split(4), "valid": split(3)}, "fix")
    common.same_feature_sizes(P, {"train": split(4), "valid": split(3)}, "fix", size=lambda k, t: int(t.shape[1]))
    with pytest.raises(DataFormatError, match=r"key 'gt': labels hold a single class over 3 samples"):
        common.check_min_classes(P, "gt", np.array([2, 2, 2]), "fix")
    common.check_min_classes(P, "gt", np.array([0, 1, 1]), "fix")
