"""The ``lightning-kd`` command: LightningCLI (subclass mode) plus ``generate`` (data), ``pipeline`` (stage chains),
``benchmark`` (suites, :mod:`lightning_kd.benchmark`) and ``export`` (ONNX / TorchScript, :mod:`lightning_kd.export`).

    lightning-kd fit|validate|test|predict -c configs/<method>/<config>.yaml [--key value ...]
    lightning-kd robustness -c <run>/config.yaml --ckpt_path <ckpt>   # missing-modality grid
    lightning-kd export -c <run>/config.yaml --ckpt_path <ckpt> --format onnx|torchscript --out FILE
    lightning-kd generate mmsa --out data/synthetic/mosi_aligned.pkl
    lightning-kd pipeline configs/corrkd/synthetic_teacher.yaml configs/corrkd/synthetic_student.yaml [-- --key value ...]
    lightning-kd pipeline configs/cdgkd/deap_{teacher,ta1,ta2,student}.yaml -- -c configs/cdgkd/tiny.yaml ...
        # stages named after the files; `teacher_stages: [deap_teacher, deap_ta1]` in a stage config picks its
        # teachers; re-running skips up-to-date stages (pipeline.json)
    lightning-kd benchmark -c configs/benchmark/sentiment.yaml [--out DIR]   # methods x data sets x seeds
"""

from __future__ import annotations

import hashlib
import importlib
import json
import os
import sys
from pathlib import Path
from typing import Any, NoReturn

import lightning.pytorch as pl
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI

from lightning_kd.callbacks import EpochSeed, PredictionCSVWriter, RunDirSaveConfig, TestMetricsWriter
from lightning_kd.callbacks.run_dir import output_dir_problem, planned_run_dir, remove_unused_run_dir
from lightning_kd.checkpoint import (
    CHECKPOINT_KEY,
    CKPT_FIX,
    ConfigError,
    OutputPathError,
    UserError,
    load_checkpoint,
    register_safe_globals,
)
from lightning_kd.io import atomic_write_text, file_sha256
from lightning_kd.trainer import KDTrainer

#: ``--ckpt_path`` values Lightning resolves itself (no local file to check here)
_LIGHTNING_CKPT_NAMES = ("best", "last", "hpc")

#: lines of a jsonargparse error that only restate the structure (dropped from the one-line message)
_NOISE = ("Does not validate against any of the Union subtypes", "Subtypes:", "Errors:", "Given value type:",
          "Given value:", "Expected a <class 'NoneType'>")


class KDArgumentParser(LightningArgumentParser):
    """LightningArgumentParser whose errors are one line (the error, then where to look), not 50 lines of usage."""

    def error(self, message: str, ex: Exception | None = None) -> NoReturn:
        try:
            from jsonargparse._common import debug_mode_active
        except ImportError:  # a jsonargparse without it: JSONARGPARSE_DEBUG is its switch
            def debug_mode_active() -> bool:
                return bool(os.environ.get("JSONARGPARSE_DEBUG"))

        if not self.exit_on_error or debug_mode_active():  # parsing attempts inside jsonargparse: let it raise
            super().error(message, ex)
        parser = getattr(ex, "subcommand_parser", None) or self
        words = parser.prog.replace(" [options]", "").split()
        command = " ".join(["lightning-kd", *words[1:]])
        lines = [ln.strip().removeprefix("- ") for ln in str(message).splitlines()]
        text = " ".join(ln for ln in lines if ln and not ln.startswith(_NOISE))
        sys.stderr.write(f"lightning-kd: error: {text} (see `{command} --help`)\n")
        sys.exit(2)


