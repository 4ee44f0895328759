"""LightningModule of the late-fusion baseline (L1 on the prediction only)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

import torch.nn.functional as F
from torch import Tensor

from lightning_kd.data.batch import Batch
from lightning_kd.data.contract import DataNeeds
from lightning_kd.methods.base import SentimentRegressionModule
from lightning_kd.methods.dmd.model import BackboneOptions
from lightning_kd.methods.fusion.model import FusionNet
from lightning_kd.options import options


class FusionBaseline(SentimentRegressionModule):
    """Late-fusion baseline trained with the DMD protocol (same optimiser, schedule and stopping).

    ``net`` holds DMD's :class:`BackboneOptions`; ``feature_dims`` and ``seq_lens`` are linked from the
    datamodule by the CLI.
    """

    @classmethod
    def data_needs(cls, hparams: Mapping[str, Any]) -> DataNeeds:
        """Text (BERT features or ``text_bert`` ids), audio and vision sequences with sentiment scores."""
        return DataNeeds(inputs=("text|text_bert", "audio", "vision"), targets=("score",))

    def __init__(
        self,
        feature_dims: dict[str, int],
        seq_lens: dict[str, int],
        net: BackboneOptions = BackboneOptions(),  # noqa: B008 - frozen dataclass, shown by --print_config
        lr: float = 1e-4,
        weight_decay: float = 0.0,
        lr_factor: float = 0.5,
        lr_patience: int = 5,
        metric_scheme: Literal["mmsa", "sims"] = "mmsa",
    ) -> None:
        super().__init__(lr, weight_decay, lr_factor, lr_patience, metric_scheme)
        net = options(BackboneOptions, net)
        self.save_hyperparameters()
        self.save_options(net=net)
        self.net = FusionNet(feature_dims, seq_lens, net)

    def predict_scores(self, batch: Batch) -> Tensor:
        return self.net(batch.inputs)

    def training_losses(self, batch: Batch) -> dict[str, Tensor]:
        loss = F.l1_loss(self.net(batch.inputs).float(), batch.target.float())
        return {"loss": loss, "task": loss}
