"""Missing-modality robustness evaluation of any trained checkpoint.

``lightning-kd robustness -c <config> --ckpt_path <ckpt>`` tests the checkpoint under every
condition of the grid *frame-drop rate p in {0.0, 0.1, ..., 1.0}* x *available modalities*: every
non-empty subset of the datamodule's modalities, the complete set last (CorrKD, CVPR 2024, Sec. 4.1 and
Fig. 3; the condition rules are in :mod:`lightning_kd.data.missing`). Text / audio / vision data gives the
seven CorrKD settings {l, a, v, la, lv, av, lav}; EEG + face data gives {eeg, face, eeg+face}. It writes,
into the run directory:

* ``robustness.csv``: one row per condition (``condition, setting, rate`` and every test metric the
  model reports; ``condition`` is ``<setting>@<rate>``, the setting in letters for text / audio / vision
  and in names joined by ``+`` otherwise, e.g. ``lav@0.5``, ``eeg+face@0.5``), plus rows ``setting = avg``
  holding, per rate, the mean over the incomplete settings (the six of l/a/v: the paper's "Avg" column at
  p = 0), written when all of them were evaluated;
* ``robustness.png``: F1 (or the first accuracy, and MAE where the model reports it) against p, one line
  per setting.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning.pytorch as pl

from lightning_kd.callbacks.run_dir import run_dir
from lightning_kd.checkpoint import ConfigError
from lightning_kd.data.missing import LETTERS, TEXT_AUDIO_VISION, MissingCondition, ModalityLayout
from lightning_kd.io import atomic_write_text

__all__ = ["DEFAULT_RATES", "F1_KEYS", "headline", "plot_robustness", "read_robustness_csv", "run_robustness"]

DEFAULT_RATES: tuple[float, ...] = tuple(round(0.1 * i, 1) for i in range(11))
#: the weighted-F1 column each metric scheme reports, first found wins (MOSI/MOSEI, IEMOCAP, CH-SIMS)
F1_KEYS: tuple[str, ...] = ("Has0_F1_score", "Avg_F1", "F1_score")
CSV_NAME, PNG_NAME = "robustness.csv", "robustness.png"


def headline(metrics: Sequence[str], candidates: Sequence[str] = F1_KEYS) -> str | None:
    """The first of ``candidates`` present in ``metrics``."""
    return next((k for k in candidates if k in metrics), None)


def run_robustness(
    trainer: pl.Trainer,
    model: pl.LightningModule,
    datamodule: pl.LightningDataModule,
    ckpt_path: str | None = None,
    rates: Sequence[float] = DEFAULT_RATES,
    settings: Sequence[str] | None = None,
    seed: int = 0,
    weights_only: bool | None = None,
) -> list[dict[str, Any]]:
    """Test ``model`` under every (setting, rate) condition; write ``robustness.csv`` / ``.png``.

    ``settings``: available-modality settings (names joined by ``+`` or l/a/v letters, see
    :mod:`lightning_kd.data.missing`); ``None`` = every non-empty subset of the datamodule's modalities
    (:attr:`~lightning_kd.data.datamodule.InMemoryDataModule.modality_layout`), the complete set last.
    The checkpoint is loaded once (by the first ``trainer.test``); every later condition reuses the
    weights in memory. Returns the rows written to the CSV.
    """
    if not hasattr(datamodule, "eval_missing"):
        raise TypeError(f"{type(datamodule).__name__} has no `eval_missing`; robustness needs a lightning_kd "
                        "InMemoryDataModule (MMSA, MulT-style or synthetic data)")
    layout: ModalityLayout = getattr(datamodule, "modality_layout", TEXT_AUDIO_VISION)
    try:
        settings = layout.settings() if settings is None else [layout.label(s) for s in settings]
    except ValueError as e:
        raise ConfigError(f"--settings: {e}. Fix: name settings by the data's modalities joined by '+' "
                          f"(e.g. {layout.settings()[-1]!r}), or leave --settings out for every subset") from None
    conditions = [MissingCondition(float(r), s, seed) for s in settings for r in rates]
    previous = datamodule.eval_missing
    rows: list[dict[str, Any]] = []
    trainer.robustness_running = True  # tells TestMetricsWriter not to overwrite test_metrics.json
    try:
        for i, cond in enumerate(conditions):
            datamodule.eval_missing = cond
            out = trainer.test(model, datamodule=datamodule, ckpt_path=ckpt_path if i == 0 else None,
                               verbose=False, weights_only=weights_only)
            metrics = {k.removeprefix("test/"): float(v) for k, v in out[0].items() if k.startswith("test/")}
            rows.append({"condition": f"{cond.available}@{_rate(cond.rate)}", "setting": cond.available,
                         "rate": cond.rate, **metrics})
            model.print(f"robustness {i + 1}/{len(conditions)} {rows[-1]['condition']}: "
                        + ", ".join(f"{k} {v:.4f}" for k, v in metrics.items()
                                    if k in (*F1_KEYS, "MAE") or k.lower().endswith("acc")))
    finally:
        datamodule.eval_missing = previous
        trainer.robustness_running = False
    rows += _average_rows(rows, layout.incomplete_settings())
    out_dir = run_dir(trainer)
    if trainer.is_global_zero:
        write_robustness_csv(rows, out_dir / CSV_NAME)
        plot_robustness(rows, out_dir / PNG_NAME, title=type(model).__name__, incomplete=layout.incomplete_settings())
        model.print(f"robustness results written to {out_dir / CSV_NAME} and {out_dir / PNG_NAME}")
    return rows


def _rate(rate: float) -> str:
    """``0.1`` -> ``"0.1"``, ``0.0`` -> ``"0.0"``, ``0.05`` -> ``"0.05"`` (distinct labels for distinct rates)."""
    return f"{rate:.1f}" if round(rate, 1) == rate else f"{rate:g}"


def _average_rows(rows: list[dict[str, Any]], incomplete: Sequence[str]) -> list[dict[str, Any]]:
    """Per rate, the mean over the ``incomplete`` settings (only when all of them were evaluated)."""
    out = []
    for rate in sorted({r["rate"] for r in rows}):
        group = [r for r in rows if r["rate"] == rate and r["setting"] in incomplete]
        if not incomplete or len(group) != len(incomplete):
            continue
        keys = [k for k in group[0] if k not in ("condition", "setting", "rate")]
        out.append({"condition": f"avg@{_rate(rate)}", "setting": "avg", "rate": rate,
                    **{k: sum(g[k] for g in group) / len(group) for k in keys}})
    return out


def write_robustness_csv(rows: list[dict[str, Any]], path: Path) -> None:
    """``condition, setting, rate, <metrics...>``, written atomically."""
    cols: list[str] = []
    for r in rows:
        cols += [k for k in r if k not in cols]

    def write(f) -> None:
        w = csv.DictWriter(f, fieldnames=cols)
        w.writeheader()
        for r in rows:
            w.writerow({k: (f"{v:.6g}" if isinstance(v, float) and k != "rate" else v) for k, v in r.items()})

    atomic_write_text(path, write)


def read_robustness_csv(path: str | Path) -> list[dict[str, Any]]:
    """Rows of a ``robustness.csv`` with numbers parsed."""
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    for r in rows:
        for k, v in r.items():
            if k not in ("condition", "setting"):
                r[k] = float(v) if v not in ("", None) else math.nan
    return rows


def _names(setting: str) -> list[str]:
    """Parts of a setting label for the legend: ``lav`` -> l, a, v; ``eeg+face`` -> eeg, face."""
    return list(setting) if set(setting) <= set(LETTERS) else setting.split("+")


def plot_robustness(rows: list[dict[str, Any]], path: Path, title: str = "",
                    incomplete: Sequence[str] | None = None) -> None:
    """F1 (and MAE, when reported) against the frame-drop rate, one line per modality setting.

    Without an F1 or MAE column the first accuracy (else the first metric) is plotted; ``incomplete``: the
    settings the ``avg`` rows average (for the legend)."""
    from matplotlib.figure import Figure  # no pyplot: the caller's backend (a notebook's inline one) is left alone

    keys = [k for k in rows[0] if k not in ("condition", "setting", "rate")]
    panels = [k for k in (headline(keys), "MAE") if k is not None and k in keys]
    if not panels:  # neither an F1 nor MAE: the first accuracy, else the first metric
        panels = [next((k for k in keys if "acc" in k.lower()), keys[0])] if keys else []
    fig = Figure(figsize=(5 * max(len(panels), 1) + 1.6, 4))
    axes = fig.subplots(1, max(len(panels), 1), squeeze=False)
    settings = list(dict.fromkeys(r["setting"] for r in rows if r["setting"] != "avg"))
    settings += ["avg"] if any(r["setting"] == "avg" for r in rows) else []
    for ax, key in zip(axes[0], panels):
        for s in settings:
            pts = sorted((r["rate"], r[key]) for r in rows if r["setting"] == s)
            style = {"linestyle": "--", "color": "black"} if s == "avg" else {"marker": "o", "markersize": 3}
            label = (f"avg of {len(incomplete)} incomplete" if incomplete else "avg of incomplete") if s == "avg" else "{" + ",".join(_names(s)) + "}"
            ax.plot([p for p, _ in pts], [v for _, v in pts], label=label, **style)
        ax.set_xlabel("frame-drop rate p")
        ax.set_ylabel(key)
        ax.grid(alpha=0.3)
    axes[0][-1].legend(fontsize=8, title="available", loc="upper left", bbox_to_anchor=(1.02, 1.0))
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=110)
    tmp.replace(path)