class KDCLI(LightningCLI):
    """LightningCLI with the project's links and run conventions.

    - ``data.feature_dims`` / ``data.seq_lens`` are linked into the model at instantiation, so configs
      never repeat numbers the data knows. Before the model is built, the datamodule is checked against what
      the method declares it needs (``data_needs``, :mod:`lightning_kd.data.contract`).
    - ``--ckpt_path`` is read with ``weights_only=True`` and must be a checkpoint of the configured method.
    - ``--test_after_fit true`` tests the best checkpoint at the end of ``fit`` (the DMD protocol).
    - Every run writes into its own directory (logger version); config.yaml, checkpoints,
      test_metrics.json and predictions.csv live there. A run that fails before writing results leaves none.
    """

    @staticmethod
    def subcommands() -> dict[str, set[str]]:
        return {**LightningCLI.subcommands(), "robustness": {"model", "datamodule"}}

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.link_arguments("data", "model.init_args.feature_dims", compute_fn=self._checked_feature_dims,
                              apply_on="instantiate")
        parser.link_arguments("data.seq_lens", "model.init_args.seq_lens", apply_on="instantiate")
        parser.add_argument("--test_after_fit", type=bool, default=False,
                            help="After fit, test the best checkpoint and write test_metrics.json.")
        parser.add_argument("--teacher_stages", type=list[str] | None, default=None,
                            help="Pipeline stages (config file stems) whose best checkpoints teach this one, in "
                                 "order; `lightning-kd pipeline` passes them as model.init_args.teacher_ckpts. "
                                 "[] = no teacher; null = the previous stage.")

    def before_instantiate_classes(self) -> None:
        """A stage config naming ``teacher_stages`` needs its teachers' checkpoints (which the pipeline passes)."""
        sub = self.subcommand
        cfg = self.config.get(str(sub), self.config) if sub else self.config
        stages = cfg.get("teacher_stages")
        if sub != "fit" or not stages:
            return
        init_args = (cfg.get("model") or {}).get("init_args") or {}
        if not init_args.get("teacher_ckpts") and not init_args.get(TEACHER_OPTION.rsplit(".", 1)[-1]):
            raise ConfigError(f"this config is taught by the pipeline stages {list(stages)} (`teacher_stages`), but no "
                              "teacher checkpoint is given. Fix: run it with `lightning-kd pipeline` after those "
                              "stages' configs, or set model.init_args.teacher_ckpts to their best checkpoints.")

    # -- the data fits the method (checked after the datamodule, before the model is built) ----------------
    def _checked_feature_dims(self, datamodule: Any) -> dict[str, int] | None:
        self._check_data(datamodule)
        return getattr(datamodule, "feature_dims", None)

    def _check_data(self, datamodule: Any) -> None:
        from lightning_kd.data.contract import check_data

        cfg = self.config.get(str(self.subcommand), self.config)
        model_cfg = cfg.get("model")
        cls = _import(str(model_cfg.get("class_path", ""))) if model_cfg is not None else None
        needs_fn = getattr(cls, "data_needs", None)
        if not callable(needs_fn):
            return
        init_args = model_cfg.get("init_args")
        hparams = init_args.as_dict() if hasattr(init_args, "as_dict") else dict(init_args or {})
        files = [str(getattr(c, "relative", c)) for c in (cfg.get("config") or [])]
        where = " + ".join(files) if files else "the command line"
        check_data(needs_fn(hparams), datamodule, cls.__name__, where=where, stage=self.subcommand)

    # -- --ckpt_path: safe, readable, and of this method --------------------------------------------------
    def _parse_ckpt_path(self) -> None:
        """Check ``--ckpt_path`` before Lightning merges its hyper-parameters into the config (Lightning >= 2.5
        would otherwise swap the configured model class for the checkpoint's): the file is read with
        ``weights_only=True`` (refused unread if it needs more), must be a Lightning checkpoint, and must hold
        the configured method. Each failure is one line naming the file and the fix."""
        sub = self.config.get("subcommand")
        ckpt_path = self.config[sub].get("ckpt_path") if sub else None
        if ckpt_path and not (str(ckpt_path) in _LIGHTNING_CKPT_NAMES or str(ckpt_path).startswith("registry")
                              or "://" in str(ckpt_path)):
            # mmap: the tag and hyper-parameters are read here, the weights when Lightning loads the file next
            checkpoint = load_checkpoint(ckpt_path, fix=CKPT_FIX, mmap=True)
            self._check_ckpt_method(checkpoint.get(CHECKPOINT_KEY), str(ckpt_path))
        super()._parse_ckpt_path()

    def _check_ckpt_method(self, tag: Any, ckpt_path: str) -> None:
        from lightning_kd.methods.base import MethodModule

        sub = self.config.get("subcommand")
        cls = _import(str(self.config[sub].get("model", {}).get("class_path", "")))
        if isinstance(cls, type) and issubclass(cls, MethodModule):
            cls.check_checkpoint_tag(tag if isinstance(tag, dict) else None, f"checkpoint {ckpt_path}")

    # -- outputs ------------------------------------------------------------------------------------------
    def after_instantiate_classes(self) -> None:
        """Refuse a ``save_dir`` / ``default_root_dir`` that is a file or not writable, before anything runs."""
        trainer = self.trainer
        if trainer is None or trainer.fast_dev_run:  # a smoke run writes nothing
            return
        places = [("trainer.logger.init_args.save_dir", lg.save_dir) for lg in trainer.loggers
                  if isinstance(getattr(lg, "save_dir", None), (str, os.PathLike))]
        places.append(("trainer.default_root_dir", trainer.default_root_dir))
        for option, path in places:
            problem = output_dir_problem(path)
            if problem:
                raise OutputPathError(f"`--{option}` {path} cannot hold the run: {problem}. Fix: set `--{option}` "
                                      "to a writable directory.")

    def _run_subcommand(self, subcommand: str) -> None:
        planned = planned_run_dir(self.trainer)
        new_dir = planned is not None and not planned.exists()
        try:
            super()._run_subcommand(subcommand)
        except BaseException:
            if new_dir:  # a failed run leaves no directory holding only config.yaml / logger files
                remove_unused_run_dir(planned, self.trainer)
            raise

    def after_fit(self) -> None:
        if self.config[self.subcommand].get("test_after_fit"):
            cb = self.trainer.checkpoint_callback  # the first ModelCheckpoint: the best by the monitored metric
            ckpt = None  # no checkpoint (fast_dev_run, checkpointing off): test the weights in memory
            if cb is not None and not self.trainer.fast_dev_run and cb.best_model_path:
                ckpt = cb.best_model_path
            self.trainer.test(self.model, datamodule=self.datamodule, ckpt_path=ckpt)


