"""Two node ranks launched by torchrun (``--nnodes 2 --nproc_per_node 1``, gloo on CPU, both on 127.0.0.1) train
through the CLI (``--trainer.num_nodes 2 --trainer.devices 1 --trainer.strategy ddp``), write one run directory,
and end with the weights a single process computes from the same samples. The DMD run is also launched the way
``srun`` starts one task per node of an ``sbatch --nodes=2 --ntasks-per-node=1`` job (the SLURM variables set by
hand, Lightning's SLURMEnvironment) and must give the torchrun run's weights bit for bit.

What makes the two comparable. DDP averages the gradients of the ranks; rank ``r`` of 2 trains on positions
``r::2`` of the epoch's permutation (:class:`~lightning_kd.data.split.EpochSeededSampler`), so step ``k`` of the
two ranks with batch ``B`` covers the samples of step ``k`` of one process with batch ``2B``. Dropout is off
(each rank draws its own masks); neither network has BatchNorm; the missing-modality masks of the CorrKD
student are keyed by sample index and epoch, so they do not depend on which process draws them.

- DMD, reference = one process with batch ``2B``: the gradient of a mean over ``2B`` samples is the mean of the
  two ranks' gradients for every term that is a per-sample mean. Two DMD terms couple the samples of a batch
  (the similarity hinge ranks every pair, and the GD-Unit regulariser squares a batch mean), so this test turns
  them off (``loss.sim_ort_weight 0``, ``loss.gd_reg_weight 0``). What remains agrees up to float rounding, which
  Adam turns into steps of order ``lr`` on the parameters whose true gradient is zero (attention key biases, the
  softmax-invariant GD edge bias): tolerance ``|w_2nodes - w_ref| <= 2e-2 |w_ref - w_init|`` (L2 over all
  weights; measured 3.3e-3, and 0.52 when the ranks group the samples otherwise).
- CorrKD student, reference = one process with batch ``B`` accumulating 2 micro-batches that are the two ranks'
  batches in turn (rank 0's then rank 1's): Lightning halves each micro-batch loss and sums the gradients, DDP
  halves each rank's gradient and sums them, so the result is the same for every term, also the batch-coupled
  SCD / CPD / RCD, and (halving is exact in binary floats) bit for bit: measured max |dw| = 0, asserted <= 1e-6.
"""

from __future__ import annotations

import csv
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

import lightning_kd.data.datamodule as datamodule_module
from conftest import ROOT, TINY_MODEL_ARGS
from lightning_kd.cli import build_only, main
from lightning_kd.data.formats.mmsa import MMSADataModule
from lightning_kd.data.split import EpochSeededSampler

pytestmark = pytest.mark.usefixtures("single_thread")  # rounding as in the 1-thread node ranks

B = 4  # per-rank batch; the tiny MMSA file has 40 training samples: 5 steps per epoch, no padding
DMD_YAML = str(ROOT / "configs/dmd/mosi_aligned.yaml")
CORRKD = ROOT / "configs/corrkd"
DMD_EXACT = [  # no dropout; no batch-coupled terms (see the module docstring)
    *(f"--model.init_args.net.{k}=0" for k in ("text_dropout", "attn_dropout", "attn_dropout_a", "attn_dropout_v",
                                                "relu_dropout", "embed_dropout", "res_dropout", "output_dropout")),
    "--model.init_args.loss.sim_ort_weight=0", "--model.init_args.loss.gd_reg_weight=0",
]
CORRKD_TINY = ["--data.class_path", "lightning_kd.data.formats.mmsa.MMSADataModule",
               "--model.init_args.net.dim=8", "--model.init_args.net.heads=2", "--model.init_args.net.layers=1",
               "--model.init_args.loss.mi_hidden=8", "--model.init_args.net.dropout=0",
               "--model.init_args.net.head_dropout=0", "--trainer.enable_progress_bar=false",
               "--trainer.enable_model_summary=false"]
TWO_NODES = ["--trainer.num_nodes=2", "--trainer.devices=1", "--trainer.strategy=ddp", "--trainer.accelerator=cpu"]
TMP_MARKERS = (".tmp", "~", ".part", ".partial")


