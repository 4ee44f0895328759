"""Per-step distillation statistics that a method records and :class:`~lightning_kd.callbacks.DistillationStats`
logs per epoch (per-teacher KD terms, kept / dropped terms, teacher-selection counts, ...).

A method records into its accumulator (``self.distill_stats``, given by :class:`~lightning_kd.distill.TeacherMixin`)::

    self.distill_stats.add("kd/teacher_0", kd0)        # a mean: sum of values / number of values
    self.distill_stats.count("dropped/teacher_1")      # a count: how often, summed
    self.distill_stats.count("selected/teacher_2", n)  # n at once

Values stay tensors on the module's device until the epoch ends (no host sync per step). :meth:`DistillStats.compute`
reduces over processes: under DDP the names are gathered from every rank, then sums and counts are summed
across ranks, so a count is the total over all processes and a mean is the mean over every recorded value.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import torch
from torch import Tensor

__all__ = ["DistillStats"]

Kind = Literal["mean", "count"]


class DistillStats:
    """Running sums of named statistics since the last :meth:`reset` (not an ``nn.Module``: never in a state_dict)."""

    def __init__(self) -> None:
        self._sums: dict[str, Tensor | float] = {}
        self._ns: dict[str, float] = {}
        self._kinds: dict[str, Kind] = {}

    def _kind(self, name: str, kind: Kind) -> None:
        old = self._kinds.setdefault(name, kind)
        if old != kind:
            raise ValueError(f"distillation statistic {name!r} is recorded as a {old}; it cannot also be a {kind}")

    def add(self, name: str, value: Tensor | float, n: int = 1) -> None:
        """Record ``value`` (a scalar; with ``n > 1``, the mean of ``n`` values) for the mean of ``name``."""
        self._kind(name, "mean")
        v = value.detach().float().reshape(()) * n if isinstance(value, Tensor) else float(value) * n
        self._sums[name] = self._sums.get(name, 0.0) + v
        self._ns[name] = self._ns.get(name, 0.0) + n

    def count(self, name: str, n: int | Tensor = 1) -> None:
        """Add ``n`` (default 1) to the count ``name``."""
        self._kind(name, "count")
        v = n.detach().float().sum() if isinstance(n, Tensor) else float(n)
        self._sums[name] = self._sums.get(name, 0.0) + v
        self._ns[name] = self._ns.get(name, 0.0) + 1

    @property
    def kinds(self) -> dict[str, Kind]:
        """Name -> ``"mean"`` or ``"count"``, for every name recorded since :meth:`reset`."""
        return dict(self._kinds)

    def reset(self) -> None:
        self._sums.clear()
        self._ns.clear()
        self._kinds.clear()

    def compute(self, reduce_sum: Callable[[Tensor], Tensor] | None = None,
                gather_names: Callable[[dict[str, Kind]], dict[str, Kind]] | None = None,
                device: torch.device | str = "cpu") -> dict[str, float]:
        """Name -> mean (``add``) or total (``count``).

        Args:
            reduce_sum: sums a tensor over processes (DDP); None: this process only.
            gather_names: the union of every process's names and kinds (needed with ``reduce_sum``: each rank
                must reduce the same vector); None: this process's names.
            device: where the reduced vector lives (the collective backend's device).
        """
        kinds = gather_names(self.kinds) if gather_names is not None else self.kinds
        names = sorted(kinds)
        if not names:
            return {}
        sums = torch.stack([torch.as_tensor(self._sums.get(k, 0.0), dtype=torch.float32).to(device)
                            for k in names])
        ns = torch.tensor([self._ns.get(k, 0.0) for k in names], dtype=torch.float32, device=device)
        both = torch.cat([sums, ns])
        if reduce_sum is not None:
            both = reduce_sum(both)
        sums, ns = both[: len(names)].tolist(), both[len(names):].tolist()
        out = {}
        for k, s, n in zip(names, sums, ns):
            if kinds[k] == "count":
                out[k] = s
            elif n > 0:
                out[k] = s / n
        return out