def _import(class_path: str) -> Any:
    """``package.module.Name`` -> the object, or None when it cannot be imported (jsonargparse reports that)."""
    module_name, _, name = class_path.rpartition(".")
    try:
        return getattr(importlib.import_module(module_name), name)
    except (ImportError, AttributeError, ValueError):
        return None


def build_cli(args: list[str] | None = None, run: bool = True, cli_class: type[KDCLI] = KDCLI) -> KDCLI:
    """Build (and by default run) the CLI; ``args`` replaces ``sys.argv[1:]`` (notebooks, sweeps, tests);
    ``cli_class``: a subclass of :class:`KDCLI` (e.g. one that builds without running, for ``export``)."""
    register_safe_globals()  # Lightning's own checkpoint loads accept what the teacher loader accepts
    return cli_class(
        pl.LightningModule,
        pl.LightningDataModule,
        trainer_class=KDTrainer,
        subclass_mode_model=True,
        subclass_mode_data=True,
        parser_class=KDArgumentParser,
        save_config_callback=RunDirSaveConfig,
        save_config_kwargs={"overwrite": True},
        trainer_defaults={"callbacks": [EpochSeed(), TestMetricsWriter(), PredictionCSVWriter()]},
        args=args,
        run=run,
        auto_configure_optimizers=False,
    )


