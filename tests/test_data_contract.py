"""What methods need from their data (DataNeeds) and what datamodules provide (inputs, target_kind)."""

from __future__ import annotations

import importlib
import pkgutil
from pathlib import Path

import pytest

import lightning_kd.methods
from conftest import ROOT
from lightning_kd.checkpoint import DataMismatchError
from lightning_kd.data.contract import CONFIGS_FOR, TARGET_KINDS, DataNeeds, check_data
from lightning_kd.methods.base import MethodModule


class FakeData:
    """A datamodule as the check sees it: input names (``feature_dims`` keys) and a target kind."""

    path = "data/fake.pkl"

    def __init__(self, inputs: list[str], target_kind: str | None) -> None:
        self.feature_dims = dict.fromkeys(inputs, 4)
        self.target_kind = target_kind


def test_alternative_names_and_views() -> None:
    needs = DataNeeds(inputs=("text|text_bert", "audio"))
    assert needs.missing_inputs(["text_bert", "audio"]) == []
    assert needs.missing_inputs(["text", "audio"]) == []
    assert needs.missing_inputs(["audio", "vision"]) == ["text|text_bert"]
    views = DataNeeds(views=2)
    assert views.missing_inputs(["view_0", "view_1", "semantic_neighbours"]) == []
    assert views.missing_inputs(["view_0", "view_x"]) == ["2 views (found 1)"]
    assert "views view_0, view_1, ... (at least 2)" in views.describe()


def test_privileged_inputs_are_needed_only_when_fitting() -> None:
    """MT-PKDOT style: physiology only at training time, video at test time too."""
    needs = DataNeeds(inputs=("video",), privileged=("physio",), targets=("binary",))
    assert needs.missing_inputs(["video"], stage="fit") == ["physio"]
    assert needs.missing_inputs(["video"], stage=None) == ["physio"]
    assert needs.missing_inputs(["video"], stage="test") == []
    check_data(needs, FakeData(["video"], "binary"), "MTPKDOT", stage="test")
    with pytest.raises(DataMismatchError, match="missing: physio"):
        check_data(needs, FakeData(["video"], "binary"), "MTPKDOT", stage="fit")


def test_target_kinds_are_checked_and_known() -> None:
    needs = DataNeeds(inputs=("eeg", "video"), targets=("binary",))  # CDGKD style
    assert needs.accepts_target("binary") and needs.accepts_target(None) and not needs.accepts_target("score")
    assert DataNeeds().accepts_target("emotions")
    with pytest.raises(ValueError, match="unknown target kind"):
        DataNeeds(targets=("valence",))


def test_message_names_both_sides_and_the_configs_for_the_data() -> None:
    needs = DataNeeds(inputs=("text|text_bert", "audio", "vision"), targets=("score",))
    with pytest.raises(DataMismatchError) as exc:
        check_data(needs, FakeData(["text", "audio", "vision"], "emotions"), "DMD", where="configs/dmd/x.yaml")
    msg = str(exc.value)
    assert msg.startswith("configs/dmd/x.yaml builds DMD, which needs inputs text (or text_bert), audio, vision with "
                          "sentiment scores")
    assert ("the datamodule FakeData (data/fake.pkl) provides inputs text, audio, vision with multi-label "
            "emotions") in msg
    assert msg.endswith(f"Fix: use {CONFIGS_FOR['emotions']} for this data, or give DMD data with "
                        f"{needs.describe()}.")


def _methods() -> list[type]:
    for info in pkgutil.walk_packages(lightning_kd.methods.__path__, "lightning_kd.methods."):
        importlib.import_module(info.name)
    found, todo = [], [MethodModule]
    while todo:
        cls = todo.pop()
        for sub in cls.__subclasses__():
            todo.append(sub)
            if sub.__module__.startswith("lightning_kd.methods.") and sub.__module__ != "lightning_kd.methods.base":
                found.append(sub)
    return found


def test_every_method_declares_what_it_needs() -> None:
    methods = _methods()
    assert {m.__name__ for m in methods} >= {"DMD", "FusionBaseline", "CorrKD", "VLSG"}
    for cls in methods:
        needs = cls.data_needs({})
        assert isinstance(needs, DataNeeds), cls
        assert needs.targets and set(needs.targets) <= set(TARGET_KINDS), cls


def test_corrkd_needs_follow_its_task() -> None:
    from lightning_kd.methods.corrkd import CorrKD

    assert CorrKD.data_needs({"task": "emotion"}).targets == ("emotions",)
    assert "score" in CorrKD.data_needs({"task": "binary_sentiment"}).targets


def test_configs_named_in_messages_exist() -> None:
    for kind, text in CONFIGS_FOR.items():
        assert kind in TARGET_KINDS
        for pattern in text.replace(" or ", ", ").split(", "):
            pattern = pattern.replace("{mosi,mosei,synthetic}", "mosi")
            assert list(ROOT.glob(pattern)), pattern


def test_datamodules_provide_their_target_kind(tiny_mmsa_aligned: Path, tiny_mult_iemocap: Path,
                                               tiny_mult_mosi: Path, tmp_path: Path) -> None:
    from lightning_kd.data.formats.mmsa import MMSADataModule
    from lightning_kd.data.formats.mult import MulTDataModule
    from lightning_kd.data.formats.multiview import MultiViewDataModule
    from lightning_kd.data.generate.multiview import write_multiview_mat

    assert MMSADataModule(str(tiny_mmsa_aligned)).target_kind == "score"
    assert MulTDataModule(str(tiny_mult_iemocap)).target_kind == "emotions"
    assert MulTDataModule(str(tiny_mult_mosi)).target_kind == "score"
    mat = write_multiview_mat(tmp_path / "mv.mat", n=30, dims=(4, 3), clusters=3)
    mv = MultiViewDataModule(str(mat))
    assert mv.target_kind == "cluster_labels" and sorted(mv.feature_dims) == ["view_0", "view_1"]
