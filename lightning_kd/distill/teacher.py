"""Frozen teachers for teacher -> student methods (CorrKD, CDGKD, MT-PKDOT, ...).

A student names its teacher in config (``--model.init_args.teacher_ckpt PATH``) and mixes in
:class:`TeacherMixin`::

    class MyStudent(TeacherMixin, SentimentRegressionModule):
        teacher_methods = ("lightning_kd.methods.fusion.module.FusionBaseline",)

        def __init__(self, feature_dims, ..., teacher_ckpt: str | None = None, save_teacher: bool = False):
            super().__init__(...)
            self.save_hyperparameters()
            self.init_teacher(teacher_ckpt, save_teacher)

        def training_losses(self, batch):
            pred = self.net(batch.inputs)
            target = self.teacher_forward(lambda t: t.predict_scores(batch))   # no_grad, eval mode
            ...

Several teachers (a teacher-assistant chain, several privileged teachers) are named as a list,
``--model.init_args.teacher_ckpts [A, B, C]``, and the student calls :meth:`TeacherMixin.init_teachers`
(``teacher_ckpt`` alone is a one-element list; giving both is an error)::

    logits = self.teachers_forward(lambda t: t.class_logits(batch))      # one output per teacher, config order

A teacher may read other inputs than its student (an EEG + face teacher for a face-only student): each
teacher's needed inputs (its method's ``data_needs``, else the keys of its ``feature_dims``) must be provided
by the student's data with the dims the teacher was trained on; inputs the teacher does not read are not
compared.

The teachers are loaded when fitting starts (``setup("fit")``), frozen and kept in eval mode. It is held
outside the module tree, so it is not in ``parameters()``, ``state_dict()``, the optimiser or DDP's
parameter set, yet ``.to()`` / ``.cuda()`` / ``.double()`` move it with the student. A student checkpoint
records the teacher's path, sha256 and method (``checkpoint["lightning_kd"]["teacher"]``) and needs no
teacher file for validate / test / predict. Teacher weights are saved into the student checkpoint only
with ``save_teacher=True``.

Teacher files are read with ``weights_only=True`` (:func:`lightning_kd.checkpoint.load_checkpoint`): a file that
needs anything beyond tensors, plain values and the allowlisted data classes is refused unread, so nothing in
it runs.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.utilities import rank_zero_warn

from lightning_kd.checkpoint import CHECKPOINT_KEY, CheckpointMismatchError, ConfigError, load_checkpoint
from lightning_kd.distill.stats import DistillStats
from lightning_kd.io import file_sha256

__all__ = ["TeacherError", "TeacherNotFoundError", "TeacherMixin", "check_teacher_inputs", "file_sha256", "load_teacher"]

OPTION = "model.init_args.teacher_ckpt"
OPTIONS = "model.init_args.teacher_ckpts"


class TeacherError(CheckpointMismatchError):
    """The teacher checkpoint cannot be used by this student (wrong method, other data, changed, corrupt)."""


class TeacherNotFoundError(TeacherError, FileNotFoundError):
    """The teacher checkpoint does not exist (also a :class:`FileNotFoundError`)."""


def _import_class(dotted: str) -> type:
    """Import ``package.module.Qual.Name``: the longest importable module prefix, then attributes."""
    parts = dotted.split(".")
    for i in range(len(parts) - 1, 0, -1):
        try:
            obj: Any = importlib.import_module(".".join(parts[:i]))
        except ImportError:
            continue
        for name in parts[i:]:
            obj = getattr(obj, name)
        return obj
    raise ImportError(f"no importable module in {dotted!r}")


def _expected(methods: Sequence[str]) -> str:
    return ", ".join(methods) if methods else "any lightning_kd method"



def _needed_inputs(cls: type, hparams: Mapping[str, Any], teacher_dims: Mapping[str, int]) -> list[str]:
    """The inputs a teacher reads: its ``data_needs`` (fit stage, so privileged inputs count; of ``"a|b"`` the
    alternative it was trained on), else every key of its ``feature_dims``."""
    needs_fn = getattr(cls, "data_needs", None)
    if not callable(needs_fn):
        return list(teacher_dims)
    needs = needs_fn(hparams)
    names: list[str] = []
    for entry in (*needs.inputs, *needs.privileged):
        options = entry.split("|")
        trained = [n for n in options if n in teacher_dims]
        names += trained or options[:1]
    from lightning_kd.data.contract import VIEW_PREFIX

    if needs.views:
        names += [k for k in teacher_dims if k.startswith(VIEW_PREFIX) and k not in names]
    return names


def check_teacher_inputs(file: Path | str, cls: type, hparams: Mapping[str, Any], feature_dims: Mapping[str, int],
                         option: str = OPTION) -> None:
    """Raise :class:`TeacherError` unless the data (``feature_dims``: the student's, linked from its datamodule)
    provides every input the teacher reads, with the dims the teacher was trained on."""
    teacher_dims = hparams.get("feature_dims")
    if teacher_dims is None:
        return
    teacher_dims, data_dims = dict(teacher_dims), dict(feature_dims)
    for name in _needed_inputs(cls, hparams, teacher_dims):
        have, want = data_dims.get(name), teacher_dims.get(name)
        if have is None:
            raise TeacherError(
                f"teacher checkpoint {file} reads input '{name}' (dim {want}), but the student's data provides no "
                f"'{name}' (it has {data_dims}; the teacher was trained on {teacher_dims}). Fix: give the student "
                f"data that also provides '{name}' (the teacher runs on the student's batches), or set `{option}` "
                "to a teacher that reads only inputs this data has.")
        if want is not None and want != have:
            raise TeacherError(
                f"teacher checkpoint {file} reads input '{name}' of dim {want}, but the student's data gives "
                f"'{name}' dim {have} (teacher trained on feature dims {teacher_dims}, the student's data has "
                f"{data_dims}). Fix: train the teacher on the same data and features (same data file and `text` "
                f"option), or set `{option}` to a teacher trained on them.")


def load_teacher(
    path: str | Path,
    methods: Sequence[str],
    feature_dims: Mapping[str, int] | None = None,
    option: str = OPTION,
) -> tuple[pl.LightningModule, dict[str, str]]:
    """Load a teacher from a lightning_kd checkpoint, frozen (no grad) and in eval mode, on the CPU.

    Args:
        path: the teacher's checkpoint (written by ``lightning-kd fit`` / ``trainer.save_checkpoint``).
        methods: accepted method tags (``"<module>.<Qualname>"``); empty accepts any lightning_kd method.
        feature_dims: the student's data dims; every input the teacher reads must be there with the teacher's
            dim (:func:`check_teacher_inputs`). None: not checked.
        option: the config option that named the file (in messages).

    Returns:
        ``(teacher, record)`` with ``record = {"path": absolute path, "sha256": hex digest, "method": tag}``.

    Raises:
        TeacherNotFoundError: no such file.
        TeacherError: unsafe (refused unread) or unreadable file, not a lightning_kd checkpoint, another
            method, inputs the data lacks or has with other dims, or weights that do not fit the teacher's own
            hyper-parameters.
    """
    fix = f"Fix: set `{option}` to the checkpoint of a trained teacher ({_expected(methods)})."
    checkpoint = load_checkpoint(path, what="teacher checkpoint", fix=fix, error=TeacherError,
                                 not_found=TeacherNotFoundError)
    file = Path(path).expanduser().resolve()
    tag = checkpoint.get(CHECKPOINT_KEY)
    method = tag.get("method") if isinstance(tag, Mapping) else None
    if not isinstance(method, str):
        raise TeacherError(f"teacher checkpoint {file} was not written by lightning_kd "
                           f"(no '{CHECKPOINT_KEY}' method tag). {fix}")
    if methods and method not in methods:
        raise TeacherError(f"teacher checkpoint {file} holds a {method} model, but this student expects a "
                           f"teacher of {_expected(methods)}. {fix}")
    hparams = {k: v for k, v in dict(checkpoint.get("hyper_parameters") or {}).items() if not k.startswith("_")}
    try:
        cls = _import_class(method)
    except (ImportError, AttributeError) as e:
        raise TeacherError(f"teacher checkpoint {file}: its method {method} cannot be imported ({e}). {fix}") from e
    if not (isinstance(cls, type) and issubclass(cls, pl.LightningModule)):
        raise TeacherError(f"teacher checkpoint {file}: its method {method} is not a LightningModule. {fix}")
    if feature_dims is not None:
        check_teacher_inputs(file, cls, hparams, feature_dims, option)
    try:
        teacher = cls(**hparams)
        teacher.on_load_checkpoint(checkpoint)
        teacher.load_state_dict(checkpoint["state_dict"])
    except TeacherError:
        raise
    except Exception as e:  # noqa: BLE001 - any rebuild failure means this file cannot serve as teacher
        raise TeacherError(f"teacher checkpoint {file}: the {method} model cannot be rebuilt from it "
                           f"({type(e).__name__}: {e}). {fix}") from e
    teacher.requires_grad_(False)
    teacher.eval()
    return teacher, {"path": str(file), "sha256": file_sha256(file), "method": method}


class TeacherMixin:
    """Frozen-teacher handling for a student LightningModule: ``class S(TeacherMixin, SomeModule)``.

    Set :attr:`teacher_methods` on the student class (or override :meth:`allowed_teacher_methods`, e.g. per
    role) and call :meth:`init_teachers` (or :meth:`init_teacher`) from its ``__init__``. See the module
    docstring for the behaviour.
    """

    #: method tags a teacher checkpoint may hold (empty: any lightning_kd method)
    teacher_methods: tuple[str, ...] = ()

    def allowed_teacher_methods(self) -> tuple[str, ...]:
        """The method tags a teacher of this student may hold (default :attr:`teacher_methods`; empty: any)."""
        return tuple(self.teacher_methods)

    def init_teachers(self, teacher_ckpts: Sequence[str | Path] | None, save_teacher: bool = False,
                      teacher_ckpt: str | Path | None = None) -> None:
        """Store the teacher config (nothing is loaded here; loading happens in ``setup("fit")``).

        Args:
            teacher_ckpts: the teachers' checkpoints, in the order :attr:`teachers` gives them; None or empty:
                no teacher.
            save_teacher: also write the teachers' weights into student checkpoints
                (``checkpoint["lightning_kd"]["teacher_state_dict"]`` for the first, ``["teachers_state"]`` all).
            teacher_ckpt: one teacher (the option existing configs use): the same as ``teacher_ckpts=[it]``.

        Raises:
            ConfigError: both ``teacher_ckpt`` and ``teacher_ckpts`` are given.
        """
        if teacher_ckpt is not None and teacher_ckpts:
            raise ConfigError(f"both `{OPTION}` ({teacher_ckpt}) and `{OPTIONS}` ({list(map(str, teacher_ckpts))}) "
                              f"are set. Fix: name the teachers once, in `{OPTIONS}`, and set `{OPTION}` to null.")
        if isinstance(teacher_ckpts, (str, Path)):
            teacher_ckpts = [teacher_ckpts]
        ckpts = [str(teacher_ckpt)] if teacher_ckpt is not None else [str(c) for c in teacher_ckpts or ()]
        self.teacher_ckpts: list[str] = ckpts
        self.teacher_ckpt = ckpts[0] if ckpts else None  # the first teacher (back-compat)
        self._teacher_option = OPTION if teacher_ckpt is not None else OPTIONS
        self.save_teacher = bool(save_teacher)
        object.__setattr__(self, "_teachers", None)  # outside nn.Module registration: not submodules
        self._teacher_records: list[dict[str, str]] | None = None  # from load_teacher, in this process
        self._teacher_records_restored: list[dict[str, str]] | None = None  # from the checkpoint we came from
        self._teacher_state_restored: dict[str, Any] | None = None  # kept only when save_teacher

    def init_teacher(self, teacher_ckpt: str | Path | None, save_teacher: bool = False,
                     teacher_ckpts: Sequence[str | Path] | None = None) -> None:
        """One teacher (``teacher_ckpt``) or several (``teacher_ckpts``): see :meth:`init_teachers`."""
        self.init_teachers(teacher_ckpts, save_teacher, teacher_ckpt=teacher_ckpt)

    # -- access ---------------------------------------------------------------------------------
    @property
    def has_teachers(self) -> bool:
        """Whether the teachers are loaded, i.e. :attr:`teachers` can be used (during fit when configured)."""
        return self.__dict__.get("_teachers") is not None

    @property
    def has_teacher(self) -> bool:
        """Same as :attr:`has_teachers` (back-compat)."""
        return self.has_teachers

    @property
    def teachers(self) -> list[pl.LightningModule]:
        """The frozen teachers in config order; ``[]`` when none is configured; RuntimeError before loading."""
        modules = self.__dict__.get("_teachers")
        if modules is not None:
            return list(modules)
        if not getattr(self, "teacher_ckpts", None):
            return []
        raise RuntimeError(f"the teachers {self.teacher_ckpts} are loaded when fitting starts (setup('fit')); "
                           "call attach_teachers() to load them outside trainer.fit.")

    @property
    def teacher(self) -> pl.LightningModule:
        """The first frozen teacher; RuntimeError when none is configured or it is not loaded yet."""
        if not getattr(self, "teacher_ckpts", None):
            raise RuntimeError(f"{type(self).__name__} has no teacher: set `{OPTION}` (or `{OPTIONS}`) to a teacher "
                               "checkpoint.")
        return self.teachers[0]

    @property
    def teacher_records(self) -> list[dict[str, str]]:
        """``[{"path", "sha256", "method"}, ...]`` of the teachers loaded here, else those restored from a
        checkpoint (``[]`` when neither)."""
        records = self.__dict__.get("_teacher_records") or self.__dict__.get("_teacher_records_restored") or []
        return [dict(r) for r in records]

    @property
    def teacher_record(self) -> dict[str, str] | None:
        """The first of :attr:`teacher_records`, or None."""
        records = self.teacher_records
        return records[0] if records else None

    @property
    def distill_stats(self) -> DistillStats:
        """This student's per-step distillation statistics (:mod:`lightning_kd.distill.stats`), logged per epoch
        by the :class:`~lightning_kd.callbacks.DistillationStats` callback."""
        stats = self.__dict__.get("_distill_stats")
        if stats is None:
            stats = DistillStats()
            object.__setattr__(self, "_distill_stats", stats)
        return stats

    def teachers_forward(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> list[Any]:
        """``[fn(teacher, *args, **kwargs) for teacher in self.teachers]`` under ``torch.no_grad()``, each teacher
        in eval mode. Outputs carry no graph; an enclosing autocast (mixed precision) applies to the teachers."""
        teachers = self.teachers
        if not teachers:
            _ = self.teacher  # raises the "no teacher" error
        out = []
        with torch.no_grad():
            for teacher in teachers:
                if teacher.training:
                    teacher.eval()
                out.append(fn(teacher, *args, **kwargs))
        return out

    def teacher_forward(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """``fn(teacher, *args, **kwargs)`` for the first teacher under ``torch.no_grad()``, in eval mode.

        Example: ``self.teacher_forward(lambda t: t.predict_scores(batch))``.
        """
        teacher = self.teacher
        if teacher.training:
            teacher.eval()
        with torch.no_grad():
            return fn(teacher, *args, **kwargs)

    def check_teacher(self, teacher: pl.LightningModule, record: Mapping[str, str], index: int) -> None:
        """Hook: refuse a loaded teacher this student cannot use (raise :class:`TeacherError`); default accepts."""

    def attach_teachers(self) -> list[pl.LightningModule]:
        """Load the configured teachers if not loaded yet, on the student's device and dtype; return them."""
        modules = self.__dict__.get("_teachers")
        if modules is not None:
            return list(modules)
        if not getattr(self, "teacher_ckpts", None):
            return []
        dims = self.hparams.get("feature_dims")  # type: ignore[attr-defined]
        methods = self.allowed_teacher_methods()
        loaded, records = [], []
        for i, path in enumerate(self.teacher_ckpts):
            module, record = load_teacher(path, methods, dims, option=self._teacher_option)
            self.check_teacher(module, record, i)
            module.to(device=self.device, dtype=self.dtype)  # type: ignore[attr-defined]
            loaded.append(module)
            records.append(record)
        object.__setattr__(self, "_teachers", loaded)
        self._teacher_records = records
        restored = self._teacher_records_restored or []
        for i, (rec, old) in enumerate(zip(records, restored)):
            if old.get("sha256") != rec["sha256"]:
                rank_zero_warn(f"teacher {i} {rec['path']} differs from the teacher recorded in the checkpoint this "
                               f"student was loaded from ({old.get('path')}, sha256 {old.get('sha256')}).")
        return list(loaded)

    def attach_teacher(self) -> pl.LightningModule:
        """Load the configured teachers (:meth:`attach_teachers`) and return the first."""
        self.attach_teachers()
        return self.teacher

    # -- Lightning / nn.Module hooks --------------------------------------------------------------
    def setup(self, stage: str) -> None:
        super().setup(stage)  # type: ignore[misc]
        if stage == "fit" and getattr(self, "teacher_ckpts", None):
            self.attach_teachers()

    def _apply(self, fn: Callable[[torch.Tensor], torch.Tensor], recurse: bool = True) -> Any:
        out = super()._apply(fn, recurse)  # type: ignore[misc]
        for teacher in self.__dict__.get("_teachers") or ():
            teacher._apply(fn, recurse)
            # Lightning's .to()/.half()/... track device and dtype on the modules of the tree; mirror them
            for name in ("_device", "_dtype"):
                if name in self.__dict__:
                    for m in teacher.modules():
                        if name in m.__dict__:
                            object.__setattr__(m, name, self.__dict__[name])
        return out

    def train(self, mode: bool = True) -> Any:
        out = super().train(mode)  # type: ignore[misc]
        for teacher in self.__dict__.get("_teachers") or ():
            if teacher.training:
                teacher.eval()
        return out

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_save_checkpoint(checkpoint)  # type: ignore[misc]
        entry = checkpoint.setdefault(CHECKPOINT_KEY, {})
        records = self.teacher_records
        if records:
            entry["teachers"] = records
            entry["teacher"] = dict(records[0])  # back-compat: the first teacher
        if not getattr(self, "save_teacher", False):
            return
        teachers = self.__dict__.get("_teachers")
        if teachers:
            states = [{"state_dict": t.state_dict(), "hyper_parameters": dict(t.hparams)} for t in teachers]
            entry["teachers_state"] = states
            entry["teacher_state_dict"] = states[0]["state_dict"]
            entry["teacher_hyper_parameters"] = states[0]["hyper_parameters"]
        elif self._teacher_state_restored is not None:
            entry.update(self._teacher_state_restored)
        else:
            rank_zero_warn("save_teacher=True but no teacher is loaded: the checkpoint holds no teacher weights.")

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_load_checkpoint(checkpoint)  # type: ignore[misc]
        entry = checkpoint.get(CHECKPOINT_KEY) or {}
        restored = entry.get("teachers") or ([entry["teacher"]] if entry.get("teacher") else [])
        self._teacher_records_restored = [dict(r) for r in restored] or None
        if getattr(self, "save_teacher", False) and "teacher_state_dict" in entry:
            self._teacher_state_restored = {
                k: entry[k] for k in ("teacher_state_dict", "teacher_hyper_parameters", "teachers_state") if k in entry}
        records = self.__dict__.get("_teacher_records")
        trainer = self._trainer  # type: ignore[attr-defined]
        fitting = trainer is not None and trainer.state.fn == "fit"
        if not (fitting and records is not None and restored):
            return
        option = getattr(self, "_teacher_option", OPTION)
        if len(records) != len(restored):
            raise TeacherError(
                f"this student was trained with {len(restored)} teacher(s) "
                f"({', '.join(str(r.get('path')) for r in restored)}), but {len(records)} are configured "
                f"({', '.join(r['path'] for r in records)}). Fix: set `{option}` to the teachers the student was "
                "trained with, or start a new fit instead of resuming.")
        for rec, old in zip(records, restored):
            if old.get("sha256") != rec["sha256"]:
                raise TeacherError(
                    f"teacher checkpoint {rec['path']} changed since this student was trained: its sha256 is "
                    f"{rec['sha256']}, the student checkpoint recorded {old.get('sha256')} "
                    f"(file {old.get('path')}). Fix: set `{option}` to the teacher the student was trained with, "
                    "or start a new fit instead of resuming.")
