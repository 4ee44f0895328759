"""The run's seed, as Lightning's ``seed_everything`` recorded it, for the parts of the data stream that follow it."""

from __future__ import annotations

import os

__all__ = ["SEED_ENV", "run_seed"]

#: where :func:`lightning.fabric.utilities.seed.seed_everything` records the seed (also read by Lightning's
#: DistributedSampler and worker init, and passed to DDP subprocesses)
SEED_ENV = "PL_GLOBAL_SEED"


def run_seed(default: int = 0) -> int:
    """The value ``seed_everything`` set for this run (``--seed_everything`` in the CLI), else ``default``.

    Read when called, not at import: a datamodule asks at loader time, after the CLI (or the user) seeded.
    The fallback 0 is Lightning's own when nothing was seeded (``_get_distributed_sampler``), so an unseeded
    run is still deterministic in its data stream.
    """
    value = os.environ.get(SEED_ENV)
    if value is None or not value.strip():
        return default
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"{SEED_ENV}={value!r} is not an integer seed; unset it or seed_everything(INT)") from None
