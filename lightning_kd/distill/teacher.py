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

The teacher is loaded when fitting starts (``setup("fit")``), frozen and kept in eval mode. It is held
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

from lightning_kd.checkpoint import CHECKPOINT_KEY, CheckpointMismatchError, load_checkpoint
from lightning_kd.io import file_sha256

__all__ = ["TeacherError", "TeacherNotFoundError", "TeacherMixin", "load_teacher", "file_sha256"]

OPTION = "model.init_args.teacher_ckpt"


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


def load_teacher(
    path: str | Path,
    methods: Sequence[str],
    feature_dims: Mapping[str, int] | None = None,
) -> tuple[pl.LightningModule, dict[str, str]]:
    """Load a teacher from a lightning_kd checkpoint, frozen (no grad) and in eval mode, on the CPU.

    Args:
        path: the teacher's checkpoint (written by ``lightning-kd fit`` / ``trainer.save_checkpoint``).
        methods: accepted method tags (``"<module>.<Qualname>"``); empty accepts any lightning_kd method.
        feature_dims: the student's data dims; the teacher must have been trained on the same ones.

    Returns:
        ``(teacher, record)`` with ``record = {"path": absolute path, "sha256": hex digest, "method": tag}``.

    Raises:
        TeacherNotFoundError: no such file.
        TeacherError: unsafe (refused unread) or unreadable file, not a lightning_kd checkpoint, another
            method, other feature dims, or weights that do not fit the teacher's own hyper-parameters.
    """
    fix = f"Fix: set `{OPTION}` to the checkpoint of a trained teacher ({_expected(methods)})."
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
    teacher_dims = hparams.get("feature_dims")
    if feature_dims is not None and teacher_dims is not None and dict(teacher_dims) != dict(feature_dims):
        raise TeacherError(
            f"teacher checkpoint {file} was trained on feature dims {dict(teacher_dims)}, but the student's data "
            f"has {dict(feature_dims)}. Fix: train the teacher on the same data and features (same data file "
            f"and `text` option), or set `{OPTION}` to a teacher trained on them.")
    try:
        cls = _import_class(method)
    except (ImportError, AttributeError) as e:
        raise TeacherError(f"teacher checkpoint {file}: its method {method} cannot be imported ({e}). {fix}") from e
    if not (isinstance(cls, type) and issubclass(cls, pl.LightningModule)):
        raise TeacherError(f"teacher checkpoint {file}: its method {method} is not a LightningModule. {fix}")
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

    Set :attr:`teacher_methods` on the student class and call :meth:`init_teacher` from its
    ``__init__``. See the module docstring for the behaviour.
    """

    #: method tags a teacher checkpoint may hold (empty: any lightning_kd method)
    teacher_methods: tuple[str, ...] = ()

    def init_teacher(self, teacher_ckpt: str | Path | None, save_teacher: bool = False) -> None:
        """Store the teacher config (nothing is loaded here; loading happens in ``setup("fit")``).

        Args:
            teacher_ckpt: the teacher's checkpoint, or None for no teacher.
            save_teacher: also write the teacher's weights into student checkpoints
                (``checkpoint["lightning_kd"]["teacher_state_dict"]``).
        """
        self.teacher_ckpt = None if teacher_ckpt is None else str(teacher_ckpt)
        self.save_teacher = bool(save_teacher)
        object.__setattr__(self, "_teacher", None)  # outside nn.Module registration: not a submodule
        self._teacher_record: dict[str, str] | None = None  # from load_teacher, in this process
        self._teacher_record_restored: dict[str, str] | None = None  # from the checkpoint we were loaded from
        self._teacher_state_restored: dict[str, Any] | None = None  # kept only when save_teacher

    # -- access ---------------------------------------------------------------------------------
    @property
    def has_teacher(self) -> bool:
        """Whether a teacher is loaded, i.e. :attr:`teacher` can be used (during fit when configured)."""
        return self.__dict__.get("_teacher") is not None

    @property
    def teacher(self) -> pl.LightningModule:
        """The frozen teacher; RuntimeError when none is configured or it is not loaded yet."""
        module = self.__dict__.get("_teacher")
        if module is not None:
            return module
        if getattr(self, "teacher_ckpt", None) is None:
            raise RuntimeError(f"{type(self).__name__} has no teacher: set `{OPTION}` to a teacher checkpoint.")
        raise RuntimeError(f"the teacher {self.teacher_ckpt} is loaded when fitting starts (setup('fit')); "
                           "call attach_teacher() to load it outside trainer.fit.")

    @property
    def teacher_record(self) -> dict[str, str] | None:
        """``{"path", "sha256", "method"}`` of the teacher loaded here, else the one restored from a checkpoint."""
        return self.__dict__.get("_teacher_record") or self.__dict__.get("_teacher_record_restored")

    def teacher_forward(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """``fn(teacher, *args, **kwargs)`` under ``torch.no_grad()`` with the teacher in eval mode.

        Example: ``self.teacher_forward(lambda t: t.predict_scores(batch))``. Outputs carry no graph;
        an enclosing autocast (mixed precision) applies to the teacher too.
        """
        teacher = self.teacher
        if teacher.training:
            teacher.eval()
        with torch.no_grad():
            return fn(teacher, *args, **kwargs)

    def attach_teacher(self) -> pl.LightningModule:
        """Load the configured teacher if not loaded yet, on the student's device and dtype; return it."""
        module = self.__dict__.get("_teacher")
        if module is not None:
            return module
        if getattr(self, "teacher_ckpt", None) is None:
            return self.teacher  # raises the "no teacher" error
        dims = self.hparams.get("feature_dims")  # type: ignore[attr-defined]
        module, record = load_teacher(self.teacher_ckpt, self.teacher_methods, dims)
        module.to(device=self.device, dtype=self.dtype)  # type: ignore[attr-defined]
        object.__setattr__(self, "_teacher", module)
        self._teacher_record = record
        restored = self._teacher_record_restored
        if restored and restored.get("sha256") != record["sha256"]:
            rank_zero_warn(f"teacher {record['path']} differs from the teacher recorded in the checkpoint this "
                           f"student was loaded from ({restored.get('path')}, sha256 {restored.get('sha256')}).")
        return module

    # -- Lightning / nn.Module hooks --------------------------------------------------------------
    def setup(self, stage: str) -> None:
        super().setup(stage)  # type: ignore[misc]
        if stage == "fit" and getattr(self, "teacher_ckpt", None) is not None:
            self.attach_teacher()

    def _apply(self, fn: Callable[[torch.Tensor], torch.Tensor], recurse: bool = True) -> Any:
        out = super()._apply(fn, recurse)  # type: ignore[misc]
        teacher = self.__dict__.get("_teacher")
        if teacher is not None:
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
        teacher = self.__dict__.get("_teacher")
        if teacher is not None and teacher.training:
            teacher.eval()
        return out

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_save_checkpoint(checkpoint)  # type: ignore[misc]
        entry = checkpoint.setdefault(CHECKPOINT_KEY, {})
        record = self.teacher_record
        if record is not None:
            entry["teacher"] = dict(record)
        if not getattr(self, "save_teacher", False):
            return
        teacher = self.__dict__.get("_teacher")
        if teacher is not None:
            entry["teacher_state_dict"] = teacher.state_dict()
            entry["teacher_hyper_parameters"] = dict(teacher.hparams)
        elif self._teacher_state_restored is not None:
            entry.update(self._teacher_state_restored)
        else:
            rank_zero_warn("save_teacher=True but no teacher is loaded: the checkpoint holds no teacher weights.")

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_load_checkpoint(checkpoint)  # type: ignore[misc]
        entry = checkpoint.get(CHECKPOINT_KEY) or {}
        restored = entry.get("teacher")
        self._teacher_record_restored = dict(restored) if restored else None
        if getattr(self, "save_teacher", False) and "teacher_state_dict" in entry:
            self._teacher_state_restored = {k: entry[k] for k in ("teacher_state_dict", "teacher_hyper_parameters")
                                            if k in entry}
        record = self.__dict__.get("_teacher_record")
        trainer = self._trainer  # type: ignore[attr-defined]
        fitting = trainer is not None and trainer.state.fn == "fit"
        if fitting and record is not None and restored and restored.get("sha256") != record["sha256"]:
            raise TeacherError(
                f"teacher checkpoint {record['path']} changed since this student was trained: its sha256 is "
                f"{record['sha256']}, the student checkpoint recorded {restored.get('sha256')} "
                f"(file {restored.get('path')}). Fix: set `{OPTION}` to the teacher the student was trained with, "
                "or start a new fit instead of resuming.")