# -- helpers ------------------------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def two_node_ranks(args: list[str], cwd: Path, launcher: str = "torchrun", timeout: float = 300) -> list[str]:
    """Runs ``lightning_kd.cli fit ARGS`` as node ranks 0 and 1 at once, asserts both exit 0, returns their outputs.

    ``launcher="torchrun"``: ``torchrun --nnodes 2 --nproc_per_node 1 --node_rank r --master_addr 127.0.0.1``
    (Lightning's TorchElasticEnvironment). ``"slurm"``: the plain command with the variables ``srun`` sets for one
    task on each of 2 nodes (Lightning's SLURMEnvironment), i.e. the sbatch form without a SLURM cluster.
    """
    port = free_port()
    base = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "TORCHELASTIC_"))}  # a CI job's own
    base.update(WANDB_MODE="disabled", OMP_NUM_THREADS="1",
                PYTHONPATH=os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p))
    logs = [cwd / f"{launcher}{r}.log" for r in (0, 1)]
    procs = []
    for r, log in enumerate(logs):
        if launcher == "torchrun":
            cmd = [sys.executable, "-m", "torch.distributed.run", "--nnodes=2", "--nproc_per_node=1",
                   f"--node_rank={r}", "--master_addr=127.0.0.1", f"--master_port={port}", "-m", "lightning_kd.cli"]
            env = base
        else:
            cmd = [sys.executable, "-m", "lightning_kd.cli"]
            env = {**base, "SLURM_JOB_ID": "4242", "SLURM_JOB_NAME": "lightning-kd", "SLURM_NNODES": "2",
                   "SLURM_NTASKS": "2", "SLURM_NTASKS_PER_NODE": "1", "SLURM_NODELIST": "127.0.0.1",
                   "SLURM_PROCID": str(r), "SLURM_NODEID": str(r), "SLURM_LOCALID": "0", "MASTER_PORT": str(port)}
        with open(log, "w") as out:  # a file, not a pipe: neither rank can block on a full pipe
            procs.append(subprocess.Popen([*cmd, "fit", *args], cwd=cwd, env=env, stdout=out,
                                          stderr=subprocess.STDOUT, start_new_session=True))
    try:
        codes = [p.wait(timeout=timeout) for p in procs]
    except subprocess.TimeoutExpired:
        for p in procs:  # each launcher with its worker (its own session)
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()
        pytest.fail(f"the two node ranks did not finish in {timeout} s:\n" + logs[0].read_text()[-3000:])
    texts = [log.read_text() for log in logs]
    for r, (code, text) in enumerate(zip(codes, texts)):
        assert code == 0, f"node rank {r} ({launcher}) exited {code}:\n{text[-4000:]}"
    assert "GLOBAL_RANK: 1, MEMBER: 2/2" in texts[1], texts[1][-2000:]
    return texts


def only_run_dir(save_dir: Path, name: str) -> Path:
    """The one run directory under ``save_dir/name``; nothing else was written under ``save_dir``, no file is empty
    or a leftover of an unfinished write."""
    runs = sorted((save_dir / name).iterdir())
    assert [r.name for r in runs] == ["version_0"], f"one run directory expected, found {[r.name for r in runs]}"
    everything = [p for p in save_dir.rglob("*") if p.is_file()]
    assert all(p.is_relative_to(runs[0]) for p in everything), everything
    for p in everything:
        assert p.stat().st_size > 0 and not p.name.startswith(".") and not p.name.endswith(TMP_MARKERS), p
    return runs[0]


def train_epoch_means(run: Path) -> dict[str, list[float]]:
    """The ``train/*`` epoch means of a CSVLogger ``metrics.csv``, per column in epoch order."""
    out: dict[str, list[float]] = {}
    with open(run / "metrics.csv", newline="") as f:
        for row in csv.DictReader(f):
            for k, v in row.items():
                if k.startswith("train/") and v not in ("", None):
                    out.setdefault(k, []).append(float(v))
    return out


def weights(ckpt: Path) -> dict[str, torch.Tensor]:
    state = torch.load(ckpt, map_location="cpu", weights_only=False)
    return {k: v for k, v in state["state_dict"].items() if v.is_floating_point()}


def order(n: int, seed: int, replicas: int = 1, rank: int = 0, epoch: int = 0) -> list[int]:
    """The indices :class:`EpochSeededSampler` gives ``rank`` of ``replicas`` in ``epoch``."""
    sampler = EpochSeededSampler(n, seed, replicas, rank)
    sampler.set_epoch(epoch)
    return list(sampler)


