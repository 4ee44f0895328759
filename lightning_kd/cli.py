"""The ``lightning-kd`` command: LightningCLI (subclass mode) plus a ``generate`` subcommand for data.

    lightning-kd fit|validate|test|predict -c configs/<method>/<config>.yaml [--key value ...]
    lightning-kd robustness -c <run>/config.yaml --ckpt_path <ckpt>   # missing-modality grid
    lightning-kd generate mmsa --out data/synthetic/mosi_aligned.pkl
    lightning-kd pipeline configs/corrkd/synthetic_teacher.yaml configs/corrkd/synthetic_student.yaml [-- --key value ...]
"""

from __future__ import annotations

import sys

import lightning.pytorch as pl
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI

from lightning_kd.callbacks import EpochSeed, PredictionCSVWriter, RunDirSaveConfig, TestMetricsWriter
from lightning_kd.checkpoint import CHECKPOINT_KEY, UserError
from lightning_kd.trainer import KDTrainer


class KDCLI(LightningCLI):
    """LightningCLI with the project's links and run conventions.

    - ``data.feature_dims`` / ``data.seq_lens`` are linked into the model at instantiation, so configs
      never repeat numbers the data knows.
    - ``--test_after_fit true`` tests the best checkpoint at the end of ``fit`` (the DMD protocol).
    - Every run writes into its own directory (logger version); config.yaml, checkpoints,
      test_metrics.json and predictions.csv live there.
    """

    @staticmethod
    def subcommands() -> dict[str, set[str]]:
        return {**LightningCLI.subcommands(), "robustness": {"model", "datamodule"}}

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.link_arguments("data.feature_dims", "model.init_args.feature_dims", apply_on="instantiate")
        parser.link_arguments("data.seq_lens", "model.init_args.seq_lens", apply_on="instantiate")
        parser.add_argument("--test_after_fit", type=bool, default=False,
                            help="After fit, test the best checkpoint and write test_metrics.json.")

    def _parse_ckpt_path(self) -> None:
        """Refuse a ``--ckpt_path`` of another method before Lightning merges its hyper-parameters into the config
        (Lightning >= 2.5 would otherwise swap the configured model class for the checkpoint's)."""
        self._check_ckpt_method()
        super()._parse_ckpt_path()

    def _check_ckpt_method(self) -> None:
        import importlib
        from pathlib import Path

        import torch

        from lightning_kd.methods.base import MethodModule

        sub = self.config.get("subcommand")
        ckpt_path = self.config[sub].get("ckpt_path") if sub else None
        if not ckpt_path or not Path(ckpt_path).is_file():
            return
        class_path = str(self.config[sub].get("model", {}).get("class_path", ""))
        module_name, _, name = class_path.rpartition(".")
        try:
            cls = getattr(importlib.import_module(module_name), name)
        except (ImportError, AttributeError, ValueError):
            return
        if not (isinstance(cls, type) and issubclass(cls, MethodModule)):
            return
        try:
            # mmap: only the small tag is read here, not the weights (Lightning loads the file next)
            tag = torch.load(ckpt_path, weights_only=True, map_location="cpu", mmap=True).get(CHECKPOINT_KEY)
        except Exception:  # noqa: BLE001 - not a readable checkpoint: Lightning reports it
            return
        cls.check_checkpoint_tag(tag, f"checkpoint {ckpt_path}")

    def after_fit(self) -> None:
        if self.config[self.subcommand].get("test_after_fit"):
            cb = self.trainer.checkpoint_callback  # the first ModelCheckpoint: the best by the monitored metric
            ckpt = None  # no checkpoint (fast_dev_run, checkpointing off): test the weights in memory
            if cb is not None and not self.trainer.fast_dev_run and cb.best_model_path:
                ckpt = cb.best_model_path
            self.trainer.test(self.model, datamodule=self.datamodule, ckpt_path=ckpt)


