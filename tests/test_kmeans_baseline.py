"""The k-means baselines (lightning_kd/methods/kmeans) through the CLI on a tiny generated .mat: the test metrics
equal a direct scikit-learn computation on the same features, the run seed is k-means' random_state, the
checkpoint reproduces the test (and exports), and wrong checkpoints or contradicting options stop with one line."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import scipy.io
import torch
import yaml
from scipy.optimize import linear_sum_assignment
from sklearn.cluster import KMeans
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score
from sklearn.metrics.cluster import contingency_matrix

from conftest import ROOT, resolved_config
from lightning_kd.benchmark import load_suite
from lightning_kd.checkpoint import ConfigError
from lightning_kd.cli import build_only, main
from lightning_kd.data.formats.multiview import MultiViewDataModule
from lightning_kd.data.semantic_graph import SemanticGraph
from lightning_kd.export import export_run, run_exported
from lightning_kd.methods.kmeans import KMeansBaseline

pytestmark = pytest.mark.usefixtures("single_thread")

CONFIG = ROOT / "configs/kmeans/mat.yaml"
QUIET = ["--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false"]
GRAPH = {"k": 10, "metric": "cosine", "filter_order": 2, "source": "concat"}  # configs/kmeans/mat.yaml's
KEYS = ("ACC", "NMI", "ARI", "purity")


@pytest.fixture(scope="module")
def mat(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """120 samples, views of 8 / 6 / 4 features, 3 classes: hard enough that k-means' result depends on its seed
    and input (test ACC about 0.7)."""
    path = tmp_path_factory.mktemp("kmeans") / "mv.mat"
    main(["generate", "multiview", "--out", str(path), "--n", "120", "--dims", "8", "6", "4", "--clusters", "3"])
    return path


def _fit(mat: Path, save: Path, *extra: str) -> Path:
    main(["fit", "-c", str(CONFIG), "--data.init_args.path", str(mat), "--trainer.logger.init_args.save_dir",
          str(save), *QUIET, *extra])
    runs = sorted((save / "kmeans/mat").glob("version_*"), key=lambda p: int(p.name.split("_")[1]))
    return runs[-1]


def _metrics(run: Path) -> dict[str, float]:
    return json.loads((run / "test_metrics.json").read_text())["metrics"]


@pytest.fixture(scope="module")
def run(mat: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """configs/kmeans/mat.yaml as shipped (features: filtered), fitted and tested once."""
    return _fit(mat, tmp_path_factory.mktemp("runs"))


def _by_hand(x: np.ndarray, y: np.ndarray, seed: int, n_init: int = 10) -> dict[str, float]:
    """scikit-learn k-means of ``x`` scored with scikit-learn / scipy alone."""
    pred = KMeans(len(np.unique(y)), n_init=n_init, random_state=seed).fit_predict(x)
    cont = contingency_matrix(y, pred)
    rows, cols = linear_sum_assignment(-cont)
    return {"ACC": cont[rows, cols].sum() / len(y), "NMI": normalized_mutual_info_score(y, pred),
            "ARI": adjusted_rand_score(y, pred), "purity": cont.max(0).sum() / len(y)}


def _standardised_views(mat: Path) -> tuple[list[np.ndarray], np.ndarray]:
    """The .mat read with scipy and standardised with numpy (the generator's layout: cell ``X`` of N x D views,
    1-based ``Y``)."""
    d = scipy.io.loadmat(str(mat))
    views = []
    for v in d["X"].reshape(-1):
        v = np.asarray(v, dtype=np.float32)
        views.append(((v - v.mean(0, dtype=np.float64)) / v.std(0, dtype=np.float64)).astype(np.float32))
    return views, d["Y"].reshape(-1).astype(np.int64) - 1


@pytest.mark.parametrize(("features", "balance"), [("concat", False), ("filtered", True)])
def test_test_metrics_equal_a_direct_sklearn_computation(mat: Path, run: Path, tmp_path: Path, features: str,
                                                         balance: bool) -> None:
    if features == "concat":  # the views read and standardised here, independently of the datamodule
        got = _metrics(_fit(mat, tmp_path, "--model.init_args.features=concat", "--data.init_args.semantic_graph=null"))
        views, y = _standardised_views(mat)
    else:  # the datamodule's graph-filtered views (the filter is the datamodule's, as VLSG gets it)
        got = _metrics(_fit(mat, tmp_path, "--model.init_args.balance_views=true"))
        split = MultiViewDataModule(str(mat), semantic_graph=SemanticGraph(**GRAPH)).splits["train"]
        views, y = [split.inputs[f"view_{i}"].numpy() for i in range(3)], split.target.numpy()
    if balance:
        views = [v / np.sqrt(v.shape[1]) for v in views]
    expected = _by_hand(np.concatenate(views, 1), y, seed=1111)  # the config's seed_everything
    assert 0.4 < expected["ACC"] < 0.95  # a hard case: other features or seeds give other clusters
    assert got == pytest.approx(expected, abs=1e-6)  # logged as float32
    if features == "filtered":  # the shipped config without balancing is another clustering of the same data
        assert _metrics(run) != got


def test_the_run_seed_is_the_kmeans_random_state(mat: Path, tmp_path: Path) -> None:
    """One restart (n_init 1), so every seed gives its own centres: equal to scikit-learn's for that seed, the
    same on a re-run; ``kmeans_seed`` overrides the run seed."""
    one = ["--model.init_args.kmeans_init=1", "--seed_everything=7"]
    runs = [_fit(mat, tmp_path / "a", *one), _fit(mat, tmp_path / "b", *one),
            _fit(mat, tmp_path / "c", *one, "--model.init_args.kmeans_seed=8")]
    centres = [torch.load(r / "checkpoints/last.ckpt", weights_only=True)["state_dict"]["cluster_centers"] for r in runs]
    split = MultiViewDataModule(str(mat), semantic_graph=SemanticGraph(**GRAPH)).splits["train"]
    x = torch.cat([split.inputs[f"view_{i}"] for i in range(3)], 1).numpy()
    for c, seed in zip(centres, (7, 7, 8)):
        torch.testing.assert_close(c, torch.from_numpy(KMeans(3, n_init=1, random_state=seed).fit(x).cluster_centers_))
    torch.testing.assert_close(centres[0], centres[1], rtol=0, atol=0)
    assert _metrics(runs[0]) == _metrics(runs[1])
    assert not torch.allclose(centres[0], centres[2]) and _metrics(runs[0]) != _metrics(runs[2])


def test_checkpoint_reproduces_the_test_and_loads_without_data(mat: Path, run: Path) -> None:
    ckpt = run / "checkpoints/last.ckpt"
    assert _metrics(run)["ACC"] > 0.4 and json.loads((run / "test_metrics.json").read_text())["ckpt_path"] == str(ckpt)
    main(["test", "-c", str(run / "config.yaml"), "--ckpt_path", str(ckpt), *QUIET])
    again = run.parent / f"version_{int(run.name.split('_')[1]) + 1}"
    assert _metrics(again) == _metrics(run)
    model = KMeansBaseline.load_from_checkpoint(ckpt, weights_only=True).eval()  # no data: K from the centres
    assert model.num_clusters == 3 and model.hparams.num_clusters is None and bool(model.centers_fitted)
    dm = MultiViewDataModule(str(mat), semantic_graph=SemanticGraph(**GRAPH))
    pred = torch.cat([model(b) for b in dm.predict_dataloader()])
    from lightning_kd.metrics.clustering import clustering_metrics

    scores = clustering_metrics(pred, dm.splits["test"].target)
    assert {k: float(scores[k]) for k in KEYS} == pytest.approx(_metrics(run), abs=1e-6)


def test_exported_graph_assigns_every_sample_like_the_module(mat: Path, run: Path, tmp_path: Path) -> None:
    result = export_run(run / "config.yaml", run / "checkpoints/last.ckpt", "onnx", tmp_path / "km.onnx", build_only)
    assert result.signature.names == ("view_0", "view_1", "view_2") and result.signature.output == "cluster"
    model = KMeansBaseline.load_from_checkpoint(run / "checkpoints/last.ckpt", weights_only=True).eval()
    split = MultiViewDataModule(str(mat), semantic_graph=SemanticGraph(**GRAPH)).splits["test"]
    views = [split.inputs[f"view_{i}"] for i in range(3)]
    exported = run_exported(result.path, "onnx", views, result.signature.names)
    assert torch.equal(exported, model.assign(torch.cat(views, 1)))


def _one_line(capsys: pytest.CaptureFixture[str], exc: pytest.ExceptionInfo[SystemExit]) -> str:
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("lightning-kd: error:") and "\n" not in err and "Traceback" not in err, err
    return err


def test_checkpoint_of_another_method_or_data_is_refused(mat: Path, run: Path, tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    ckpt = run / "checkpoints/last.ckpt"
    data = ["--data.init_args.path", str(mat), "--trainer.logger.init_args.save_dir", str(tmp_path), *QUIET]
    with pytest.raises(SystemExit) as exc:  # a k-means checkpoint given to VLSG
        main(["test", "-c", str(ROOT / "configs/vlsg/mat.yaml"), "--ckpt_path", str(ckpt), *data])
    assert "holds a lightning_kd.methods.kmeans.module.KMeansBaseline model, but the config builds " \
           "lightning_kd.methods.vlsg.module.VLSG" in _one_line(capsys, exc)
    forged = torch.load(ckpt, weights_only=True)  # the same file, tagged as VLSG's
    forged["lightning_kd"]["method"] = "lightning_kd.methods.vlsg.module.VLSG"
    torch.save(forged, tmp_path / "vlsg.ckpt")
    with pytest.raises(SystemExit) as exc:
        main(["test", "-c", str(CONFIG), "--ckpt_path", str(tmp_path / "vlsg.ckpt"), *data])
    assert "holds a lightning_kd.methods.vlsg.module.VLSG model, but the config builds " \
           "lightning_kd.methods.kmeans.module.KMeansBaseline" in _one_line(capsys, exc)
    other = tmp_path / "k4.mat"  # four classes: four centres are expected, the checkpoint holds three
    main(["generate", "multiview", "--out", str(other), "--n", "60", "--dims", "8", "6", "4", "--clusters", "4"])
    with pytest.raises(SystemExit) as exc:
        main(["test", "-c", str(CONFIG), "--ckpt_path", str(ckpt), *data, "--data.init_args.path", str(other)])
    assert "checkpoint holds 3 centres of 18 features but the model is built for 4 of 18" in _one_line(capsys, exc)
    assert not list(tmp_path.glob("kmeans/mat/version_*"))  # failed runs leave no run directory


@pytest.mark.parametrize(("args", "match"), [
    (["--model.init_args.features=concat"], "features is 'concat', but the datamodule low-pass filters"),
    (["--data.init_args.semantic_graph=null"], "features is 'filtered', but the datamodule builds no semantic graph"),
    (["--model.init_args.features=raw"], "features"),
])
def test_features_must_say_what_the_data_gives(mat: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                               args: list[str], match: str) -> None:
    with pytest.raises(SystemExit) as exc:
        _fit(mat, tmp_path, *args)
    assert exc.value.code == 2 and match in capsys.readouterr().err


def test_configs_share_vlsg_data_and_the_suite_rows_are_consistent() -> None:
    """configs/kmeans/X.yaml carry configs/vlsg/X.yaml's data group and build on the k-means run policy; every
    k-means row of the clustering suite resolves to features that match its data (no graph filter for concat)."""
    for name in ("mfeat", "mat"):
        raw = yaml.safe_load((ROOT / f"configs/kmeans/{name}.yaml").read_text())
        vlsg = yaml.safe_load((ROOT / f"configs/vlsg/{name}.yaml").read_text())
        assert next(iter(raw)) == "config" and raw["config"] == "../run/kmeans.yaml" and raw["data"] == vlsg["data"]
        assert {k for k in raw if k.startswith("trainer")} == {"trainer.logger.init_args.name"}
    suite = load_suite(ROOT / "configs/benchmark/clustering.yaml")
    rows = {m: v for m, v in suite.methods.items() if m.startswith("kmeans")}
    assert set(rows) == {"kmeans_concat", "kmeans_balanced", "kmeans_balanced_filtered"}
    for name, m in rows.items():
        cfg = resolved_config("-c", str(ROOT / m["configs"][0]), *suite.datasets["mfeat"]["args"], *m["args"])
        model, graph = cfg["model"]["init_args"], cfg["data"]["init_args"]["semantic_graph"]
        assert cfg["model"]["class_path"] == "lightning_kd.methods.kmeans.KMeansBaseline"
        assert (model["features"] == "filtered") == (graph is not None), name
        assert model["balance_views"] == ("balanced" in name), name


def test_more_than_one_process_is_refused() -> None:
    """scikit-learn k-means runs in one process; DDP would fail later on a module without parameters."""
    from types import SimpleNamespace

    model = KMeansBaseline({"view_0": 4, "view_1": 3}, num_clusters=2)
    model._trainer = SimpleNamespace(world_size=2, datamodule=None)
    with pytest.raises(ConfigError, match="runs in one process .* Fix: --trainer.devices 1"):
        model.setup("fit")
