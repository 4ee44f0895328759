"""Options dataclasses of networks and objectives: build them from what a config or checkpoint holds.

Every hyper-parameter is declared once, as a field of a frozen dataclass next to the ``nn.Module`` that
uses it (see :mod:`lightning_kd.methods.base` for why). Checkpoints store them as plain data (:func:`plain`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, TypeVar

from lightning_kd.checkpoint import ConfigError

__all__ = ["options", "plain"]

OptionsT = TypeVar("OptionsT")


def options(cls: type[OptionsT], value: OptionsT | Mapping[str, Any] | None = None, /,
            **overrides: Any) -> OptionsT:
    """The options dataclass ``cls`` from ``value`` (an instance, a mapping of its fields as a config or a
    checkpoint holds them, or ``None`` for the defaults), with ``overrides`` applied on top.

    Raises:
        ConfigError: a name that is not a field of ``cls`` (the message lists the known ones).
    """
    if value is None:
        value = {}
    if isinstance(value, cls):
        value = {f.name: getattr(value, f.name) for f in dataclasses.fields(cls)}
    if not isinstance(value, Mapping):
        raise ConfigError(f"{cls.__name__}: expected the options as a mapping of field -> value, got "
                          f"{type(value).__name__}")
    merged = {**value, **overrides}
    known = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(merged) - set(known))
    if unknown:
        raise ConfigError(f"{cls.__name__} has no option {', '.join(map(repr, unknown))}; "
                          f"its options are {', '.join(known)}")
    # plain data (a checkpoint, YAML) holds tuples as lists: give tuple-valued fields their tuple back
    defaults = {f.name: f.default for f in dataclasses.fields(cls)}
    merged = {k: tuple(v) if isinstance(v, list) and isinstance(defaults.get(k), tuple) else v
              for k, v in merged.items()}
    return cls(**merged)


def plain(value: Any) -> Any:
    """``value`` as plain data (dicts, lists, numbers, strings): dataclasses become dicts, tuples lists."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        value = {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return value