class _BuildOnlyCLI(KDCLI):
    """Builds model, data and trainer from the arguments and runs nothing (``lightning-kd export``)."""

    def _run_subcommand(self, subcommand: str) -> None:
        pass


def build_only(args: list[str]) -> KDCLI:
    """The CLI built from ``args`` (e.g. ``test -c CONFIG --ckpt_path CKPT``) without running the subcommand."""
    return build_cli(args, cli_class=_BuildOnlyCLI)


TEACHER_OPTION = "--model.init_args.teacher_ckpt"
TEACHERS_OPTION = "--model.init_args.teacher_ckpts"
LOGGER_NAME_OPTION = "--trainer.logger.init_args.name"
MANIFEST = "pipeline.json"
DEFAULT_LOGGER_NAME = "lightning_logs"  # CSVLogger / TensorBoardLogger's name when a config sets none


class _Resolved(Exception):  # noqa: N818 - control flow: carries the parsed config out of the CLI constructor
    def __init__(self, config: Any) -> None:
        super().__init__("resolved")
        self.config = config


class _ParseOnly(KDCLI):
    """Parses and validates a command line exactly as ``fit`` does, then stops before building anything."""

    def before_instantiate_classes(self) -> None:
        raise _Resolved(self.config)


def resolve_config(args: list[str]) -> Any:
    """The complete config (a jsonargparse Namespace of the subcommand) that ``args`` resolve to; builds nothing."""
    register_safe_globals()
    try:
        _ParseOnly(pl.LightningModule, pl.LightningDataModule, trainer_class=KDTrainer, subclass_mode_model=True,
                   subclass_mode_data=True, parser_class=KDArgumentParser, save_config_callback=None, args=args,
                   auto_configure_optimizers=False)
    except _Resolved as r:
        return r.config[r.config["subcommand"]]
    raise RuntimeError("the CLI did not stop before instantiation")  # pragma: no cover


def _logger_init(cfg: Any) -> Any:
    """The init_args of the (first) configured logger, or None (no logger, or one given as an object)."""
    logger = cfg.get("trainer", {}).get("logger")
    if isinstance(logger, list):
        logger = logger[0] if logger else None
    return logger.get("init_args") if hasattr(logger, "get") else None


def _stage_fingerprint(cfg_file: str, resolved: Any, extra: list[str], teacher_shas: list[str]) -> str:
    plain_cfg = resolved.as_dict() if hasattr(resolved, "as_dict") else dict(resolved)
    doc = {"config_sha256": file_sha256(cfg_file), "resolved": plain_cfg, "shared": list(extra),
           "teachers_sha256": list(teacher_shas)}
    return hashlib.sha256(json.dumps(doc, sort_keys=True, default=str).encode()).hexdigest()


