"""What a method needs from its data, and the check that a datamodule provides it (before the model is built).

A method's LightningModule declares its needs with a classmethod ``data_needs(hparams) -> DataNeeds``
(``hparams``: its init args from the config, before the model exists); a datamodule provides its inputs
(the keys of ``feature_dims``) and a ``target_kind``. The CLI compares the two right after building the
datamodule and stops with one line naming both sides and the fix, instead of a tensor-size traceback deep
in the model. Inputs are names, never a fixed triple::

    DataNeeds(inputs=("text|text_bert", "audio", "vision"), targets=("score",))   # DMD: either text form
    DataNeeds(views=2, targets=("cluster_labels",))                               # VLSG: view_0, view_1, ...
    DataNeeds(inputs=("face", "eeg"), targets=("binary",))                        # CDGKD (teacher)
    DataNeeds(inputs=("video",), privileged=("bio",), targets=("binary", "class_index"))  # MT-PKDOT (BioVid)

A new kind of target is one entry in :data:`TARGET_KINDS` (and, for the fix in messages, :data:`CONFIGS_FOR`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

#: kind of ``batch.target`` -> how messages describe it
TARGET_KINDS: dict[str, str] = {
    "score": "sentiment scores (one regression value per sample)",
    "binary": "binary labels",
    "emotions": "multi-label emotions (IEMOCAP: Neutral, Happy, Sad, Angry)",
    "cluster_labels": "class labels of a clustering set",
    "class_index": "single-label class indices 0..K-1 (e.g. BioVid's 5 pain classes)",
    "valence_arousal": "continuous valence and arousal in [-1, 1] (B, 2) (Aff-Wild2)",
}

#: kind of target -> the shipped configs for such data (named as the fix when a method gets data it cannot use)
CONFIGS_FOR: dict[str, str] = {
    "score": "configs/dmd/*.yaml, configs/fusion/*.yaml or configs/corrkd/{mosi,mosei,synthetic}_*.yaml",
    "emotions": "configs/corrkd/iemocap_*.yaml",
    "binary": "configs/cdgkd/*.yaml or configs/mt_pkdot/biovid_*.yaml",
    "class_index": "configs/mt_pkdot/biovid_*.yaml",
    "valence_arousal": "configs/mt_pkdot/affwild2_*.yaml",
    "cluster_labels": "configs/vlsg/*.yaml or configs/kmeans/*.yaml",
}

VIEW_PREFIX = "view_"


@dataclass(frozen=True)
class DataNeeds:
    """What a method needs from its datamodule.

    Args:
        inputs: input names the model reads; ``"a|b"`` accepts either (e.g. ``"text|text_bert"``).
        targets: kinds of target (:data:`TARGET_KINDS`) the method can learn from; empty accepts any.
        privileged: inputs needed only when fitting (privileged modalities of a teacher); evaluation without
            them is fine.
        views: at least this many inputs named ``view_0``, ``view_1``, ... (multi-view methods).
    """

    inputs: tuple[str, ...] = ()
    targets: tuple[str, ...] = ()
    privileged: tuple[str, ...] = ()
    views: int = 0

    def __post_init__(self) -> None:
        unknown = [k for k in self.targets if k not in TARGET_KINDS]
        if unknown:
            raise ValueError(f"unknown target kind(s) {unknown}; known: {sorted(TARGET_KINDS)} (add new ones to "
                             "lightning_kd.data.contract.TARGET_KINDS)")

    def describe(self, stage: str | None = None) -> str:
        """E.g. ``inputs text (or text_bert), audio, vision with sentiment scores (...)``."""
        names = [n.replace("|", " (or ") + ")" * n.count("|") for n in self._inputs(stage)]
        if self.views:
            names.append(f"views {VIEW_PREFIX}0, {VIEW_PREFIX}1, ... (at least {self.views})")
        what = f"inputs {', '.join(names)}" if names else "any inputs"
        if self.targets:
            what += " with " + " or ".join(TARGET_KINDS[k] for k in self.targets)
        return what

    def _inputs(self, stage: str | None) -> tuple[str, ...]:
        return self.inputs + (self.privileged if stage in (None, "fit") else ())

    def missing_inputs(self, provided: Iterable[str], stage: str | None = None) -> list[str]:
        """Needed inputs (for ``stage``; ``None`` = fitting) that ``provided`` lacks."""
        have = set(provided)
        missing = [n for n in self._inputs(stage) if not have & set(n.split("|"))]
        n_views = sum(1 for k in have if k.startswith(VIEW_PREFIX) and k[len(VIEW_PREFIX):].isdigit())
        if n_views < self.views:
            missing.append(f"{self.views} views (found {n_views})")
        return missing

    def accepts_target(self, kind: str | None) -> bool:
        """Whether ``kind`` is usable; an undeclared kind (``None``) is not checked."""
        return not self.targets or kind is None or kind in self.targets


def check_data(needs: DataNeeds, datamodule: object, method: str, where: str = "the config",
               stage: str | None = None) -> None:
    """Raise :class:`~lightning_kd.checkpoint.DataMismatchError` unless ``datamodule`` provides ``needs``.

    Args:
        needs: the method's declaration.
        datamodule: gives its inputs as ``feature_dims`` keys and its ``target_kind`` (either may be absent:
            not checked).
        method: the method's name in the message; ``where``: what builds it (the config file).
        stage: the subcommand (``fit`` also needs the privileged inputs); ``None`` = fitting.
    """
    from lightning_kd.checkpoint import DataMismatchError

    dims = getattr(datamodule, "feature_dims", None)
    provided = list(dims) if isinstance(dims, dict) else None
    kind = getattr(datamodule, "target_kind", None)
    missing = needs.missing_inputs(provided, stage) if provided is not None else []
    wrong_target = not needs.accepts_target(kind)
    if not missing and not wrong_target:
        return
    name = type(datamodule).__name__
    path = getattr(datamodule, "path", None)
    source = f"the datamodule {name}" + (f" ({path})" if path else "")
    if wrong_target and kind in CONFIGS_FOR:
        fix = f"use {CONFIGS_FOR[kind]} for this data, or give {method} data with {needs.describe(stage)}"
    else:
        fix = f"give {method} data with {needs.describe(stage)}"
        fix += f" (missing: {', '.join(missing)})" if missing else ""
    raise DataMismatchError(f"{where} builds {method}, which needs {needs.describe(stage)}; {source} provides "
                            f"{describe_provided(provided or [], kind)}. Fix: {fix}.")


def describe_provided(provided: Iterable[str], target_kind: str | None) -> str:
    """E.g. ``inputs text, audio, vision with multi-label emotions (...)``."""
    names = list(provided)
    what = f"inputs {', '.join(names)}" if names else "no inputs"
    if target_kind is not None:
        what += f" with {TARGET_KINDS.get(target_kind, target_kind)}"
    return what