def build_cli(args: list[str] | None = None, run: bool = True) -> KDCLI:
    """Build (and by default run) the CLI; ``args`` replaces ``sys.argv[1:]`` (notebooks, sweeps, tests)."""
    return KDCLI(
        pl.LightningModule,
        pl.LightningDataModule,
        trainer_class=KDTrainer,
        subclass_mode_model=True,
        subclass_mode_data=True,
        save_config_callback=RunDirSaveConfig,
        save_config_kwargs={"overwrite": True},
        trainer_defaults={"callbacks": [EpochSeed(), TestMetricsWriter(), PredictionCSVWriter()]},
        args=args,
        run=run,
        auto_configure_optimizers=False,
    )


TEACHER_OPTION = "--model.init_args.teacher_ckpt"


def run_pipeline(stages: list[str], extra: list[str] | None = None) -> list[str]:
    """Fit each stage config in order; every stage after the first gets the previous stage's best checkpoint
    as ``model.init_args.teacher_ckpt``. ``extra`` arguments apply to every stage. Returns the checkpoints."""
    if len(stages) < 2:
        raise ValueError("a pipeline needs at least two stage configs (teacher, then student)")
    ckpts: list[str] = []
    for i, cfg in enumerate(stages):
        chain = [TEACHER_OPTION, ckpts[-1]] if ckpts else []
        print(f"lightning-kd pipeline: stage {i + 1}/{len(stages)}: fit -c {cfg} {' '.join(chain)}", flush=True)
        cli = build_cli(["fit", "-c", cfg, *(extra or []), *chain])
        cb = cli.trainer.checkpoint_callback
        best = cb.best_model_path if cb is not None else ""
        if not best:
            raise RuntimeError(f"stage {cfg} saved no checkpoint (checkpointing off or fast_dev_run?), so the next "
                               "stage has no teacher; enable a ModelCheckpoint in that config")
        ckpts.append(best)
    print("lightning-kd pipeline: done; checkpoints:\n  " + "\n  ".join(ckpts), flush=True)
    return ckpts


def pipeline_cli(argv: list[str]) -> None:
    """``lightning-kd pipeline STAGE1.yaml STAGE2.yaml [...] [-- shared fit arguments]``."""
    if "-h" in argv[:1] or "--help" in argv[:1] or not argv:
        print("usage: lightning-kd pipeline STAGE1.yaml STAGE2.yaml [...] [-- --key value ...]\n\n"
              "Fits the stage configs in order; each stage after the first distils from the previous stage's best\n"
              f"checkpoint ({TEACHER_OPTION}). Arguments after `--` apply to every stage, e.g.\n"
              "  lightning-kd pipeline configs/corrkd/synthetic_teacher.yaml configs/corrkd/synthetic_student.yaml "
              "-- --trainer.max_epochs 5")
        return
    cut = argv.index("--") if "--" in argv else len(argv)
    run_pipeline(argv[:cut], argv[cut + 1:])


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else list(argv)
    if args and args[0] == "generate":
        from lightning_kd.data.generate.command import generate_cli

        generate_cli(args[1:])
        return
    try:
        if args and args[0] == "pipeline":
            pipeline_cli(args[1:])
            return
        build_cli(None if argv is None else args)
    except Exception as err:  # noqa: BLE001 - user errors may arrive wrapped by jsonargparse's instantiation
        known = _user_error(err)
        if known is None:
            raise
        print(f"lightning-kd: error: {known}", file=sys.stderr)
        raise SystemExit(2) from None


USER_ERRORS = (UserError, FileNotFoundError)


def _user_error(err: BaseException) -> BaseException | None:
    """The first exception in ``err``'s cause chain that is a user error with a fix in its message."""
    seen: set[int] = set()
    while err is not None and id(err) not in seen:
        if isinstance(err, USER_ERRORS):
            return err
        seen.add(id(err))
        err = err.__cause__ or err.__context__
    return None


if __name__ == "__main__":
    main()
