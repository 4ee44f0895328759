"""``lightning-kd export``: every method's exported graph (ONNX Runtime, TorchScript) gives the LightningModule's eval
outputs on a test batch (another batch size than the traced one; a removed modality for DMD / CorrKD), and bad
input stops with one line."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch

from conftest import ROOT, TINY_MODEL_ARGS
from lightning_kd.cli import main
from lightning_kd.data.batch import Batch
from lightning_kd.data.missing import MissingAugmentation, MissingCondition
from lightning_kd.export import FORMATS, batch_inputs, export_module, run_exported, wrap

pytestmark = pytest.mark.usefixtures("single_thread")

ATOL = 1e-4  # float32 on the CPU; measured differences are below 1e-6
EXAMPLE_BATCH = 2  # the traced batch size; every check runs another


def _trainer(root: Path, **kw: object) -> pl.Trainer:
    args: dict[str, object] = {"logger": False, "enable_checkpointing": False, "enable_progress_bar": False,
                               "enable_model_summary": False, "accelerator": "cpu", "devices": 1, "max_epochs": 1,
                               "limit_train_batches": 2, "limit_val_batches": 0, "num_sanity_val_steps": 0,
                               "default_root_dir": str(root)}
    args.update(kw)
    return pl.Trainer(**args)


def _fit(module: pl.LightningModule, dm: pl.LightningDataModule, root: Path, **kw: object) -> pl.LightningModule:
    pl.seed_everything(0, verbose=False)
    _trainer(root, **kw).fit(module, datamodule=dm)
    return module.eval()


def _save_untrained(module: pl.LightningModule, path: Path) -> Path:
    """A real checkpoint of a fresh module, written through a Trainer (as `lightning-kd fit` writes one)."""
    tr = pl.Trainer(logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                    max_epochs=0, accelerator="cpu", devices=1)
    tr.strategy.connect(module)
    tr.save_checkpoint(path)
    return path


# -- one builder per method: a module trained for a step or two, its datamodule, its eval path -----------------
Built = tuple[pl.LightningModule, pl.LightningDataModule, Callable[[pl.LightningModule, Batch], torch.Tensor]]


def _mmsa(path: Path, **kw: object) -> pl.LightningDataModule:
    from lightning_kd.data.formats.mmsa import MMSADataModule

    return MMSADataModule(path=str(path), batch_size=8, **kw)


def build_dmd(tmp: Path, data: Path) -> Built:
    """(DMD and the fusion baseline validate once: their plateau schedule reads val/loss.)"""
    from lightning_kd.methods.dmd import DMD

    dm = _mmsa(data)
    module = DMD(dm.feature_dims, dm.seq_lens, net={"hidden": 8, "heads": 2, "layers": 1}, lr=1e-3)
    return _fit(module, dm, tmp, limit_val_batches=1), dm, lambda m, b: m.predict_scores(b)


def build_fusion(tmp: Path, data: Path) -> Built:
    from lightning_kd.methods.fusion import FusionBaseline

    dm = _mmsa(data)
    module = FusionBaseline(dm.feature_dims, dm.seq_lens, net={"hidden": 8, "heads": 2, "layers": 1}, lr=1e-3)
    return _fit(module, dm, tmp, limit_val_batches=1), dm, lambda m, b: m.predict_scores(b)


def build_corrkd(tmp: Path, data: Path) -> Built:
    from lightning_kd.methods.corrkd import CorrKD

    small = {"net": {"dim": 8, "heads": 2, "layers": 1}, "loss": {"mi_hidden": 8}}
    dm = _mmsa(data)
    teacher = _save_untrained(CorrKD(dm.feature_dims, role="teacher", **small), tmp / "corrkd_teacher.ckpt")
    dm = _mmsa(data, train_missing=MissingAugmentation(min_rate=0.0, max_rate=1.0, modality_prob=0.5))
    module = CorrKD(dm.feature_dims, role="student", teacher_ckpt=str(teacher), **small)
    return _fit(module, dm, tmp), dm, lambda m, b: m(b).logits


def build_cdgkd(tmp: Path, data: Path) -> Built:
    from cdgkd_helpers import TinyEEGFaceData, save_tiny, tiny_module_kwargs

    from lightning_kd.methods.cdgkd import CDGKD

    teacher = save_tiny(tmp / "cdgkd_teacher.ckpt", role="teacher")
    module = CDGKD(**tiny_module_kwargs(role="student", teacher_ckpts=[str(teacher)]))
    dm = TinyEEGFaceData(seed=0)
    return _fit(module, dm, tmp), dm, lambda m, b: m.class_logits(b)


def build_mt_pkdot(tmp: Path, data: Path) -> Built:
    from mt_pkdot_helpers import TinyVideoBioData, tiny_kwargs

    from lightning_kd.methods.mt_pkdot import MTPKDOT

    teachers = [str(_save_untrained(MTPKDOT(**tiny_kwargs(role)), tmp / f"{role}.ckpt"))
                for role in ("align", "hallucination")]
    module = MTPKDOT(**tiny_kwargs("student", teacher_ckpts=teachers))
    dm = TinyVideoBioData(seed=0)
    return _fit(module, dm, tmp), dm, lambda m, b: m.predictions(b)


def build_vlsg(tmp: Path, data: Path) -> Built:
    from lightning_kd.data.generate.multiview import SyntheticMultiViewDataModule
    from lightning_kd.methods.vlsg import VLSG

    dm = SyntheticMultiViewDataModule(path=str(tmp / "mv.mat"), n=120, batch_size=32)
    module = VLSG(dm.feature_dims, net={"hidden": [32, 32], "latent": 16, "feature_dim": 8}, kmeans_init=2,
                  pretrain_epochs=0, lr=1e-3)
    module = _fit(module, dm, tmp, limit_val_batches=1.0)  # the validation epoch end fits the k-means centres
    assert bool(module.centers_fitted)
    return module, dm, lambda m, b: m(b)


BUILDERS = {"dmd": build_dmd, "fusion": build_fusion, "corrkd": build_corrkd, "cdgkd": build_cdgkd,
            "mt_pkdot": build_mt_pkdot, "vlsg": build_vlsg}
#: a setting without audio: the all-False mask (and zero features) of a removed modality
REMOVED = {"dmd": "lv", "corrkd": "lv"}


def _check(module: pl.LightningModule, eval_path: Callable, batch: Batch, files: dict[str, Path]) -> None:
    wrapper = wrap(module)
    with torch.no_grad():
        expected = eval_path(module, batch)
    inputs = batch_inputs(batch, wrapper.signature)
    for fmt, path in files.items():
        got = run_exported(path, fmt, inputs, wrapper.signature.names)
        assert got.shape == expected.shape and got.dtype == expected.dtype, fmt
        if expected.dtype == torch.int64:  # cluster ids
            assert torch.equal(got, expected), fmt
        else:
            torch.testing.assert_close(got, expected, atol=ATOL, rtol=0, msg=lambda m, f=fmt: f"{f}: {m}")


@pytest.mark.parametrize("method", list(BUILDERS))
def test_exported_graph_gives_the_eval_outputs(method: str, tiny_mmsa_aligned: Path, tmp_path: Path) -> None:
    module, dm, eval_path = BUILDERS[method](tmp_path, tiny_mmsa_aligned)
    wrapper = wrap(module)
    dm.setup("test")
    batch = next(iter(dm.test_dataloader()))
    assert len(batch) not in (EXAMPLE_BATCH, 1)
    example = tuple(t[:EXAMPLE_BATCH] for t in batch_inputs(batch, wrapper.signature))
    files = {fmt: export_module(wrapper, example, fmt, tmp_path / f"{method}.{fmt}") for fmt in FORMATS}
    assert not module.training and all(not m.training for m in module.modules())  # export left eval mode on
    assert sorted(p.name for p in tmp_path.glob(f".{method}*")) == []  # no temporary file left
    _check(module, eval_path, batch, files)
    if method in REMOVED:
        removed = MissingCondition(0.0, REMOVED[method], seed=0).apply(batch, dm.modality_layout)
        assert not removed.masks["audio"].any() and not removed.inputs["audio"].any()
        _check(module, eval_path, removed, files)
        if method == "corrkd":  # a removed modality changes the prediction (the mask is read, not ignored)
            with torch.no_grad():
                assert not torch.allclose(eval_path(module, removed), eval_path(module, batch))


def test_wrapper_names_follow_the_data_contract(tiny_mmsa_aligned: Path) -> None:
    from lightning_kd.methods.corrkd import CorrKD
    from lightning_kd.methods.dmd import DMD

    dm = _mmsa(tiny_mmsa_aligned)
    sig = wrap(CorrKD(dm.feature_dims, net={"dim": 8, "heads": 2, "layers": 1})).signature
    assert sig.names == ("text", "audio", "vision", "text_mask", "audio_mask", "vision_mask")
    assert sig.output == "logits"
    sig = wrap(DMD(dm.feature_dims, dm.seq_lens, net={"hidden": 8, "heads": 2, "layers": 1})).signature
    assert sig.names == ("text", "audio", "vision") and sig.output == "score"


# -- the command --------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def dmd_run(tiny_mmsa_aligned: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A real run directory of a tiny DMD fit: (config.yaml, checkpoint)."""
    save = tmp_path_factory.mktemp("export_runs")
    main(["fit", "-c", str(ROOT / "configs/dmd/mosi_aligned.yaml"), "--data.init_args.path", str(tiny_mmsa_aligned),
          "--trainer.logger.init_args.save_dir", str(save), *TINY_MODEL_ARGS, "--trainer.max_epochs=1",
          "--trainer.limit_train_batches=2"])
    config = next(save.rglob("config.yaml"))
    ckpt = next(save.rglob("*.ckpt"))
    return config, ckpt


