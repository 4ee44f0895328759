"""Shipped configs: composed on the run policy written once (configs/run/), resolved completely, re-runnable
alone; options of networks and objectives declared once (dataclasses) and stored as plain data."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch
import yaml

from conftest import ROOT, TINY_MODEL_ARGS, resolved_config
from lightning_kd.checkpoint import ConfigError
from lightning_kd.cli import main
from lightning_kd.methods.corrkd import CorrKD, CorrKDLossOptions, CorrKDNetOptions
from lightning_kd.methods.dmd import DMD, DMDLossOptions, DMDNetOptions
from lightning_kd.methods.dmd.model import BackboneOptions
from lightning_kd.methods.fusion import FusionBaseline
from lightning_kd.options import options, plain

pytestmark = pytest.mark.usefixtures("single_thread")

METHODS = ("dmd", "fusion", "corrkd", "vlsg")
CONFIGS = sorted(p.relative_to(ROOT / "configs").as_posix() for m in METHODS for p in (ROOT / "configs" / m).glob("*.yaml"))
BEST = "epoch{epoch:03d}-val_loss{val/loss:.4f}"
MMSA_DIMS, MMSA_LENS = {"text": 32, "audio": 5, "vision": 7}, {"text": 12, "audio": 12, "vision": 12}


def _callbacks(cfg: dict) -> list[tuple[str, dict]]:
    return [(c["class_path"].rsplit(".", 1)[-1], c.get("init_args", {})) for c in cfg["trainer"]["callbacks"]]


def test_every_method_config_is_listed() -> None:
    assert len(CONFIGS) == 22 and sum(not c.startswith("fusion/") for c in CONFIGS) == 20  # + dmd/mosi_aligned_bert, corrkd compact


@pytest.mark.parametrize("config", CONFIGS)
def test_run_policy_is_not_repeated_in_method_configs(config: str) -> None:
    """A method x dataset config builds on another file and sets no trainer block, callback or seed of its own."""
    raw = yaml.safe_load((ROOT / "configs" / config).read_text())
    first = next(iter(raw))
    assert first == "config", f"{config}: `config: <file>` must be the first key (what it builds on)"
    assert (ROOT / "configs" / config).parent.joinpath(raw["config"]).is_file()
    assert "trainer" not in raw and "seed_everything" not in raw and "test_after_fit" not in raw
    assert "trainer.callbacks" not in raw
    assert set(k for k in raw if k.startswith("trainer.")) <= {
        "trainer.logger.init_args.name", "trainer.max_epochs", "trainer.check_val_every_n_epoch"}


@pytest.mark.parametrize("config", CONFIGS)
def test_every_config_resolves_to_its_run_policy(config: str) -> None:
    """Resolved, each config has its own run name and the run policy of its method family."""
    cfg = resolved_config("-c", str(ROOT / "configs" / config))
    method, stem = config[:-len(".yaml")].split("/")
    assert "config" not in cfg
    assert cfg["trainer"]["logger"]["class_path"] == "lightning.pytorch.loggers.CSVLogger"
    assert cfg["trainer"]["logger"]["init_args"] == {**cfg["trainer"]["logger"]["init_args"], "save_dir": "runs",
                                                     "name": f"{method}/{stem}"}
    assert cfg["seed_everything"] == 1111 and cfg["test_after_fit"] is True and cfg["trainer"]["devices"] == 1
    cbs = _callbacks(cfg)
    best = ("ModelCheckpoint", {"monitor": "val/loss", "mode": "min", "save_top_k": 1, "filename": BEST})
    if method in ("dmd", "fusion", "corrkd"):
        # the first ModelCheckpoint is the best one: `test_after_fit` and `pipeline` read it
        assert cbs[0][0] == "ModelCheckpoint" and {k: cbs[0][1][k] for k in best[1]} == best[1]
        assert cbs[1][0] == "ModelCheckpoint" and cbs[1][1]["filename"] == "last" and cbs[1][1]["monitor"] is None
    if method in ("dmd", "fusion"):
        assert [n for n, _ in cbs] == ["ModelCheckpoint", "ModelCheckpoint", "EarlyStopping", "SummedAccumulationClipping"]
        assert cbs[2][1]["patience"] == 10
        t = cfg["trainer"]
        # the official protocol: 10 summed batches, clip 0.6 after every backward (the callback), never Lightning's clip
        assert (t["accumulate_grad_batches"], t["gradient_clip_val"], cbs[3][1]["clip_value"]) == (10, None, 0.6)
        assert t["max_epochs"] == (5 if stem == "synthetic" else 200)
    elif method == "corrkd":
        assert [n for n, _ in cbs] == ["ModelCheckpoint", "ModelCheckpoint"]
        assert cfg["trainer"]["max_epochs"] == {"mosi": 50, "mosei": 20, "iemocap": 30, "synthetic": 30}[stem.split("_")[0]]
    else:
        assert [n for n, _ in cbs] == ["ModelCheckpoint", "EmbeddingPlot"]
        last = cbs[0][1]
        assert (last["filename"], last["every_n_epochs"], last["save_on_train_epoch_end"]) == ("last", 1, True)
        assert cfg["trainer"]["check_val_every_n_epoch"] == (5 if stem == "synthetic" else 10)


def test_composed_configs_keep_what_they_build_on() -> None:
    """mosi_unaligned builds on mosi_aligned (same model); fusion on DMD (same data and protocol)."""
    aligned = resolved_config("-c", str(ROOT / "configs/dmd/mosi_aligned.yaml"))
    unaligned = resolved_config("-c", str(ROOT / "configs/dmd/mosi_unaligned.yaml"))
    assert unaligned["model"] == aligned["model"] and unaligned["trainer"]["callbacks"] == aligned["trainer"]["callbacks"]
    assert unaligned["data"]["init_args"]["path"] == "data/MOSI/Processed/unaligned_50.pkl"
    assert aligned["model"]["init_args"]["net"]["hidden"] == 50
    assert resolved_config("-c", str(ROOT / "configs/dmd/mosei_unaligned.yaml"))["model"]["init_args"]["net"] == \
        resolved_config("-c", str(ROOT / "configs/dmd/mosei_aligned.yaml"))["model"]["init_args"]["net"]
    fusion = resolved_config("-c", str(ROOT / "configs/fusion/mosi_aligned.yaml"))
    assert fusion["model"]["class_path"] == "lightning_kd.methods.fusion.FusionBaseline"
    assert fusion["data"] == aligned["data"] and fusion["trainer"]["callbacks"] == aligned["trainer"]["callbacks"]


def test_cli_overrides_reach_nested_options() -> None:
    cfg = resolved_config("-c", str(ROOT / "configs/dmd/mosi_aligned.yaml"), "--model.init_args.net.hidden", "8",
                          "--model.init_args.loss.gd_weight=0.2")
    net, loss = cfg["model"]["init_args"]["net"], cfg["model"]["init_args"]["loss"]
    assert net == {**plain(DMDNetOptions()), "hidden": 8, "heads": 10}  # every field is shown, with its default
    assert loss == {**plain(DMDLossOptions()), "gd_weight": 0.2}
    corrkd = resolved_config("-c", str(ROOT / "configs/corrkd/mosei_student.yaml"), "--model.init_args.net.dim=16")
    assert corrkd["model"]["init_args"]["net"] == {**plain(CorrKDNetOptions()), "dim": 16, "heads": 8}
    assert corrkd["model"]["init_args"]["loss"] == plain(CorrKDLossOptions())


def test_saved_config_is_complete_and_reruns_alone(tiny_mmsa_unaligned: Path, tmp_path: Path) -> None:
    """A config three files deep (mosi_unaligned -> mosi_aligned -> run/dmd -> run/default): the run directory's
    config.yaml holds everything resolved and reproduces the run by itself."""
    args = ["-c", str(ROOT / "configs/dmd/mosi_unaligned.yaml"), "--data.init_args.path", str(tiny_mmsa_unaligned),
            "--trainer.logger.init_args.save_dir", str(tmp_path / "runs"), *TINY_MODEL_ARGS,
            "--trainer.max_epochs=1", "--trainer.limit_train_batches=2", "--trainer.limit_val_batches=1",
            "--test_after_fit=false"]
    main(["fit", *args])
    run = tmp_path / "runs/dmd/mosi_unaligned/version_0"
    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert "config" not in saved
    assert [c["class_path"].rsplit(".", 1)[-1] for c in saved["trainer"]["callbacks"]] == \
        ["ModelCheckpoint", "ModelCheckpoint", "EarlyStopping", "SummedAccumulationClipping"]
    assert saved["trainer"]["accumulate_grad_batches"] == 1 and saved["model"]["init_args"]["net"]["hidden"] == 8
    main(["fit", "-c", str(run / "config.yaml")])
    again = tmp_path / "runs/dmd/mosi_unaligned/version_1"
    a = torch.load(run / "checkpoints/last.ckpt", weights_only=True)
    b = torch.load(again / "checkpoints/last.ckpt", weights_only=True)
    for k in a["state_dict"]:
        torch.testing.assert_close(a["state_dict"][k], b["state_dict"][k], rtol=0, atol=0, msg=k)


@pytest.mark.parametrize("config", ["mosi_aligned", "synthetic"])
def test_every_fusion_config_trains_alone(config: str, tiny_mmsa_aligned: Path, tmp_path: Path) -> None:
    data = (["--data.init_args.path", str(tmp_path / "synth.pkl"), "--data.init_args.n=[24,8,8]",
             "--data.init_args.dims=[32,5,7]", "--data.init_args.lengths=[12,12,12]"] if config == "synthetic"
            else ["--data.init_args.path", str(tiny_mmsa_aligned)])
    main(["fit", "-c", str(ROOT / f"configs/fusion/{config}.yaml"), *data, *TINY_MODEL_ARGS,
          "--trainer.logger.init_args.save_dir", str(tmp_path / "runs"), "--trainer.max_epochs=1",
          "--trainer.limit_train_batches=1", "--trainer.limit_val_batches=1", "--test_after_fit=false"])
    ck = torch.load(tmp_path / f"runs/fusion/{config}/version_0/checkpoints/last.ckpt", weights_only=True)
    assert ck["lightning_kd"]["method"].endswith("FusionBaseline") and ck["hyper_parameters"]["net"]["hidden"] == 8


@pytest.mark.slow
def test_vlsg_last_checkpoint_is_written_every_epoch(tmp_path: Path) -> None:
    """configs/vlsg validate every 5-10 epochs; last.ckpt must still follow every training epoch (resume)."""
    seen: list[int] = []

    import lightning.pytorch as pl

    class Watch(pl.Callback):
        def on_train_epoch_start(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
            last = Path(trainer.log_dir) / "checkpoints/last.ckpt"
            seen.append(torch.load(last, weights_only=True)["epoch"] if last.is_file() else -1)

    from lightning_kd.cli import build_cli

    cli = build_cli(["-c", str(ROOT / "configs/vlsg/synthetic.yaml"), "--data.init_args.path", str(tmp_path / "mv.mat"),
                     "--data.init_args.n=60", "--data.init_args.batch_size=32", "--model.init_args.net.hidden=[16]",
                     "--model.init_args.net.latent=8", "--model.init_args.net.feature_dim=4", "--model.init_args.kmeans_init=1",
                     "--model.init_args.pretrain_epochs=1", "--trainer.max_epochs=4", "--trainer.enable_progress_bar=false",
                     "--trainer.enable_model_summary=false", "--trainer.logger.init_args.save_dir", str(tmp_path / "runs")],
                    run=False)
    cli.trainer.callbacks.append(Watch())
    cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    last = torch.load(tmp_path / "runs/vlsg/synthetic/version_0/checkpoints/last.ckpt", weights_only=True)
    # no validation in these 4 epochs (check_val_every_n_epoch 5), yet every epoch wrote last.ckpt
    assert seen == [-1, 0, 1, 2] and last["epoch"] == 3


# -- options declared once, stored as plain data ------------------------------------------------------
def test_options_from_instance_mapping_or_none() -> None:
    assert options(DMDNetOptions) == DMDNetOptions()
    assert options(DMDNetOptions, {"hidden": 8}) == DMDNetOptions(hidden=8)
    assert options(DMDNetOptions, DMDNetOptions(hidden=8), heads=2) == DMDNetOptions(hidden=8, heads=2)
    with pytest.raises(ConfigError, match=r"DMDNetOptions has no option 'hiden'; its options are hidden, heads"):
        options(DMDNetOptions, {"hiden": 8})
    with pytest.raises(dataclasses.FrozenInstanceError):
        DMDNetOptions().hidden = 3  # type: ignore[misc]
    # the fusion baseline's options are DMD's backbone: the shared fields are declared once
    shared = {f.name for f in dataclasses.fields(BackboneOptions)}
    assert shared < {f.name for f in dataclasses.fields(DMDNetOptions)}
    assert plain(DMDNetOptions())["kernel_sizes"] == [5, 5, 5]


@pytest.mark.parametrize("cls, kwargs", [
    (DMD, {"net": {"hidden": 8, "heads": 2, "layers": 1}, "loss": {"gd_weight": 0.2}}),
    (FusionBaseline, {"net": BackboneOptions(hidden=8, heads=2, layers=1)}),
])
def test_checkpoint_hparams_are_plain_and_rebuild_the_module(cls: type, kwargs: dict, tmp_path: Path) -> None:
    import lightning.pytorch as pl

    model = cls(MMSA_DIMS, MMSA_LENS, **kwargs)
    trainer = pl.Trainer(logger=False, enable_checkpointing=False, enable_progress_bar=False, max_epochs=0)
    trainer.strategy.connect(model)
    path = tmp_path / "m.ckpt"
    trainer.save_checkpoint(path)
    hp = torch.load(path, weights_only=True)["hyper_parameters"]  # plain data only
    assert hp["net"]["hidden"] == 8 and isinstance(hp["net"], dict)
    back = cls.load_from_checkpoint(path, weights_only=True)
    assert back.net.options == model.net.options
    for k, v in model.state_dict().items():
        assert torch.equal(back.state_dict()[k], v), k
    if cls is DMD:
        assert back.objective.options == DMDLossOptions(gd_weight=0.2)


def test_corrkd_refuses_an_unknown_option() -> None:
    with pytest.raises(ConfigError, match="CorrKDNetOptions has no option 'hidden'"):
        CorrKD(MMSA_DIMS, net={"hidden": 8})
