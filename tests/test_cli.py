"""End-to-end CLI behaviour: fit -> test -> predict through checkpoints, run directories, resume, errors."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch

from conftest import ROOT, TINY_MODEL_ARGS
from lightning_kd.checkpoint import load_checkpoint
from lightning_kd.cli import build_cli, main
from lightning_kd.data.formats.mmsa import read_mmsa
from lightning_kd.metrics import MMSA_KEYS


def _run_dir(tmp_path: Path, version: int, name: str = "dmd/mosi_aligned") -> Path:
    return tmp_path / "runs" / name / f"version_{version}"


def test_fit_test_predict_roundtrip(tiny_run_args: list[str], tmp_path: Path) -> None:
    main(["fit", *tiny_run_args, "--trainer.max_epochs=2", "--test_after_fit=true"])
    fit_dir = _run_dir(tmp_path, 0)
    assert (fit_dir / "config.yaml").is_file()
    fit_metrics = json.loads((fit_dir / "test_metrics.json").read_text())["metrics"]
    assert set(MMSA_KEYS) <= set(fit_metrics)
    best = [p for p in (fit_dir / "checkpoints").glob("epoch*.ckpt")]
    assert len(best) == 1 and (fit_dir / "checkpoints" / "last.ckpt").is_file()

    # feature dims and lengths were linked from the data into the model, not written in the config
    hp = load_checkpoint(best[0])["hyper_parameters"]
    assert hp["feature_dims"] == {"text": 32, "audio": 5, "vision": 7}
    assert hp["seq_lens"] == {"text": 12, "audio": 12, "vision": 12}
    assert load_checkpoint(best[0])["lightning_kd"]["method"].endswith("DMD")

    # test from the saved config + best checkpoint reproduces the numbers, in a NEW run directory
    cfg = str(fit_dir / "config.yaml")
    main(["test", "-c", cfg, "--ckpt_path", str(best[0])])
    test_metrics = json.loads((_run_dir(tmp_path, 1) / "test_metrics.json").read_text())["metrics"]
    for k in MMSA_KEYS:
        assert test_metrics[k] == pytest.approx(fit_metrics[k], abs=1e-6), k

    main(["predict", "-c", cfg, "--ckpt_path", str(best[0])])
    rows = list(csv.DictReader((_run_dir(tmp_path, 2) / "predictions.csv").open()))
    assert len(rows) == 16 and set(rows[0]) == {"id", "prediction", "target"}
    assert rows[0]["id"].startswith("synthtest_")
    mae = sum(abs(float(r["prediction"]) - float(r["target"])) for r in rows) / len(rows)
    assert mae == pytest.approx(test_metrics["MAE"], abs=1e-4)
    # the earlier runs are untouched
    assert (fit_dir / "test_metrics.json").is_file() and (fit_dir / "checkpoints" / "last.ckpt").is_file()


def test_resume_from_last_checkpoint_matches_uninterrupted(tiny_mmsa_aligned: Path, tmp_path: Path) -> None:
    def fit(save_dir: Path, epochs: int, ckpt: Path | None = None) -> None:
        args = ["fit", "-c", str(ROOT / "configs/dmd/mosi_aligned.yaml"), "--data.init_args.path",
                str(tiny_mmsa_aligned), "--trainer.logger.init_args.save_dir", str(save_dir), *TINY_MODEL_ARGS,
                f"--trainer.max_epochs={epochs}"]
        main(args + (["--ckpt_path", str(ckpt)] if ckpt else []))

    fit(tmp_path / "a", 4)
    fit(tmp_path / "b", 2)
    last_b = tmp_path / "b/dmd/mosi_aligned/version_0/checkpoints/last.ckpt"
    fit(tmp_path / "b", 4, last_b)
    a = load_checkpoint(tmp_path / "a/dmd/mosi_aligned/version_0/checkpoints/last.ckpt")
    b = load_checkpoint(tmp_path / "b/dmd/mosi_aligned/version_1/checkpoints/last.ckpt")
    assert a["epoch"] == b["epoch"] == 3
    assert a["state_dict"].keys() == b["state_dict"].keys()
    for k in a["state_dict"]:
        torch.testing.assert_close(a["state_dict"][k], b["state_dict"][k], rtol=0, atol=0, msg=k)
    # and the run actually trained (weights differ from a 2-epoch run)
    mid = load_checkpoint(last_b)["state_dict"]
    assert any(not torch.equal(mid[k], a["state_dict"][k]) for k in mid if mid[k].is_floating_point())


def test_fusion_baseline_config_builds_on_dmd_protocol(tiny_mmsa_aligned: Path, tmp_path: Path) -> None:
    main(["fit", "-c", str(ROOT / "configs/fusion/mosi_aligned.yaml"), "--data.init_args.path", str(tiny_mmsa_aligned),
          *TINY_MODEL_ARGS, "--trainer.logger.init_args.save_dir", str(tmp_path / "runs"), "--trainer.max_epochs=1",
          "--test_after_fit=true"])
    d = _run_dir(tmp_path, 0, "fusion/mosi_aligned")
    ck = load_checkpoint(d / "checkpoints" / "last.ckpt")
    assert ck["lightning_kd"]["method"].endswith("FusionBaseline")
    assert set(MMSA_KEYS) <= set(json.loads((d / "test_metrics.json").read_text())["metrics"])


def test_print_config(tiny_run_args: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["fit", *tiny_run_args, "--print_config"])
    assert exc.value.code in (0, None)
    out = capsys.readouterr().out
    assert "class_path: lightning_kd.methods.dmd.DMD" in out and "accumulate_grad_batches" in out


def test_missing_data_file_is_a_clear_error(tiny_run_args: list[str], tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "nowhere" / "aligned_50.pkl"
    with pytest.raises(SystemExit) as exc:
        main(["fit", *tiny_run_args, "--data.init_args.path", str(missing)])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("lightning-kd: error:") and "\n" not in err and str(missing) in err


def test_generate_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "gen.pkl"
    main(["generate", "mmsa", "--out", str(out), "--n", "8", "4", "4", "--dims", "16", "5", "7",
          "--lengths", "6", "6", "6"])
    assert out.is_file() and str(out) in capsys.readouterr().out
    splits = read_mmsa(out)  # the written file is a valid MMSA pickle of the requested sizes
    assert [len(splits[s].ids) for s in ("train", "valid", "test")] == [8, 4, 4]
    assert {k: v.shape[1:] for k, v in splits["train"].inputs.items()} == {
        "text": (6, 16), "audio": (6, 5), "vision": (6, 7)}


def test_wandb_logger_offline(tiny_run_args: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    save = tmp_path / "wb"
    main(["fit", *tiny_run_args, "--trainer.max_epochs=1", "--test_after_fit=true",
          "-c", str(ROOT / "configs/loggers/wandb.yaml"),
          f"--trainer.logger.init_args.save_dir={save}", "--trainer.logger.init_args.project=lkd-test"])
    runs = [p for p in (save / "lkd-test").iterdir() if p.is_dir()]
    assert len(runs) == 1, runs
    run = runs[0]
    assert (run / "config.yaml").is_file() and (run / "test_metrics.json").is_file()
    assert list((run / "checkpoints").glob("*.ckpt"))
    assert list((save / "wandb").glob("offline-run-*")), "wandb wrote no offline run"


def test_wandb_sweep_command_drives_the_cli(tiny_mmsa_aligned: Path, tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    """Expand the sweep's command as a wandb agent does (${args} -> --key=value) and parse it."""
    import yaml

    sweep = yaml.safe_load((ROOT / "configs/sweeps/dmd_synthetic.yaml").read_text())
    cmd = sweep["command"]
    assert cmd[:3] == ["${env}", "lightning-kd", "fit"] and cmd[-1] == "${args}"
    args = []
    for key, spec in sweep["parameters"].items():
        value = spec["values"][0] if "values" in spec else spec["min"]
        args.append(f"--{key}={value}")
    argv = [str(ROOT / a) if a.startswith("configs/") else a for a in cmd[2:-1]] + args
    with pytest.raises(SystemExit):
        main(argv + ["--data.init_args.path", str(tiny_mmsa_aligned), "--print_config"])
    out = yaml.safe_load(capsys.readouterr().out)
    gd_weight = sweep["parameters"]["model.init_args.loss.gd_weight"]["values"][0]
    assert out["model"]["init_args"]["loss"]["gd_weight"] == gd_weight
    assert out["trainer"]["logger"]["class_path"].endswith("WandbLogger")


