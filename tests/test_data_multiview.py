"""Multi-view ``.mat`` reader, its datamodule, the generator that writes the same layouts and ``generate multiview``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import scipy.io
import scipy.sparse
import torch

from lightning_kd.checkpoint import DataFileNotFoundError, DataFormatError
from lightning_kd.data.batch import Batch
from lightning_kd.data.formats.multiview import MultiViewDataModule, read_multiview_mat
from lightning_kd.data.generate.command import generate_cli
from lightning_kd.data.generate.multiview import _build, write_multiview_mat

FIX = "lightning-kd generate multiview --out FILE"


def _cell(views: list[np.ndarray], shape: str = "row") -> np.ndarray:
    cell = np.empty((1, len(views)) if shape == "row" else (len(views), 1), dtype=object)
    for v, x in enumerate(views):
        cell.flat[v] = x
    return cell


def _save(path: Path, **data) -> Path:
    scipy.io.savemat(str(path), data)
    return path


def _check_error(err: pytest.ExceptionInfo, path: Path, key: str | None) -> str:
    msg = str(err.value)
    assert str(path) in msg, msg
    if key is not None:
        assert f"key {key!r}" in msg, msg
    assert "Fix:" in msg, msg
    return msg


# -- generator layouts round-trip --------------------------------------------------------------------------------
@pytest.mark.parametrize("layout", ["cell", "numbered"])
@pytest.mark.parametrize("one_based", [True, False])
@pytest.mark.parametrize("transpose", [False, True])
def test_generated_layouts_round_trip(tmp_path: Path, layout: str, one_based: bool, transpose: bool) -> None:
    n, dims, k = 50, (7, 5, 3), 4
    path = write_multiview_mat(tmp_path / "mv.mat", layout=layout, n=n, dims=dims, clusters=k, one_based=one_based,
                               transpose=transpose, seed=3)
    raw = scipy.io.loadmat(str(path))
    if layout == "cell":
        assert raw["X"].dtype == object and raw["X"].shape == (1, 3) and raw["Y"].shape == (n, 1)
    else:
        assert {"X1", "X2", "X3", "gt"} <= set(raw) and raw["gt"].shape == (n, 1)
    views, labels = read_multiview_mat(path)
    ref_views, z = _build(n, dims, k, 3)
    assert labels.dtype == np.int64 and labels.shape == (n,) and labels.min() == 0
    np.testing.assert_array_equal(labels, z)
    assert len(views) == 3
    for x, ref, d in zip(views, ref_views, dims):
        assert x.dtype == np.float32 and x.shape == (n, d) and x.flags.c_contiguous and x.flags.writeable
        np.testing.assert_array_equal(x, ref.astype(np.float32))
    # the file is a pure function of the arguments; writing replaces it atomically (no temp files left)
    again = write_multiview_mat(tmp_path / "mv.mat", layout=layout, n=n, dims=dims, clusters=k, one_based=one_based,
                                transpose=transpose, seed=3)
    np.testing.assert_array_equal(read_multiview_mat(again)[0][0], views[0])
    assert [p.name for p in tmp_path.iterdir()] == ["mv.mat"]


def test_generator_rejects_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="ambiguous"):
        write_multiview_mat(tmp_path / "a.mat", n=20, dims=(20, 3), transpose=True)
    with pytest.raises(ValueError, match="layout"):
        write_multiview_mat(tmp_path / "a.mat", layout="hdf5")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="clusters"):
        write_multiview_mat(tmp_path / "a.mat", n=3, clusters=5)
    assert not any(tmp_path.iterdir())


# -- hand-written files (savemat directly) -----------------------------------------------------------------------
@pytest.mark.parametrize("cell_shape", ["row", "column"])
def test_cell_row_or_column_with_sparse_and_mixed_orientation(tmp_path: Path, cell_shape: str) -> None:
    rng = np.random.default_rng(0)
    n = 12
    a = rng.standard_normal((n, 4))
    b = scipy.sparse.random(6, n, density=0.3, format="csc", random_state=1)  # D x N sparse
    c = rng.standard_normal((n, n))  # both axes = N: kept as N x D
    y = np.arange(n) % 3 + 1
    path = _save(tmp_path / "m.mat", X=_cell([a, b, c], cell_shape), truth=y.reshape(1, -1).astype(float))
    views, labels = read_multiview_mat(path)
    np.testing.assert_array_equal(labels, y - 1)
    np.testing.assert_array_equal(views[0], a.astype(np.float32))
    np.testing.assert_array_equal(views[1], b.toarray().T.astype(np.float32))
    np.testing.assert_array_equal(views[2], c.astype(np.float32))
    assert all(x.flags.c_contiguous and x.dtype == np.float32 for x in views)


def test_numbered_lowercase_sorted_numerically_zero_based_flat_labels(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    n = 9
    xs = {f"x{i}": rng.standard_normal((n, i + 1)) for i in (1, 2, 10)}
    y = np.array([0, 2, 1, 0, 2, 1, 0, 1, 2], dtype=np.uint8)
    path = tmp_path / "m.mat"
    scipy.io.savemat(str(path), {**xs, "labels": y}, oned_as="row")
    views, labels = read_multiview_mat(path)
    assert [x.shape[1] for x in views] == [2, 3, 11]  # x1, x2, x10 (not x1, x10, x2)
    np.testing.assert_array_equal(views[2], xs["x10"].astype(np.float32))
    np.testing.assert_array_equal(labels, y.astype(np.int64))  # min 0: not shifted


def test_labels_starting_above_one_are_not_shifted(tmp_path: Path) -> None:
    path = _save(tmp_path / "m.mat", X1=np.ones((4, 2)), gt=np.array([[2.0], [3.0], [2.0], [4.0]]))
    np.testing.assert_array_equal(read_multiview_mat(path)[1], [2, 3, 2, 4])


# -- errors --------------------------------------------------------------------------------------------------------
def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.mat"
    with pytest.raises(DataFileNotFoundError) as err:
        read_multiview_mat(path)
    assert isinstance(err.value, FileNotFoundError) and isinstance(err.value, DataFormatError)
    assert str(path) in str(err.value) and "lightning-kd generate multiview --out" in str(err.value)
    with pytest.raises(DataFileNotFoundError, match="directory"):
        read_multiview_mat(tmp_path)


def test_garbage_file(tmp_path: Path) -> None:
    path = tmp_path / "bad.mat"
    path.write_bytes(b"not a mat file at all" * 3)
    with pytest.raises(DataFormatError) as err:
        read_multiview_mat(path)
    msg = _check_error(err, path, None)
    assert "not a readable .mat file" in msg and FIX in msg


def test_v73_file(tmp_path: Path) -> None:
    head = b"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: Mon Jan  1 00:00:00 2024 HDF5 schema 1.00 ."
    data = head.ljust(116, b" ") + b"\x00" * 8 + b"\x00\x02IM"
    data = data.ljust(512, b"\x00") + b"\x89HDF\r\n\x1a\n" + b"\x00" * 64
    path = tmp_path / "v73.mat"
    path.write_bytes(data)
    with pytest.raises(DataFormatError) as err:
        read_multiview_mat(path)
    msg = _check_error(err, path, None)
    assert "v7.3" in msg and "-v7" in msg and "h5py" in msg


@pytest.mark.parametrize(
    ("data", "key", "what"),
    [
        ({"X1": np.ones((3, 2))}, "Y", "no labels"),
        ({"Z": np.ones((3, 2)), "Y": np.ones((3, 1))}, "X", "no views"),
        ({"X1": np.ones((3, 2)), "X2": np.ones((4, 5)), "gt": np.ones((3, 1))}, "X2", "neither axis"),
        ({"X1": np.array([[1.0, np.nan], [0, 0], [0, 0]]), "gt": np.ones((3, 1))}, "X1", "non-finite"),
        ({"X1": np.array([[1.0, 0], [0, np.inf], [0, 0]]), "gt": np.ones((3, 1))}, "X1", "non-finite"),
        ({"X1": np.ones((3, 2)), "gt": np.array([[1.0], [1.5], [2.0]])}, "gt", "integers"),
        ({"X1": np.ones((3, 2)), "Y": np.array([[1.0], [np.nan], [2.0]])}, "Y", "integers"),
        ({"X1": np.ones((3, 2)), "Y": np.array([[-1.0], [0], [2.0]])}, "Y", ">= 0"),
        ({"X1": np.ones((3, 2)), "Y": np.ones((3, 2))}, "Y", "shape"),
    ],
)
def test_layout_errors_name_file_key_and_fix(tmp_path: Path, data: dict, key: str, what: str) -> None:
    path = _save(tmp_path / "m.mat", **data)
    with pytest.raises(DataFormatError) as err:
        read_multiview_mat(path)
    msg = _check_error(err, path, key)
    assert what in msg and FIX in msg, msg


def test_error_in_cell_view_names_the_cell_entry(tmp_path: Path) -> None:
    path = _save(tmp_path / "m.mat", X=_cell([np.ones((3, 2)), np.ones((2, 2))]), Y=np.ones((3, 1)))
    with pytest.raises(DataFormatError) as err:
        read_multiview_mat(path)
    assert "neither axis" in _check_error(err, path, "X{2}")


# -- datamodule ------------------------------------------------------------------------------------------------------
def test_datamodule_batches_standardised_views(tmp_path: Path) -> None:
    path = write_multiview_mat(tmp_path / "mv.mat", n=30, dims=(6, 4), clusters=3)
    dm = MultiViewDataModule(str(path), batch_size=8, eval_batch_size=16)
    dm.setup("fit")
    assert dm.num_views == 2 and dm.num_clusters == 3
    assert dm.feature_dims == {"view_0": 6, "view_1": 4} and dm.seq_lens == {}
    for s in ("train", "valid", "test"):  # transductive: every split holds all samples
        assert len(dm.split(s)) == 30 and dm.ids(s) == [str(i) for i in range(30)]
    x0 = dm.split("train").inputs["view_0"]
    assert x0.dtype == torch.float32
    torch.testing.assert_close(x0.mean(0), torch.zeros(6), atol=1e-5, rtol=0)
    torch.testing.assert_close(x0.std(0, unbiased=False), torch.ones(6), atol=1e-4, rtol=0)

    batches = list(dm.train_dataloader())
    assert [len(b.target) for b in batches] == [8, 8, 8, 6]
    b = batches[0]
    assert isinstance(b, Batch) and set(b.inputs) == {"view_0", "view_1"} and b.masks == {}
    assert b.inputs["view_1"].shape == (8, 4) and b.target.dtype == torch.int64
    seen = torch.cat([b.index for b in batches])
    assert sorted(seen.tolist()) == list(range(30))
    assert [len(b.target) for b in dm.val_dataloader()] == [16, 14]
    assert sum(len(b.target) for b in dm.predict_dataloader()) == 30

    raw = MultiViewDataModule(str(path), standardize=False)
    views, labels = read_multiview_mat(path)
    np.testing.assert_array_equal(raw.split("test").inputs["view_1"].numpy(), views[1])
    np.testing.assert_array_equal(raw.split("test").target.numpy(), labels)


def test_constant_feature_is_centred_not_divided(tmp_path: Path) -> None:
    x = np.ones((5, 2)) * 3.0
    x[:, 1] = np.arange(5)
    path = _save(tmp_path / "m.mat", X1=x, Y=np.arange(5.0)[:, None])
    v = MultiViewDataModule(str(path)).split("train").inputs["view_0"]
    assert torch.isfinite(v).all() and (v[:, 0] == 0).all()


# -- generate command ------------------------------------------------------------------------------------------------
def test_generate_cli_multiview(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "sub" / "mv.mat"
    generate_cli(["multiview", "--out", str(out), "--layout", "numbered", "--n", "40", "--dims", "5", "6",
                  "--clusters", "4", "--zero-based", "--transpose", "--seed", "2"])
    assert "wrote" in capsys.readouterr().out
    raw = scipy.io.loadmat(str(out))
    assert raw["X1"].shape == (5, 40) and raw["X2"].shape == (6, 40) and raw["gt"].min() == 0
    views, labels = read_multiview_mat(out)
    assert [x.shape for x in views] == [(40, 5), (40, 6)] and set(labels.tolist()) == {0, 1, 2, 3}
    with pytest.raises(SystemExit):
        generate_cli(["multiview"])  # --out is required
    from lightning_kd.cli import main

    capsys.readouterr()
    with pytest.raises(SystemExit) as exc:  # ambiguous: a refused option is one line through the CLI
        main(["generate", "multiview", "--out", str(out), "--n", "5", "--dims", "5", "--transpose", "--force"])
    assert exc.value.code == 2 and capsys.readouterr().err.startswith("lightning-kd: error: ")


# -- the data carry the clusters ---------------------------------------------------------------------------------------
def _acc(y: np.ndarray, p: np.ndarray) -> float:
    from scipy.optimize import linear_sum_assignment

    k = int(max(y.max(), p.max())) + 1
    counts = np.zeros((k, k))
    np.add.at(counts, (p, y), 1)
    rows, cols = linear_sum_assignment(-counts)
    return float(counts[rows, cols].sum() / len(y))


def test_kmeans_on_concatenated_views_beats_single_views(tmp_path: Path) -> None:
    from sklearn.cluster import KMeans
    from threadpoolctl import threadpool_limits

    path = write_multiview_mat(tmp_path / "mv.mat", seed=0)  # defaults: 600 samples, 3 views, 5 clusters
    dm = MultiViewDataModule(str(path))
    s = dm.split("train")
    y = s.target.numpy()
    views = [s.inputs[f"view_{v}"].numpy() for v in range(dm.num_views)]

    def kmeans_acc(x: np.ndarray) -> float:
        with threadpool_limits(1):
            return _acc(y, KMeans(dm.num_clusters, n_init=4, random_state=0).fit_predict(x))

    joint = kmeans_acc(np.hstack(views))
    single = [kmeans_acc(x) for x in views]
    assert joint > 0.9, joint  # chance is 0.2
    assert max(single) < joint - 0.05, (single, joint)  # each view alone is imperfect


# -- clustering needs two or more classes ----------------------------------------------------------------------------
@pytest.mark.parametrize(("key", "labels"),
                         [("Y", np.ones((6, 1))), ("gt", np.zeros((1, 6))), ("truth", np.full(6, 3.0))])
def test_single_class_file_is_one_line_naming_file_and_label_key(tmp_path: Path, key: str, labels: np.ndarray) -> None:
    path = _save(tmp_path / "one.mat", X1=np.random.default_rng(0).standard_normal((6, 3)), **{key: labels})
    with pytest.raises(DataFormatError) as err:
        read_multiview_mat(path)
    msg = _check_error(err, path, key)
    assert "\n" not in msg and "a single class" in msg and "at least 2 classes" in msg, msg
    with pytest.raises(DataFormatError, match="a single class"):
        MultiViewDataModule(str(path)).setup("fit")


def test_single_class_file_through_the_cli_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from pathlib import Path as _P

    from lightning_kd.cli import main

    path = _save(tmp_path / "one.mat", X1=np.ones((6, 3)), Y=np.ones((6, 1)))
    cfg = _P(__file__).resolve().parents[1] / "configs" / "vlsg" / "mat.yaml"
    with pytest.raises(SystemExit) as exit_:
        main(["fit", "-c", str(cfg), "--data.init_args.path", str(path), "--trainer.logger=false",
              f"--trainer.default_root_dir={tmp_path}"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("lightning-kd: error: ") and str(path) in err[-1] and "'Y'" in err[-1], err[-3:]


def test_storage_dtype_holds_views_in_half_after_the_graph(tmp_path: Path) -> None:
    from lightning_kd.data.semantic_graph import SemanticGraph

    path = write_multiview_mat(tmp_path / "mv.mat", n=30, dims=(6, 4), clusters=3)
    graph = SemanticGraph(k=3, filter_order=1)
    ref = MultiViewDataModule(str(path), batch_size=8, semantic_graph=graph)
    half = MultiViewDataModule(str(path), batch_size=8, semantic_graph=graph, storage_dtype="float16")
    ref.setup("fit"), half.setup("fit")
    held = half.split("train").inputs
    assert held["view_0"].dtype == torch.float16 and held["semantic_neighbours"].dtype == torch.int64
    a, b = next(iter(ref.val_dataloader())), next(iter(half.val_dataloader()))
    assert torch.equal(a.inputs["semantic_neighbours"], b.inputs["semantic_neighbours"])  # graph built in float32
    for v in ("view_0", "view_1"):
        assert b.inputs[v].dtype == torch.float32 and torch.equal(b.inputs[v], a.inputs[v].half().float())
