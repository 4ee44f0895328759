"""Optimiser per method: CorrKD trains with plain Adam (its spec / HRLF state no schedule); DMD keeps
ReduceLROnPlateau on ``val/loss`` (its official protocol). The shipped configs say the same."""

from __future__ import annotations

import pytest
import torch
import yaml

from conftest import ROOT, resolved_config
from lightning_kd.checkpoint import ConfigError
from lightning_kd.methods.corrkd import CorrKD
from lightning_kd.methods.dmd import DMD
from lightning_kd.methods.vlsg import VLSG

DIMS = {"text": 32, "audio": 5, "vision": 7}
LENS = {"text": 9, "audio": 9, "vision": 9}


def test_corrkd_default_is_plain_adam() -> None:
    out = CorrKD(DIMS, net={"dim": 8, "heads": 2, "layers": 1}, lr=2e-3).configure_optimizers()
    assert isinstance(out, torch.optim.Adam)  # an optimiser alone: no scheduler, the lr stays constant
    assert out.param_groups[0]["lr"] == 2e-3


def test_vlsg_is_plain_adam_without_a_scheduler_option() -> None:
    """Clustering logs no ``val/loss`` to watch: VLSG fixes the base's ``lr_scheduler="none"`` (MFLVC's constant lr)."""
    model = VLSG({"view_0": 5, "view_1": 4}, num_clusters=3, net={"hidden": (8,), "latent": 4, "feature_dim": 4},
                 lr=2e-3, weight_decay=1e-5)
    out = model.configure_optimizers()
    assert isinstance(out, torch.optim.Adam) and out.param_groups[0]["lr"] == 2e-3
    assert out.param_groups[0]["weight_decay"] == 1e-5
    assert "lr_scheduler" not in model.hparams
    with pytest.raises(TypeError):
        VLSG({"view_0": 5, "view_1": 4}, num_clusters=3, lr_scheduler="plateau")  # type: ignore[call-arg]


def test_dmd_keeps_reduce_lr_on_plateau() -> None:
    out = DMD(DIMS, LENS, net={"hidden": 8, "heads": 2, "layers": 1}, lr_factor=0.3, lr_patience=2).configure_optimizers()
    assert isinstance(out["optimizer"], torch.optim.Adam)
    sched = out["lr_scheduler"]
    assert isinstance(sched["scheduler"], torch.optim.lr_scheduler.ReduceLROnPlateau)
    assert sched["monitor"] == "val/loss"
    assert sched["scheduler"].factor == 0.3 and sched["scheduler"].patience == 2


def test_scheduler_option_is_explicit_and_checked() -> None:
    out = CorrKD(DIMS, net={"dim": 8, "heads": 2, "layers": 1}, lr_scheduler="plateau", lr_patience=3).configure_optimizers()
    assert isinstance(out["lr_scheduler"]["scheduler"], torch.optim.lr_scheduler.ReduceLROnPlateau)
    assert out["lr_scheduler"]["scheduler"].patience == 3
    with pytest.raises(ConfigError, match="lr_scheduler"):
        CorrKD(DIMS, net={"dim": 8, "heads": 2, "layers": 1}, lr_scheduler="cosine")


@pytest.mark.parametrize("path", sorted((ROOT / "configs/corrkd").glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_corrkd_configs_use_plain_adam(path) -> None:
    init = resolved_config("-c", str(path))["model"]["init_args"]  # students build on their teacher's file
    assert init["lr_scheduler"] == "none"
    assert "lr_factor" not in yaml.safe_load(path.read_text()).get("model", {}).get("init_args", {})
    init = {**init, "net": {**init["net"], "dim": 8, "heads": 2, "layers": 1}, "teacher_ckpt": None, "role": "teacher"}
    assert isinstance(CorrKD(DIMS, **init).configure_optimizers(), torch.optim.Adam)
