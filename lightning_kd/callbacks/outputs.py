"""Callbacks that write a run's results: test metrics JSON and prediction CSV."""

from __future__ import annotations

import csv
import json
import math
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import BasePredictionWriter, Callback

from lightning_kd.callbacks.run_dir import run_dir
from lightning_kd.io import atomic_write_text


class TestMetricsWriter(Callback):
    """After ``test``, writes every ``test/<name>`` metric to ``<run_dir>/test_metrics.json`` as ``{name: value}``."""

    filename = "test_metrics.json"

    def on_test_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if getattr(trainer, "robustness_running", False) or trainer.fast_dev_run:  # robustness writes its own CSV;
            return  # a fast_dev_run smoke test keeps no files
        out = run_dir(trainer) / self.filename
        if not trainer.is_global_zero:
            return
        metrics: dict[str, Any] = {}
        for key, value in trainer.callback_metrics.items():
            if key.startswith("test/"):
                v = float(value)
                metrics[key.removeprefix("test/")] = None if math.isnan(v) else v
        payload = {"metrics": metrics, "ckpt_path": trainer.ckpt_path}
        atomic_write_text(out, lambda f: json.dump(payload, f, indent=2, sort_keys=True))
        pl_module.print(f"test metrics written to {out}")


class PredictionCSVWriter(BasePredictionWriter):
    """Writes ``<run_dir>/predictions.csv`` with columns ``id,prediction,target`` after ``predict``.

    ``predict_step`` must return a dict with ``index``, ``prediction`` and ``target`` tensors; ids come
    from the datamodule's ``ids(split)``. Under DDP every rank's predictions are gathered to rank 0.
    """

    filename = "predictions.csv"

    def __init__(self) -> None:
        super().__init__(write_interval="epoch")

    def write_on_epoch_end(self, trainer, pl_module, predictions, batch_indices) -> None:  # type: ignore[override]
        out = run_dir(trainer) / self.filename
        rows = predictions[0] if predictions and isinstance(predictions[0], list) else predictions
        cols = {k: torch.cat([r[k].detach().float().reshape(len(r["index"]), -1).cpu() for r in rows])
                for k in ("index", "prediction", "target")}
        if trainer.world_size > 1:
            cols = {k: pl_module.all_gather(v.to(pl_module.device)).reshape(-1, v.shape[-1]).cpu() for k, v in cols.items()}
        if not trainer.is_global_zero:
            return
        dm = trainer.datamodule
        split = getattr(dm, "predict_split", "test")
        ids = dm.ids(split) if dm is not None and hasattr(dm, "ids") else None
        order = torch.argsort(cols["index"][:, 0], stable=True)
        seen: set[int] = set()

        def write(f) -> None:
            w = csv.writer(f)
            w.writerow(["id", "prediction", "target"])
            for i in order.tolist():
                idx = int(cols["index"][i, 0])
                if idx in seen:  # DistributedSampler pads with repeats
                    continue
                seen.add(idx)
                pred = cols["prediction"][i].tolist()
                tgt = cols["target"][i].tolist()
                w.writerow([ids[idx] if ids is not None else idx,
                            ";".join(f"{p:.6g}" for p in pred), ";".join(f"{t:.6g}" for t in tgt)])

        atomic_write_text(out, write)
        pl_module.print(f"{len(seen)} predictions written to {out}")
