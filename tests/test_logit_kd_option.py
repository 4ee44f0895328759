"""Plain logit KD as an option of any classification student (LogitKDMixin; configs/kd/plain.yaml) on CorrKD."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from test_corrkd import TEACHER_YAML, TINY, mmsa

from conftest import ROOT, resolved_config
from lightning_kd.checkpoint import ConfigError
from lightning_kd.cli import main
from lightning_kd.data.formats.mmsa import MMSADataModule
from lightning_kd.distill import TeacherError
from lightning_kd.io import file_sha256
from lightning_kd.methods.corrkd import CorrKD

pytestmark = pytest.mark.usefixtures("single_thread")

PLAIN = str(ROOT / "configs/kd/plain.yaml")
NET = {"dim": 8, "heads": 2, "layers": 1, "dropout": 0.0, "head_dropout": 0.0}  # deterministic forward


@pytest.fixture(scope="module")
def teacher_ckpt(tiny_mmsa_aligned: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    save = tmp_path_factory.mktemp("kd_teacher")
    main(["fit", "-c", TEACHER_YAML, *mmsa(tiny_mmsa_aligned), *TINY, "--trainer.max_epochs=1",
          "--trainer.limit_train_batches=2", "--test_after_fit=false", "--model.init_args.net.dropout=0",
          "--model.init_args.net.head_dropout=0", "--trainer.logger.init_args.save_dir", str(save)])
    return save / "corrkd/synthetic_teacher/version_0/checkpoints/last.ckpt"


@pytest.fixture(scope="module")
def batch(tiny_mmsa_aligned: Path):
    dm = MMSADataModule(str(tiny_mmsa_aligned), batch_size=8)
    dm.setup()
    return next(iter(dm.train_dataloader()))


def student(teacher: Path | None, weight: float, temperature: float = 3.0, seed: int = 0) -> CorrKD:
    torch.manual_seed(seed)
    kd = None if weight is None else {"temperature": temperature, "weight": weight}
    return CorrKD({"text": 32, "audio": 5, "vision": 7}, net=NET, loss={"mi_hidden": 8}, logit_kd=kd,
                  teacher_ckpts=None if teacher is None else [str(teacher)])


def test_kd_term_is_hintons_kl_computed_by_hand(teacher_ckpt: Path, batch) -> None:
    s = student(teacher_ckpt, weight=0.25, temperature=3.0)
    s.attach_teachers()
    s.train()
    terms = s.distillation_terms(batch, s.training_losses(batch))
    # by hand: T^2 * sum_c p_t (log p_t - log p_s), averaged over samples and tasks; teacher on the complete batch
    T = 3.0
    with torch.no_grad():
        z_s = s.net(batch.inputs, batch.masks).logits
        z_t = s.teacher.net(batch.complete().inputs, batch.complete().masks).logits
        p_t, log_p_s = torch.softmax(z_t / T, -1), torch.log_softmax(z_s / T, -1)
        kd = (T**2 * (p_t * (torch.log(p_t) - log_p_s)).sum(-1)).mean()
        ce = F.cross_entropy(z_s.flatten(0, 1), s.class_labels(batch.target).flatten())
    assert z_s.shape == (8, 1, 2) and "class_logits" not in terms
    assert terms["logit_kd"].item() == pytest.approx(kd.item(), rel=1e-5) and kd.item() > 0
    assert terms["method_loss"].item() == pytest.approx(ce.item(), rel=1e-5)
    assert terms["loss"].item() == pytest.approx(0.25 * ce.item() + 0.75 * kd.item(), rel=1e-5)
    assert s.distill_stats.compute()["logit_kd/teacher_0"] == pytest.approx(kd.item(), rel=1e-5)


def test_weight_one_is_the_plain_loss_exactly_and_gradients_reach_only_the_student(teacher_ckpt: Path,
                                                                                     batch) -> None:
    plain = student(None, weight=None)
    kd1 = student(teacher_ckpt, weight=1.0)
    kd1.attach_teachers()
    assert all(torch.equal(a, b) for a, b in zip(plain.state_dict().values(), kd1.state_dict().values()))
    plain.train(), kd1.train()
    loss_plain = plain.distillation_terms(batch, plain.training_losses(batch))["loss"]
    loss_kd1 = kd1.distillation_terms(batch, kd1.training_losses(batch))["loss"]
    assert torch.equal(loss_plain, loss_kd1)
    # a = 0: the KD term alone; its gradient reaches the student's network and nothing of the teacher
    kd0 = student(teacher_ckpt, weight=0.0)
    kd0.attach_teachers()
    kd0.train()
    terms = kd0.distillation_terms(batch, kd0.training_losses(batch))
    assert torch.equal(terms["loss"], terms["logit_kd"])
    terms["loss"].backward()
    assert all(p.grad is None for p in kd0.teacher.parameters())
    assert not any(p.requires_grad for p in kd0.teacher.parameters())
    head = [p for n, p in kd0.net.named_parameters() if p.grad is not None]
    assert head and any(p.grad.abs().sum() > 0 for p in head)


def test_logit_kd_needs_teachers_with_class_logits(tmp_path: Path, tiny_mmsa_aligned: Path) -> None:
    with pytest.raises(ConfigError, match="logit_kd distils from teachers.*teacher_ckpts"):
        student(None, weight=0.5).setup("fit")
    with pytest.raises(ConfigError, match="logit_kd.weight"):
        student(None, weight=1.5)
    # a regression teacher (no class_logits) is refused with the file named
    import lightning.pytorch as pl

    from lightning_kd.methods.fusion import FusionBaseline

    dm = MMSADataModule(str(tiny_mmsa_aligned), batch_size=8)
    t = pl.Trainer(accelerator="cpu", max_epochs=1, limit_train_batches=1, limit_val_batches=1, logger=False,
                   enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)
    dm.setup()
    t.fit(FusionBaseline(dm.feature_dims, dm.seq_lens, net={"hidden": 8, "heads": 2, "layers": 1}), datamodule=dm)
    t.save_checkpoint(tmp_path / "fusion.ckpt")
    with pytest.raises(TeacherError, match="no class_logits") as exc:
        student(tmp_path / "fusion.ckpt", weight=0.5).attach_teachers()
    assert str((tmp_path / "fusion.ckpt").resolve()) in str(exc.value)


@pytest.mark.slow
def test_plain_kd_config_layers_on_a_student_config(teacher_ckpt: Path, tiny_mmsa_aligned: Path,
                                                    tmp_path: Path) -> None:
    """The command of configs/kd/plain.yaml's header, on the tiny data."""
    cfg = resolved_config("-c", TEACHER_YAML, "-c", PLAIN, "--model.init_args.teacher_ckpts", f"[{teacher_ckpt}]")
    assert cfg["model"]["init_args"]["logit_kd"] == {"temperature": 4.0, "weight": 0.5}
    assert cfg["trainer"]["logger"]["init_args"]["name"] == "kd/plain"
    save = tmp_path / "runs"
    main(["fit", "-c", TEACHER_YAML, "-c", PLAIN, "--model.init_args.teacher_ckpts", f"[{teacher_ckpt}]",
          *mmsa(tiny_mmsa_aligned), *TINY, "--trainer.max_epochs=1", "--trainer.limit_train_batches=2",
          "--trainer.logger.init_args.save_dir", str(save)])
    run = save / "kd/plain/version_0"
    with open(run / "metrics.csv", newline="") as f:
        rows = [r for r in csv.DictReader(f) if r.get("train/logit_kd")]
    assert len(rows) == 1
    r = {k: float(rows[0][k]) for k in ("train/loss", "train/method_loss", "train/logit_kd")}
    assert r["train/logit_kd"] > 0
    assert r["train/loss"] == pytest.approx(0.5 * r["train/method_loss"] + 0.5 * r["train/logit_kd"], rel=1e-4)
    ck = torch.load(run / "checkpoints/last.ckpt", weights_only=True)
    assert ck["lightning_kd"]["teachers"] == [{"path": str(teacher_ckpt.resolve()), "sha256": file_sha256(teacher_ckpt),
                                               "method": "lightning_kd.methods.corrkd.module.CorrKD"}]
    assert ck["hyper_parameters"]["logit_kd"] == {"temperature": 4.0, "weight": 0.5}
    assert (run / "test_metrics.json").is_file()
    # the student checkpoint rebuilds without the teacher file
    assert CorrKD.load_from_checkpoint(run / "checkpoints/last.ckpt").logit_kd.temperature == 4.0