def _read_manifest(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {"version": 1, "stages": {}}
    try:
        doc = json.loads(path.read_text())
        if not isinstance(doc.get("stages"), dict):
            raise ValueError("no 'stages' mapping")
    except (ValueError, AttributeError) as e:
        raise ConfigError(f"pipeline manifest {path} cannot be read ({e}). Fix: delete it (every stage is then "
                          "fitted again) or restore it.") from e
    return doc


def _write_manifest(path: Path, doc: dict[str, Any]) -> None:
    atomic_write_text(path, lambda f: f.write(json.dumps(doc, indent=2, sort_keys=True) + "\n"))


def _teacher_plan(names: list[str], declared: list[Any]) -> list[list[int] | None]:
    """Per stage: the indices of its teacher stages (``[]``: none), or None for the previous stage's rule."""
    plan: list[list[int] | None] = []
    for i, (name, stages) in enumerate(zip(names, declared)):
        if stages is None:
            plan.append([i - 1] if i > 0 else [])
            continue
        idx = []
        for t in stages:
            if t not in names:
                raise ConfigError(f"stage {name}: teacher_stages names '{t}', which is not a stage of this pipeline "
                                  f"(stages: {', '.join(names)}). Fix: use the stem of an earlier stage's config "
                                  "file, or add that config to the pipeline before this one.")
            j = names.index(t)
            if j >= i:
                raise ConfigError(f"stage {name}: teacher_stages names '{t}', which runs {'as' if j == i else 'after'} "
                                  f"this stage; a stage is taught only by earlier stages. Fix: list '{t}' before "
                                  f"'{name}' on the command line, or remove it from teacher_stages.")
            idx.append(j)
        plan.append(idx)
    return plan


def run_pipeline(stages: list[str], extra: list[str] | None = None) -> list[str]:
    """Fit the stage configs in order and return their best checkpoints.

    A stage is named after its config's file stem. Its teachers: the stages its ``teacher_stages`` key names
    (their best checkpoints as ``model.init_args.teacher_ckpts``, in that order; ``[]`` = none), else the
    previous stage's best checkpoint as ``model.init_args.teacher_ckpt`` (none for the first stage).
    ``extra`` arguments apply to every stage, after its own config (a ``-c X.yaml`` there is layered on it).
    Each stage's logger name ends with the stage name, so its run directory is ``.../<stage>/version_N``.

    Resume: ``pipeline.json`` next to the stage folders maps each stage (``"stages"``: its latest run) to its best
    checkpoint, the checkpoint's sha256, its run directory and a fingerprint of (config file bytes, resolved
    config, shared arguments, teachers' sha256); ``"runs"`` keeps every fitted variant by fingerprint (e.g. the
    arousal and the valence chain in one save dir). A stage whose fingerprint is recorded and whose checkpoint
    still has the recorded sha256 is skipped; otherwise it is fitted, and so is every stage it teaches (their
    teachers' sha256 changed).
    """
    extra = list(extra or [])
    if len(stages) < 2:
        raise ConfigError("a pipeline needs at least two stage configs (teacher, then student), e.g. `lightning-kd "
                          "pipeline configs/corrkd/synthetic_teacher.yaml configs/corrkd/synthetic_student.yaml`")
    names = [Path(c).stem for c in stages]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise ConfigError(f"pipeline stages are named after their config files, and {', '.join(dup)} appears more "
                          "than once. Fix: give every stage config its own file name.")
    for cfg in stages:
        if not Path(cfg).is_file():
            raise ConfigError(f"pipeline stage config {cfg} does not exist. Fix: pass the stage configs' paths.")
    resolved = [resolve_config(["fit", "-c", cfg, *extra]) for cfg in stages]
    plan = _teacher_plan(names, [r.get("teacher_stages") for r in resolved])

    name_args: list[list[str]] = []
    for name, r in zip(names, resolved):
        init = _logger_init(r)
        current = init.get("name") if init is not None else None
        if init is None or (current and Path(str(current)).name == name):
            name_args.append([])
        else:
            prefix = current if current and current != DEFAULT_LOGGER_NAME else None  # the CSV/TB default: unset
            name_args.append([LOGGER_NAME_OPTION, f"{prefix}/{name}" if prefix else name])
    first = _logger_init(resolved[0])
    if first is not None and first.get("save_dir") is not None:
        first_name = name_args[0][1] if name_args[0] else str(first.get("name"))
        manifest_path = (Path(str(first["save_dir"])) / first_name).parent / MANIFEST
    else:
        manifest_path = Path(str(resolved[0].get("trainer", {}).get("default_root_dir") or ".")) / MANIFEST
    manifest = _read_manifest(manifest_path)

    ckpts: list[str] = []
    for i, (cfg, name) in enumerate(zip(stages, names)):
        teacher_idx = plan[i]
        teachers = [ckpts[j] for j in teacher_idx]
        if not teachers:
            chain = []
        elif resolved[i].get("teacher_stages") is None:
            chain = [TEACHER_OPTION, teachers[0]]
        else:
            chain = [TEACHERS_OPTION, json.dumps(teachers)]
        fingerprint = _stage_fingerprint(cfg, resolved[i], extra, [file_sha256(t) for t in teachers])
        entry = manifest["stages"].get(name)
        if not (isinstance(entry, dict) and entry.get("fingerprint") == fingerprint):
            entry = manifest.setdefault("runs", {}).get(fingerprint)  # an earlier variant (other shared arguments)
        head = f"lightning-kd pipeline: stage {i + 1}/{len(stages)} {name}"
        if (isinstance(entry, dict) and entry.get("stage") == name and entry.get("fingerprint") == fingerprint
                and Path(str(entry.get("checkpoint"))).is_file()
                and file_sha256(entry["checkpoint"]) == entry.get("sha256")):
            print(f"{head}: skip (up to date: {entry['checkpoint']})", flush=True)
            ckpts.append(str(entry["checkpoint"]))
            if manifest["stages"].get(name) != entry:
                manifest["stages"][name] = entry
                _write_manifest(manifest_path, manifest)
            continue
        args = ["fit", "-c", cfg, *extra, *name_args[i], *chain]
        print(f"{head}: {' '.join(args)}", flush=True)
        cli = build_cli(args)
        cb = cli.trainer.checkpoint_callback
        best = cb.best_model_path if cb is not None else ""
        if not best:
            raise ConfigError(f"stage {cfg} saved no checkpoint (checkpointing off or fast_dev_run?), so the next "
                              "stage has no teacher; enable a ModelCheckpoint in that config")
        ckpts.append(best)
        from lightning_kd.callbacks.run_dir import run_dir

        entry = {"stage": name, "config": str(Path(cfg).resolve()), "checkpoint": str(Path(best).resolve()),
                 "sha256": file_sha256(best), "run_dir": str(run_dir(cli.trainer).resolve()),
                 "teachers": [str(Path(t).resolve()) for t in teachers], "fingerprint": fingerprint}
        manifest["stages"][name] = entry
        manifest.setdefault("runs", {})[fingerprint] = entry
        if cli.trainer.is_global_zero:
            _write_manifest(manifest_path, manifest)
    print(f"lightning-kd pipeline: done ({manifest_path}); checkpoints:\n  " + "\n  ".join(ckpts), flush=True)
    return ckpts


def pipeline_cli(argv: list[str]) -> None:
    """``lightning-kd pipeline STAGE1.yaml STAGE2.yaml [...] [-- shared fit arguments]``."""
    if "-h" in argv[:1] or "--help" in argv[:1] or not argv:
        print("usage: lightning-kd pipeline STAGE1.yaml STAGE2.yaml [...] [-- --key value ...]\n\n"
              "Fits the stage configs in order; a stage is named after its config file's stem. A stage distils\n"
              "from the stages its `teacher_stages: [name, ...]` key lists (their best checkpoints as\n"
              f"{TEACHERS_OPTION}), else from the previous stage's best checkpoint ({TEACHER_OPTION}).\n"
              "Arguments after `--` apply to every stage, after its own config (`-c X.yaml` there is layered on\n"
              f"each stage's config). Re-running skips stages that are up to date ({MANIFEST} next to the stage\n"
              "run directories), e.g.\n"
              "  lightning-kd pipeline configs/corrkd/synthetic_teacher.yaml configs/corrkd/synthetic_student.yaml "
              "-- --trainer.max_epochs 5")
        return
    cut = argv.index("--") if "--" in argv else len(argv)
    run_pipeline(argv[:cut], argv[cut + 1:])


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else list(argv)
    try:
        if args and args[0] == "generate":
            from lightning_kd.data.generate.command import generate_cli

            generate_cli(args[1:])
        elif args and args[0] == "pipeline":
            pipeline_cli(args[1:])
        elif args and args[0] == "benchmark":
            from lightning_kd.benchmark import main as benchmark_main

            benchmark_main(args[1:])
        elif args and args[0] == "export":
            from lightning_kd.export import export_cli

            export_cli(args[1:], build_only)
        else:
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