class InterleavedShards(EpochSeededSampler):
    """One process's order that replays two ranks' batches in turn: rank 0's batch k, then rank 1's batch k."""

    def __iter__(self):
        shards = [order(self.n, self.seed, 2, r, self.epoch) for r in (0, 1)]
        return iter([i for k in range(0, len(shards[0]), B) for s in shards for i in s[k:k + B]])


# -- the sampler --------------------------------------------------------------------------------------------
def test_rank_shards_partition_the_single_process_order(tiny_mmsa_aligned: Path) -> None:
    """Ranks take every W-th position of the one permutation (padded as DistributedSampler pads), per epoch; a
    datamodule under a parallel strategy builds its own sharded sampler, which Lightning keeps."""
    from torch.utils.data import DistributedSampler

    for epoch in (0, 3):
        whole = order(10, 7, epoch=epoch)
        assert sorted(whole) == list(range(10))
        assert [order(10, 7, 2, r, epoch) for r in (0, 1)] == [whole[0::2], whole[1::2]]
        padded = whole + whole[:2]
        assert [order(10, 7, 3, r, epoch) for r in range(3)] == [padded[r::3] for r in range(3)]
        assert [order(2, 7, 3, r, epoch) for r in range(3)] == [[i] for i in order(2, 7, epoch=epoch) * 2][:3]
    assert order(10, 7, epoch=0) != order(10, 7, epoch=1)

    dm = MMSADataModule(path=str(tiny_mmsa_aligned), batch_size=B, seed=5)
    dm.setup("fit")
    assert list(dm.train_dataloader().sampler) == order(40, 5)
    dm.trainer = SimpleNamespace(distributed_sampler_kwargs={"num_replicas": 2, "rank": 1})
    sampler = dm.train_dataloader().sampler
    assert isinstance(sampler, DistributedSampler)  # Lightning replaces only samplers that are not
    assert list(sampler) == order(40, 5)[1::2]


# -- DMD ------------------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_dmd_two_nodes_torchrun_and_slurm_equal_one_process_with_twice_the_batch(tiny_mmsa_aligned: Path, tmp_path: Path) -> None:
    common = [DMD_YAML, "--data.init_args.path", str(tiny_mmsa_aligned), *TINY_MODEL_ARGS, *DMD_EXACT,
              "--trainer.max_epochs=2", "--trainer.num_sanity_val_steps=0"]
    runs = {}
    for launcher in ("torchrun", "slurm"):
        save_dir = tmp_path / launcher
        two_node_ranks(["-c", *common, "--data.init_args.batch_size", str(B), *TWO_NODES, "--test_after_fit=true",
                        "--trainer.logger.init_args.save_dir", str(save_dir)], cwd=tmp_path, launcher=launcher)
        run = runs[launcher] = only_run_dir(save_dir, "dmd/mosi_aligned")
        ckpts = sorted(p.name for p in (run / "checkpoints").iterdir())
        assert len(ckpts) == 2 and "last.ckpt" in ckpts, ckpts  # best by val/loss + last
        assert {p.name for p in run.iterdir()} == {"checkpoints", "config.yaml", "hparams.yaml", "metrics.csv",
                                                   "test_metrics.json"}
        assert "num_nodes: 2" in (run / "config.yaml").read_text()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["slurm", "slurm0.log", "slurm1.log", "torchrun",
                                                          "torchrun0.log", "torchrun1.log"]  # nothing else, anywhere
    run = runs["torchrun"]
    a, s = weights(run / "checkpoints/last.ckpt"), weights(runs["slurm"] / "checkpoints/last.ckpt")
    assert all(torch.equal(a[k], s[k]) for k in a), "the SLURM and torchrun launches computed different weights"

    ref_dir = tmp_path / "reference"
    main(["fit", "-c", *common, "--data.init_args.batch_size", str(2 * B), "--trainer.accelerator=cpu",
          "--test_after_fit=false", "--trainer.logger.init_args.save_dir", str(ref_dir)])
    ref_run = ref_dir / "dmd/mosi_aligned/version_0"
    init = build_only(["fit", "-c", *common, "--trainer.logger.init_args.save_dir", str(tmp_path / "unused")]).model
    w0 = {k: v.detach() for k, v in init.state_dict().items() if v.is_floating_point()}

    b = weights(ref_run / "checkpoints/last.ckpt")
    assert a.keys() == b.keys() == w0.keys()
    diff = torch.cat([(a[k] - b[k]).flatten() for k in b]).norm()
    moved = torch.cat([(b[k] - w0[k]).flatten() for k in b]).norm()
    assert moved > 0.1, "the reference did not train"
    assert diff <= 2e-2 * moved, f"|w_2nodes - w_ref| = {diff:.3g} > 2e-2 * |w_ref - w_init| = {2e-2 * moved:.3g}"

    # the logged train terms are epoch means over both ranks (every per-sample-mean term equals the reference's)
    got, want = train_epoch_means(run), train_epoch_means(ref_run)
    for k in ("train/loss", "train/task", "train/recon", "train/self_regression", "train/homo_logit"):
        assert len(got[k]) == 2, k
        torch.testing.assert_close(torch.tensor(got[k]), torch.tensor(want[k]), rtol=1e-5, atol=0, msg=k)


