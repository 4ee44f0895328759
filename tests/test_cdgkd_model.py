"""CDGKD networks (TSception, visual pyramid, roles), the module's data needs and losses on real teacher
checkpoints (written by a Trainer, loaded by the several-teachers API), plain KD, and a tiny CLI fit."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch
import yaml
from cdgkd_helpers import (
    TINY_EEG,
    TINY_NET,
    TINY_VISUAL,
    TinyEEGFaceData,
    save_tiny,
    tiny_module_kwargs,
)

from lightning_kd.checkpoint import ConfigError
from lightning_kd.nn.tsception import TSception
from lightning_kd.nn.visual_pyramid import VisualPyramid, token_count

pytestmark = pytest.mark.usefixtures("single_thread")


# -- encoders ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("opts", "out"), [
    ({}, 32 * 22),  # 3 windows: (56 + 60 + 62) // 2 // 4 = 22 time steps x 32 filters
    ({"windows": (0.5, 0.125), "spatial": ("hemisphere",)}, 32 * 14),  # TA1: (56 + 62) // 2 // 4 = 14
    ({"windows": (0.5,), "spatial": ("hemisphere",)}, 32 * 7),  # TA2: 56 // 2 // 4 = 7
    ({"readout": "mean"}, 32),  # TSception's own readout
])
def test_tsception_default_shapes(opts: dict, out: int) -> None:
    enc = TSception(28, 512, opts)
    assert enc.out_dim == out
    assert enc(torch.randn(3, 28, 512)).shape == (3, out)


def test_tsception_tiny_and_errors() -> None:
    enc = TSception(4, 64, TINY_EEG)  # kernels 16/8/4 at 32 Hz: (12 + 14 + 15) // 2 // 2 = 10 steps x 4 filters
    assert enc(torch.randn(2, 4, 64)).shape == (2, 40)
    with pytest.raises(ConfigError, match="even number of channels"):
        TSception(5, 64, TINY_EEG)
    with pytest.raises(ConfigError, match="do not fit"):
        TSception(4, 16, TINY_EEG)
    with pytest.raises(ConfigError, match="spatial kernels"):
        TSception(4, 64, TINY_EEG, spatial=("left",))
    with pytest.raises(ValueError, match=r"\(B, 4, 64\)"):
        enc(torch.randn(2, 64, 4))


def test_hemisphere_kernel_sees_left_and_right_halves_apart() -> None:
    """The (C/2, 1) kernel with stride C/2 gives one row per hemisphere: EEG on the right half only changes the
    second row of the hemisphere output."""
    enc = TSception(4, 64, TINY_EEG, spatial=("hemisphere",)).eval()
    x = torch.zeros(1, 4, 64)
    y = x.clone()
    y[:, 2:] = torch.randn(1, 2, 64)
    with torch.no_grad():
        t = lambda v: enc.bn_t(torch.cat([m(v.unsqueeze(1)) for m in enc.temporal], -1))  # noqa: E731
        rows_x, rows_y = enc.spatial[0](t(x)), enc.spatial[0](t(y))
    assert rows_x.shape[2] == 2
    torch.testing.assert_close(rows_x[:, :, 0], rows_y[:, :, 0])
    assert not torch.allclose(rows_x[:, :, 1], rows_y[:, :, 1])


def test_visual_pyramid_shapes() -> None:
    enc = VisualPyramid(768, 5)
    assert enc.tokens == 61 == token_count(768, enc.options)
    assert enc(torch.randn(2, 5, 768)).shape == (2, 768)
    assert VisualPyramid(512, 5).tokens == (512 - 32) // 8 + 1 - 33 + 1  # derived from D
    tiny = VisualPyramid(16, 5, TINY_VISUAL)
    assert tiny.tokens == (16 - 4) // 2 + 1 - 3 + 1
    assert tiny(torch.randn(2, 5, 16)).shape == (2, 16)
    with pytest.raises(ConfigError, match="tokens"):
        VisualPyramid(16, 5)
    with pytest.raises(ConfigError, match="heads"):
        VisualPyramid(16, 5, TINY_VISUAL, heads=3)


# -- roles ------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("role", "inputs"), [
    ("teacher", ("face", "eeg")), ("ta1", ("face", "eeg")), ("ta2", ("face", "eeg")), ("student", ("face",)),
    ("eeg", ("eeg",)),
])
def test_roles_build_their_encoders_and_declare_their_data(role: str, inputs: tuple[str, ...]) -> None:
    from lightning_kd.methods.cdgkd import CDGKD

    needs = CDGKD.data_needs({"role": role})
    assert needs.inputs == inputs and needs.targets == ("binary",)
    module = CDGKD(**tiny_module_kwargs(role=role))
    assert tuple(module.net.encoders) == inputs
    dm = TinyEEGFaceData()
    dm.setup()
    batch = next(iter(dm.train_dataloader()))
    out = module(batch)
    assert module.class_logits(batch).shape == (16, 2)
    assert set(out.features) == set(inputs)


def test_assistants_shrink_the_eeg_branch() -> None:
    from lightning_kd.methods.cdgkd import CDGKD

    width = {r: CDGKD(**tiny_module_kwargs(role=r)).net.encoders["eeg"] for r in ("teacher", "ta1", "ta2")}
    assert [len(width[r].temporal) for r in ("teacher", "ta1", "ta2")] == [3, 2, 1]
    assert [len(width[r].spatial) for r in ("teacher", "ta1", "ta2")] == [2, 1, 1]


def test_unknown_role_and_teachers_on_a_teacher_are_refused() -> None:
    from lightning_kd.methods.cdgkd import CDGKD

    with pytest.raises(ConfigError, match="role must be one of"):
        CDGKD(**tiny_module_kwargs(role="assistant"))
    module = CDGKD(**tiny_module_kwargs(role="teacher", teacher_ckpts=["t.ckpt"]))
    with pytest.raises(ConfigError, match="trains without teachers"):
        module.setup("fit")
    with pytest.raises(ConfigError, match="lack"):
        CDGKD(**tiny_module_kwargs(role="teacher", feature_dims={"face": 16}))


@pytest.fixture(scope="module")
def teacher_ckpts(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """Real checkpoints of a tiny CDGKD teacher and TA1 (different initialisations)."""
    d = tmp_path_factory.mktemp("cdgkd_teachers")
    return [str(save_tiny(d / "teacher.ckpt", "teacher", seed=10, logit_scale=30.0)),
            str(save_tiny(d / "ta1.ckpt", "ta1", seed=11, logit_scale=30.0))]


def _batch(n: tuple[int, int, int] = (64, 16, 16)):  # noqa: ANN202
    dm = TinyEEGFaceData(n=n)
    dm.setup()
    return next(iter(dm.train_dataloader()))


def test_dense_guidance_changes_the_student_gradients_and_reports_per_teacher_terms(teacher_ckpts: list[str]) -> None:
    from lightning_kd.methods.cdgkd import CDGKD

    batch = _batch()
    loaded: list = []

    def grads(with_teachers: bool) -> dict[str, torch.Tensor]:
        torch.manual_seed(1)
        student = CDGKD(**tiny_module_kwargs(role="student", loss={"drop_prob": 0.0},
                                             teacher_ckpts=teacher_ckpts if with_teachers else None))
        loaded.extend(student.attach_teachers())
        student.eval()  # no dropout: the two runs differ only by the KD terms
        terms = student.training_losses(batch)
        terms["loss"].backward()
        if with_teachers:
            assert [t.role for t in student.teachers] == ["teacher", "ta1"]
            assert [r["path"] for r in student.teacher_records] == teacher_ckpts
            assert {"kd/teacher_0", "kd/teacher_1", "kept/teacher_0", "kept/teacher_1"} <= set(terms)
            assert float(terms["kept/teacher_0"]) == float(terms["kept/teacher_1"]) == 1.0
            # the teachers are frozen and outside the student's parameters
            own = {id(p) for p in student.parameters()}
            assert not any(id(p) in own or p.requires_grad for t in student.teachers for p in t.parameters())
        else:
            assert student.teachers == [] and not any(k.startswith("kd/") for k in terms)
        return {n: p.grad.clone() for n, p in student.named_parameters() if p.grad is not None}

    alone, guided = grads(False), grads(True)
    assert alone.keys() == guided.keys()
    assert any((alone[n] - guided[n]).abs().max() > 1e-6 for n in alone)
    # the teachers got no gradient
    assert len(loaded) == 2 and all(p.grad is None for t in loaded for p in t.parameters())


def test_one_teacher_without_drops_is_plain_kd_by_hand(teacher_ckpts: list[str]) -> None:
    """``teacher_ckpts: [teacher]`` + ``drop_prob: 0`` = Hinton KD: a CE + (1 - a) T^2 KL(p_t^T || p_s^T)."""
    from lightning_kd.methods.cdgkd import CDGKD

    a, temp = 0.3, 3.0
    batch = _batch()
    student = CDGKD(**tiny_module_kwargs(role="student", teacher_ckpts=teacher_ckpts[:1],
                                         loss={"drop_prob": 0.0, "ce_weight": a, "temperature": temp}))
    (teacher,) = student.attach_teachers()
    student.eval()
    with torch.no_grad():
        total = student.training_losses(batch)["loss"]
        s, t, y = student.class_logits(batch).double(), teacher.class_logits(batch).double(), batch.target.long()
    ce = (torch.logsumexp(s, -1) - s.gather(1, y[:, None])[:, 0]).mean()  # -log softmax(s)_y
    pt, ps = (t / temp).softmax(-1), (s / temp).softmax(-1)
    kl = (pt * (pt.log() - ps.log())).sum(-1).mean()
    assert float(total) == pytest.approx(float(a * ce + (1 - a) * temp**2 * kl), rel=1e-5)
    assert (1 - a) * temp**2 * float(kl) > 1e-2  # far above rel=1e-5 of the total: the KD term is tested


def test_generic_logit_kd_mixes_into_cdgkd(teacher_ckpts: list[str]) -> None:
    """``-c configs/kd/plain.yaml`` on CDGKD: loss = a' CE + (1 - a') mean_k kd_kl(s, t_k, T') on any role (here the
    video-only student and the EEG-only reference); the dense guidance is off (no double logit KD)."""
    from lightning_kd.distill.logit_kd import kd_kl
    from lightning_kd.methods.cdgkd import CDGKD

    batch = _batch()
    with pytest.raises(ConfigError, match="trains without teachers"):
        CDGKD(**tiny_module_kwargs(role="eeg", teacher_ckpts=teacher_ckpts[:1])).setup("fit")
    with pytest.raises(ConfigError, match="logit_kd distils from teachers"):
        CDGKD(**tiny_module_kwargs(role="eeg", logit_kd={"temperature": 4.0, "weight": 0.25})).setup("fit")
    for role in ("eeg", "student"):
        module = CDGKD(**tiny_module_kwargs(role=role, teacher_ckpts=teacher_ckpts,
                                            logit_kd={"temperature": 4.0, "weight": 0.25}))
        assert module.hparams["logit_kd"] == {"temperature": 4.0, "weight": 0.25}
        teachers = module.attach_teachers()
        module.eval()
        with torch.no_grad():
            own = module.training_losses(batch)
            terms = module.distillation_terms(batch, own)
            s = module.class_logits(batch)
            kd = (kd_kl(s, teachers[0].class_logits(batch), 4.0) + kd_kl(s, teachers[1].class_logits(batch), 4.0)) / 2
        assert not any(k.startswith(("kd/", "kept/")) for k in own)  # no dense guidance next to plain KD
        ce = torch.nn.functional.cross_entropy(s, batch.target.long())
        assert float(own["loss"]) == pytest.approx(float(ce), rel=1e-6)
        assert "class_logits" not in terms
        assert float(terms["logit_kd"]) == pytest.approx(float(kd), rel=1e-5)
        assert float(terms["loss"]) == pytest.approx(0.25 * float(own["loss"]) + 0.75 * float(kd), rel=1e-5)


# -- a tiny teacher through the CLI ---------------------------------------------------------------------------------
def test_tiny_teacher_fits_through_the_cli(tmp_path: Path) -> None:
    from lightning_kd.cli import build_cli
    from lightning_kd.distill.teacher import load_teacher

    config = {
        "seed_everything": 0,
        "test_after_fit": True,
        "trainer": {
            "max_epochs": 2, "accelerator": "cpu", "devices": 1, "enable_progress_bar": False,
            "enable_model_summary": False, "log_every_n_steps": 1,
            "logger": {"class_path": "lightning.pytorch.loggers.CSVLogger",
                       "init_args": {"save_dir": str(tmp_path / "runs"), "name": "cdgkd_tiny"}},
            "callbacks": [
                {"class_path": "lightning_kd.callbacks.rebalancing.ModalityRebalancing",
                 "init_args": {"modalities": ["face", "eeg"]}},
                {"class_path": "lightning.pytorch.callbacks.ModelCheckpoint",
                 "init_args": {"monitor": "val/loss", "mode": "min", "save_top_k": 1}},
            ],
        },
        "model": {"class_path": "lightning_kd.methods.cdgkd.CDGKD",
                  "init_args": {"role": "teacher", "eeg": TINY_EEG, "visual": TINY_VISUAL, "net": TINY_NET,
                                "loss": {"alpha": 1.0}, "lr": 0.003}},
        "data": {"class_path": "cdgkd_helpers.TinyEEGFaceData", "init_args": {"informative": ["eeg"]}},
    }
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(config))
    cli = build_cli(["fit", "-c", str(path)])
    run = tmp_path / "runs" / "cdgkd_tiny" / "version_0"
    metrics = json.loads((run / "test_metrics.json").read_text())["metrics"]
    assert {"acc", "F1", "loss"} <= set(metrics) and 0.0 <= metrics["acc"] <= 1.0
    rows = list(csv.DictReader((run / "metrics.csv").open()))
    logged = {k for r in rows for k, v in r.items() if v}
    assert {"rebalance/face", "rebalance/eeg", "train/proto/face", "train/proto/eeg", "train/ce"} <= logged
    assert cli.model.hparams["feature_dims"] == {"eeg": 4, "face": 16}  # linked from the datamodule
    # the checkpoint rebuilds as a frozen teacher for the next stage, without the config
    teacher, record = load_teacher(cli.trainer.checkpoint_callback.best_model_path,
                                   ("lightning_kd.methods.cdgkd.module.CDGKD",))
    assert record["method"].endswith("CDGKD") and teacher.role == "teacher"
    dm = TinyEEGFaceData()
    dm.setup()
    batch = next(iter(dm.test_dataloader()))
    assert teacher.class_logits(batch).shape == (16, 2)


def test_module_drops_about_half_the_teacher_terms_reproducibly(monkeypatch: pytest.MonkeyPatch,
                                                               teacher_ckpts: list[str]) -> None:
    import math

    from lightning_kd.methods.cdgkd import CDGKD

    monkeypatch.setattr(CDGKD, "global_step", property(lambda self: self.__dict__.get("_step", 0)))
    batch = _batch((8, 4, 4))

    def kept(seed: int, steps: range) -> list[tuple[float, float]]:
        student = CDGKD(**tiny_module_kwargs(role="student", seed=seed, teacher_ckpts=teacher_ckpts))
        student.attach_teachers()
        out = []
        for step in steps:
            student.__dict__["_step"] = step
            with torch.no_grad():
                terms = student.training_losses(batch)
            out.append((float(terms["kept/teacher_0"]), float(terms["kept/teacher_1"])))
        # the same counts went to the shared accumulator (logged per epoch by DistillationStats)
        stats = student.distill_stats.compute()
        for j in range(2):
            assert stats[f"kept/teacher_{j}"] == sum(k[j] for k in out)
            assert stats[f"kept/teacher_{j}"] + stats[f"dropped/teacher_{j}"] == len(steps)
            assert stats[f"kd/teacher_{j}"] > 0
        return out

    pattern = kept(3, range(100))
    n = 2 * len(pattern)
    assert abs(sum(a + b for a, b in pattern) - n / 2) < 5 * math.sqrt(n) / 2  # Binomial(200, 0.5), 5 sigma
    assert kept(3, range(20)) == pattern[:20]  # same seed and steps: the same drops
    assert kept(4, range(100)) != pattern  # another seed: others
