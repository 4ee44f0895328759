"""MT-PKDOT stages on a tiny random datamodule: what each role copies, freezes and trains; teacher selection; the
student without its privileged input and teacher files; refusals (wrong teachers, other architecture); seeds."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from mt_pkdot_helpers import TinyVideoBioData, fit_stage, stage_chain, tiny_kwargs, trainer

from lightning_kd.checkpoint import ConfigError
from lightning_kd.distill.teacher import TeacherError
from lightning_kd.methods.mt_pkdot import MTPKDOT


@pytest.fixture(scope="module")
def chain(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return stage_chain(tmp_path_factory.mktemp("mt_pkdot_chain"))


def _part(module: MTPKDOT | dict, prefix: str) -> dict[str, torch.Tensor]:
    state = module.net.state_dict() if isinstance(module, MTPKDOT) else module
    return {k: v.clone() for k, v in state.items() if k.startswith(prefix)}


def _ckpt_net(path: Path) -> dict[str, torch.Tensor]:
    state = torch.load(path, weights_only=True)["state_dict"]
    return {k[len("net."):]: v for k, v in state.items() if k.startswith("net.")}


def _equal(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_data_needs_per_role() -> None:
    student = MTPKDOT.data_needs({"role": "student"})
    assert student.inputs == ("video",) and student.privileged == ("bio",)
    assert student.missing_inputs(["video"], stage="test") == [] and student.missing_inputs(["video"]) == ["bio"]
    assert MTPKDOT.data_needs({"role": "fusion"}).inputs == ("video", "bio")
    va = MTPKDOT.data_needs({"role": "privileged", "net": {"privileged_input": "audio"}, "loss": {"task": "ccc"}})
    assert va.inputs == ("audio",) and va.targets == ("valence_arousal",)


def test_fusion_copies_and_freezes_the_backbones(chain: dict[str, Path], tmp_path: Path) -> None:
    module, _ = fit_stage("fusion", tmp_path, [chain["visual"], chain["privileged"]])
    assert _equal(_part(module, "encoders.visual."), _part(_ckpt_net(chain["visual"]), "encoders.visual."))
    assert _equal(_part(module, "encoders.privileged."),
                  _part(_ckpt_net(chain["privileged"]), "encoders.privileged."))
    optimised = {id(p) for g in module.trainer.optimizers[0].param_groups for p in g["params"]}
    assert optimised == {id(p) for p in module.net.fusion.parameters()}
    assert not module.net.encoders.training  # frozen parts stay in eval mode (dropout, BatchNorm)


def test_align_trains_adapters_and_fusion_from_the_fusion_teacher(chain: dict[str, Path], tmp_path: Path) -> None:
    fusion = _ckpt_net(chain["fusion"])
    torch.manual_seed(0)
    module = MTPKDOT(**tiny_kwargs("align", teacher_ckpts=[str(chain["fusion"])]))
    module.attach_teachers()
    module.init_from_teachers()
    assert _equal(_part(module, "fusion."), _part(fusion, "fusion."))
    trainer(tmp_path).fit(module, datamodule=TinyVideoBioData())
    assert _equal(_part(module, "encoders."), _part(fusion, "encoders."))
    assert not _equal(_part(module, "fusion."), _part(fusion, "fusion."))  # trained on, as released
    out = module(next(iter(TinyVideoBioData().train_dataloader())))
    assert set(out.logits_by_name) == {"joint", "adapted_visual", "adapted_privileged"}


def test_student_copies_frozen_parts_selects_teachers_and_needs_no_privileged_input(
        chain: dict[str, Path], tmp_path: Path) -> None:
    module, ckpt = fit_stage("student", tmp_path, [chain["align"], chain["hallucination"]])
    assert _equal(_part(module, "encoders.visual."), _part(_ckpt_net(chain["visual"]), "encoders.visual."))
    assert _equal(_part(module, "hallucination."), _part(_ckpt_net(chain["hallucination"]), "hallucination."))
    optimised = {id(p) for g in module.trainer.optimizers[0].param_groups for p in g["params"]}
    assert optimised == {id(p) for p in module.net.fusion.parameters()}
    assert "privileged" not in module.net.encoders and len(module.net.adapters) == 0  # the student reads video only
    # test / predict: video only, teacher files gone
    for role in ("align", "hallucination"):
        chain_copy = tmp_path / f"{role}_moved.ckpt"
        chain[role].rename(chain_copy)
    try:
        student = MTPKDOT.load_from_checkpoint(ckpt, weights_only=True)
        video_only = TinyVideoBioData(inputs=("video",))
        (metrics,) = trainer(tmp_path).test(student, datamodule=video_only, verbose=False)
        assert 0.0 <= metrics["test/acc"] <= 1.0
    finally:
        for role in ("align", "hallucination"):
            (tmp_path / f"{role}_moved.ckpt").rename(chain[role])
    records = torch.load(ckpt, weights_only=True)["lightning_kd"]["teachers"]
    assert [Path(r["path"]).name for r in records] == ["align.ckpt", "hallucination.ckpt"]


def test_selection_counts_one_teacher_per_step(chain: dict[str, Path], tmp_path: Path) -> None:
    torch.manual_seed(0)
    module = MTPKDOT(**tiny_kwargs("student", teacher_ckpts=[str(chain["align"]), str(chain["hallucination"])]))
    module.attach_teachers()
    module.init_from_teachers()
    batches = list(TinyVideoBioData().train_dataloader())
    for batch in batches:
        terms = module.training_losses(batch)
        assert set(terms) >= {"loss", "task", "kd", "centroid"}
    counts = module.distill_stats.compute()
    names = ("joint", "adapted_visual", "adapted_privileged")
    assert sum(counts[f"selected/{n}"] for n in names) == len(batches)
    teacher = module.teachers[0]
    assert all(p.grad is None and not p.requires_grad for p in teacher.parameters())


def test_kd_gradient_reaches_the_student_fusion_only(chain: dict[str, Path]) -> None:
    torch.manual_seed(0)
    module = MTPKDOT(**tiny_kwargs("student", teacher_ckpts=[str(chain["align"]), str(chain["hallucination"])],
                                   loss={"ce_weight": 0.0, "kd_weight": 1.0, "ot": {"k": 8}}))
    module.attach_teachers()
    module.init_from_teachers()
    batch = next(iter(TinyVideoBioData().train_dataloader()))
    module.training_losses(batch)["loss"].backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in module.net.fusion.parameters())
    assert all(p.grad is None for p in module.net.encoders.parameters())
    assert all(p.grad is None for p in module.net.hallucination.parameters())
    assert all(p.grad is None for p in module.teachers[0].parameters())


def test_pkdot_joint_teacher_from_the_fusion_stage(chain: dict[str, Path], tmp_path: Path) -> None:
    teachers = [chain["fusion"], chain["hallucination"]]
    module, _ = fit_stage("student", tmp_path, teachers, epochs=1, loss={"teachers": ["joint"], "ot": {"k": 8}})
    counts = module.distill_stats  # reset by nobody here (no callback): the totals of the fit
    assert set(counts.kinds) == {"kd", "selected/joint"}
    with pytest.raises(TeacherError, match=r"fusion stage.*loss.teachers"):
        fit_stage("student", tmp_path, teachers, epochs=1)


def test_wrong_or_missing_teachers_are_one_line(chain: dict[str, Path], tmp_path: Path) -> None:
    with pytest.raises(TeacherError, match=r"needs a teacher of role hallucination.*Fix"):
        fit_stage("student", tmp_path, [chain["align"], chain["fusion"]], epochs=1)
    with pytest.raises(ConfigError, match=r"builds on the visual and privileged stage.*teacher_ckpts"):
        fit_stage("fusion", tmp_path, [], epochs=1)
    with pytest.raises(ConfigError, match="trains without teachers"):
        fit_stage("visual", tmp_path, [chain["privileged"]], epochs=1)
    other = dict(tiny_kwargs("fusion")["net"], dim=16)  # type: ignore[arg-type]
    with pytest.raises(TeacherError, match=r"another size or architecture.*same model.init_args.net"):
        fit_stage("fusion", tmp_path, [chain["visual"], chain["privileged"]], epochs=1, net=other)


def test_same_seed_same_student_other_seed_other_student(chain: dict[str, Path], tmp_path: Path) -> None:
    teachers = [chain["align"], chain["hallucination"]]
    a, _ = fit_stage("student", tmp_path / "a", teachers, epochs=1, seed=3)
    b, _ = fit_stage("student", tmp_path / "b", teachers, epochs=1, seed=3)
    c, _ = fit_stage("student", tmp_path / "c", teachers, epochs=1, seed=4)
    assert _equal(_part(a, "fusion."), _part(b, "fusion."))
    assert not _equal(_part(a, "fusion."), _part(c, "fusion."))


def test_fusion_teacher_beats_the_visual_stage_on_data_where_the_signal_helps(tmp_path: Path) -> None:
    data = TinyVideoBioData(n=(256, 64, 256), data_seed=1)  # held-out draws of the same distribution
    visual, _ = fit_stage("visual", tmp_path, epochs=15)
    fit_stage("privileged", tmp_path, epochs=15)
    fusion, _ = fit_stage("fusion", tmp_path, [tmp_path / "visual.ckpt", tmp_path / "privileged.ckpt"], epochs=5)
    acc = {}
    for name, m in (("visual", visual), ("fusion", fusion)):
        (metrics,) = trainer(tmp_path).test(m, datamodule=data, verbose=False)
        acc[name] = metrics["test/acc"]
    assert acc["fusion"] > acc["visual"] + 0.05, acc


def test_five_classes_and_valence_arousal_metrics() -> None:
    from lightning_kd.data.batch import Batch

    five = MTPKDOT(**tiny_kwargs("visual", net={**tiny_kwargs("visual")["net"], "outputs": 5}))  # type: ignore[dict-item]
    assert MTPKDOT.data_needs({"role": "visual"}).accepts_target("class_index")
    batch = Batch(inputs={"video": torch.randn(10, 4, 6)}, target=torch.arange(10) % 5, index=torch.arange(10))
    with torch.no_grad(), pytest.warns(UserWarning, match="trainer"):  # self.log outside a Trainer: a no-op
        five._eval_step(batch, "test", five.test_metrics)
    assert set(five.test_metrics.compute()) == {"acc", "F1"}
    va = MTPKDOT(**tiny_kwargs("visual", loss={"task": "ccc"}))
    target = torch.rand(10, 2) * 2 - 1
    with torch.no_grad(), pytest.warns(UserWarning, match="trainer"):
        va._eval_step(Batch(inputs={"video": torch.randn(10, 4, 6)}, target=target, index=torch.arange(10)), "test",
                      va.test_metrics)
        pred = va.predict_step(Batch(inputs={"video": torch.randn(3, 4, 6)}, target=target[:3],
                                     index=torch.arange(3)), 0)["prediction"]
    assert set(va.test_metrics.compute()) == {"ccc_valence", "ccc_arousal", "ccc_mean"} and pred.shape == (3, 2)


def test_student_fine_tunes_its_visual_backbone_on_request(chain: dict[str, Path], tmp_path: Path) -> None:
    module, _ = fit_stage("student", tmp_path, [chain["align"], chain["hallucination"]], epochs=1,
                          train_visual=True, init_fusion="teacher")
    optimised = {id(p) for g in module.trainer.optimizers[0].param_groups for p in g["params"]}
    assert optimised == {id(p) for p in [*module.net.fusion.parameters(), *module.net.encoders.parameters()]}
    assert not _equal(_part(module, "encoders.visual."), _part(_ckpt_net(chain["visual"]), "encoders.visual."))
    assert _equal(_part(module, "hallucination."), _part(_ckpt_net(chain["hallucination"]), "hallucination."))
    assert module.net.encoders.training and not module.net.hallucination.training
    warm = MTPKDOT(**tiny_kwargs("student", teacher_ckpts=[str(chain["align"]), str(chain["hallucination"])],
                                 init_fusion="teacher"))
    warm.attach_teachers()
    warm.init_from_teachers()
    assert _equal(_part(warm, "fusion."), _part(_ckpt_net(chain["align"]), "fusion."))
    with pytest.raises(ConfigError, match="init_fusion"):
        MTPKDOT(**tiny_kwargs("student", init_fusion="copy"))


def test_resumed_student_ends_where_an_uninterrupted_one_ends(chain: dict[str, Path], tmp_path: Path) -> None:
    import lightning.pytorch as pl

    teachers = [str(chain["align"]), str(chain["hallucination"])]
    full, _ = fit_stage("student", tmp_path / "full", chain_paths := [chain["align"], chain["hallucination"]],
                        epochs=2, seed=7)
    _, half = fit_stage("student", tmp_path / "half", chain_paths, epochs=1, seed=7)
    pl.seed_everything(7, verbose=False)
    resumed = MTPKDOT(**tiny_kwargs("student", teacher_ckpts=teachers))
    trainer(tmp_path / "resumed", epochs=2).fit(resumed, datamodule=TinyVideoBioData(seed=7), ckpt_path=half)
    assert _equal(_part(resumed, "fusion."), _part(full, "fusion."))
    assert not _equal(_part(resumed, "fusion."), _part(_ckpt_net(half), "fusion."))