# -- CorrKD student with a frozen teacher ------------------------------------------------------------------
@pytest.fixture(scope="module")
def corrkd_teacher(tiny_mmsa_aligned: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny CorrKD teacher, one process, 1 epoch of 2 batches."""
    save = tmp_path_factory.mktemp("multinode_teacher")
    main(["fit", "-c", str(CORRKD / "synthetic_teacher.yaml"), *CORRKD_TINY, "--data.init_args.path",
          str(tiny_mmsa_aligned), "--data.init_args.batch_size=8", "--trainer.max_epochs=1",
          "--trainer.limit_train_batches=2", "--test_after_fit=false", "--trainer.logger.init_args.save_dir", str(save)])
    return save / "corrkd/synthetic_teacher/version_0/checkpoints/last.ckpt"


@pytest.mark.slow
def test_corrkd_student_two_nodes_equal_one_process_accumulating_the_rank_batches(
        tiny_mmsa_aligned: Path, corrkd_teacher: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    common = ["-c", str(CORRKD / "synthetic_student.yaml"), *CORRKD_TINY, "--data.init_args.path",
              str(tiny_mmsa_aligned), "--model.init_args.teacher_ckpt", str(corrkd_teacher),
              "--data.init_args.batch_size", str(B), "--trainer.max_epochs=2", "--trainer.num_sanity_val_steps=0",
              "--trainer.limit_val_batches=1", "--test_after_fit=false"]
    teacher_bytes = corrkd_teacher.read_bytes()
    two_node_ranks([*common, *TWO_NODES, "--trainer.logger.init_args.save_dir", str(tmp_path / "nodes")],
                   cwd=tmp_path)
    run = only_run_dir(tmp_path / "nodes", "corrkd/synthetic_student")
    assert corrkd_teacher.read_bytes() == teacher_bytes  # the frozen teacher is read, never written

    monkeypatch.setattr(datamodule_module, "EpochSeededSampler", InterleavedShards)
    main(["fit", *common, "--trainer.accumulate_grad_batches=2", "--trainer.accelerator=cpu",
          "--trainer.logger.init_args.save_dir", str(tmp_path / "reference")])
    ref_run = tmp_path / "reference/corrkd/synthetic_student/version_0"

    a_ck = torch.load(run / "checkpoints/last.ckpt", map_location="cpu", weights_only=False)
    b_ck = torch.load(ref_run / "checkpoints/last.ckpt", map_location="cpu", weights_only=False)
    assert a_ck["global_step"] == b_ck["global_step"] == 10 and a_ck["epoch"] == b_ck["epoch"] == 1
    assert a_ck["lightning_kd"]["teacher"] == b_ck["lightning_kd"]["teacher"]
    a, b = weights(run / "checkpoints/last.ckpt"), weights(ref_run / "checkpoints/last.ckpt")
    assert a.keys() == b.keys() and not any(k.startswith("teacher") for k in a)
    for k in b:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=1e-6, msg=k)
    got, want = train_epoch_means(run), train_epoch_means(ref_run)
    for k in ("train/loss", "train/task", "train/scd", "train/cpd", "train/rcd"):
        assert len(got[k]) == 2, k
        torch.testing.assert_close(torch.tensor(got[k]), torch.tensor(want[k]), rtol=1e-5, atol=1e-7, msg=k)