@pytest.mark.slow
def test_cli_exports_a_run(dmd_run: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config, ckpt = dmd_run
    out = tmp_path / "deploy" / "dmd.onnx"
    main(["export", "-c", str(config), "--ckpt_path", str(ckpt), "--format", "onnx", "--out", str(out)])
    printed = capsys.readouterr().out
    assert f"wrote {out}" in printed and "inputs text, audio, vision -> score" in printed
    x = (torch.randn(5, 12, 32), torch.randn(5, 12, 5), torch.randn(5, 12, 7))
    assert run_exported(out, "onnx", x).shape == (5,)
    assert sorted(p.name for p in out.parent.iterdir()) == ["dmd.onnx"]


def _one_line_error(capsys: pytest.CaptureFixture[str], exc: pytest.ExceptionInfo[SystemExit]) -> str:
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("lightning-kd: error:") and "\n" not in err and "Traceback" not in err, err
    return err


def test_cli_bad_input_is_one_line(dmd_run: tuple[Path, Path], tmp_path: Path,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    from cdgkd_helpers import save_tiny

    config, ckpt = dmd_run
    out = tmp_path / "out" / "m.onnx"
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    other = save_tiny(tmp_path / "cdgkd.ckpt")
    cases = [  # arguments, what the line says (it names the file at fault, or points to --help)
        (["-c", str(tmp_path / "no.yaml"), "--ckpt_path", str(ckpt)], f"{tmp_path / 'no.yaml'} not found"),
        (["-c", str(config), "--ckpt_path", str(tmp_path / "no.ckpt")], f"{tmp_path / 'no.ckpt'} not found"),
        (["-c", str(config), "--ckpt_path", str(other)],
         f"{other} holds a lightning_kd.methods.cdgkd.module.CDGKD model, but the config builds"),
        (["-c", str(config), "--ckpt_path", str(ckpt), "--format", "tflite"], "invalid choice: 'tflite'"),
        (["-c", str(config), "--ckpt_path", str(ckpt), "--out", str(a_file / "m.onnx")],
         f"{a_file / 'm.onnx'} cannot be written: {a_file} is a file"),
    ]
    for args, expected in cases:
        with pytest.raises(SystemExit) as exc:
            main(["export", "--format", "onnx", "--out", str(out), *args])
        err = _one_line_error(capsys, exc)
        assert expected in err, err
        assert "Fix:" in err or "use the config of the method" in err or "--help" in err, err
    assert not out.exists() and not out.parent.exists()


def test_help_and_missing_onnx_packages(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    import importlib.util

    from lightning_kd.checkpoint import ConfigError
    from lightning_kd.export import require_onnx

    with pytest.raises(SystemExit) as exc:
        main(["export", "--help"])
    assert exc.value.code == 0 and "--format {onnx,torchscript}" in capsys.readouterr().out
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "onnxruntime" else find_spec(name))
    with pytest.raises(ConfigError, match=r"needs onnxruntime \(the `export` extra\)\. Fix: pip install"):
        require_onnx()


def test_students_export_before_their_teachers_are_loaded(tiny_mmsa_aligned: Path, tmp_path: Path) -> None:
    """`lightning-kd export` builds a student without loading its teachers (they are loaded only to fit)."""
    from lightning_kd.methods.corrkd import CorrKD

    dm = _mmsa(tiny_mmsa_aligned)
    student = CorrKD(dm.feature_dims, role="student", teacher_ckpt=str(tmp_path / "never_read.ckpt"),
                     net={"dim": 8, "heads": 2, "layers": 1})
    wrapper = wrap(student)
    dm.setup("test")
    batch = next(iter(dm.test_dataloader()))
    x = batch_inputs(batch, wrapper.signature)
    for fmt in FORMATS:
        path = export_module(wrapper, tuple(t[:EXAMPLE_BATCH] for t in x), fmt, tmp_path / f"s.{fmt}")
        with torch.no_grad():
            torch.testing.assert_close(run_exported(path, fmt, x), student(batch).logits, atol=ATOL, rtol=0)