@pytest.mark.parametrize("config", ["mosi_aligned", "mosi_unaligned", "mosei_aligned", "mosei_unaligned", "synthetic"])
def test_every_dmd_config_trains(config: str, tiny_mmsa: dict[str, Path], tmp_path: Path) -> None:
    """Each shipped config runs a fast_dev_run fit + test on a generated file of its layout."""
    if config == "synthetic":
        data = ["--data.init_args.path", str(tmp_path / "synth.pkl"), "--data.init_args.n=[24,8,8]",
                "--data.init_args.dims=[32,5,7]", "--data.init_args.lengths=[12,12,12]"]
    else:
        data = ["--data.init_args.path", str(tiny_mmsa["unaligned" if "unaligned" in config else "aligned"])]
    cli = build_cli(["fit", "-c", str(ROOT / f"configs/dmd/{config}.yaml"), *data, *TINY_MODEL_ARGS,
                     "--trainer.logger.init_args.save_dir", str(tmp_path / "runs"), "--trainer.fast_dev_run=1"])
    assert cli.trainer.state.finished and cli.trainer.global_step == 1  # one optimiser step of the fit
    assert cli.trainer.state.fn == "test"  # test_after_fit ran the test loop after it
    assert set(MMSA_KEYS) <= {k.removeprefix("test/") for k in cli.trainer.callback_metrics}
    assert all(torch.isfinite(cli.trainer.callback_metrics[f"test/{k}"]) for k in MMSA_KEYS)
    assert not (tmp_path / "runs").exists()  # a smoke run writes no files
    if config == "synthetic":
        assert (tmp_path / "synth.pkl").is_file()
