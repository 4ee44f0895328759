"""LightningModule of DMD (Li, Wang, Cui, CVPR 2023): wraps :class:`DMDNet` and :class:`DMDObjective`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

import torch
from torch import Tensor

from lightning_kd.data.batch import Batch
from lightning_kd.data.contract import DataNeeds
from lightning_kd.distill.gd_unit import EDGE_NAMES
from lightning_kd.methods.base import SentimentRegressionModule
from lightning_kd.methods.dmd.losses import DMDLossOptions, DMDObjective
from lightning_kd.methods.dmd.model import DMDNet, DMDNetOptions
from lightning_kd.options import options


class DMD(SentimentRegressionModule):
    """Decoupled Multimodal Distilling.

    ``net`` holds the :class:`DMDNetOptions` (official MOSI values as defaults), ``loss`` the
    :class:`DMDLossOptions`; ``feature_dims`` / ``seq_lens`` are linked from the datamodule by the CLI.
    The optimiser is Adam on every parameter (network, both GD-Units, BERT when used) with
    ``ReduceLROnPlateau`` on validation L1, as in the official code.

    Decisions on the official code's defects (documented in README "DMD"):
    ``weight_decay`` defaults to 0.0, the value the official code effectively trains with (its configs
    list 0.005 / 0.001 but never pass them to Adam; set it to apply decay). The homogeneous
    representation term is added (``loss.homo_repr=True``, paper) and the heterogeneous cosine term
    attracts the student to the teacher (``loss.hetero_repr_direction="attract"``, paper); both are options.
    """

    @classmethod
    def data_needs(cls, hparams: Mapping[str, Any]) -> DataNeeds:
        """Text (BERT features or ``text_bert`` ids), audio and vision sequences with sentiment scores."""
        return DataNeeds(inputs=("text|text_bert", "audio", "vision"), targets=("score",))

    def __init__(
        self,
        feature_dims: dict[str, int],
        seq_lens: dict[str, int],
        net: DMDNetOptions = DMDNetOptions(),  # noqa: B008 - frozen dataclass, shown by --print_config
        loss: DMDLossOptions = DMDLossOptions(),  # noqa: B008
        lr: float = 1e-4,
        weight_decay: float = 0.0,
        lr_factor: float = 0.5,
        lr_patience: int = 5,
        metric_scheme: Literal["mmsa", "sims"] = "mmsa",
    ) -> None:
        super().__init__(lr, weight_decay, lr_factor, lr_patience, metric_scheme)
        net, loss = options(DMDNetOptions, net), options(DMDLossOptions, loss)
        self.save_hyperparameters()
        self.save_options(net=net, loss=loss)
        self.net = DMDNet(feature_dims, seq_lens, net)
        self.objective = DMDObjective(net.hidden, loss)

    def predict_scores(self, batch: Batch) -> Tensor:
        return self.net(batch.inputs).prediction

    def training_losses(self, batch: Batch) -> dict[str, Tensor]:
        terms = self.objective(self.net(batch.inputs), batch.target.float())
        for graph in ("homo", "hetero"):
            edges = terms.pop(f"{graph}_edges").float().mean(dim=1)
            self.log_dict({f"edges/{graph}/{n}": w for n, w in zip(EDGE_NAMES, edges)},
                          on_step=False, on_epoch=True, batch_size=len(batch), sync_dist=True)
        return terms

    @torch.no_grad()
    def edge_weights(self, batch: Batch) -> dict[str, Tensor]:
        """Mean learned edge weights ``(6,)`` per graph on a batch (eval mode), in ``EDGE_NAMES`` order."""
        out = self.net(batch.inputs)
        homo = self.objective.homo_gd.edge_weights(out.logits_homo, out.reprs_homo)
        hetero = self.objective.hetero_gd.edge_weights(out.logits_hetero, out.reprs_hetero)
        return {"homo": homo.float().mean(1), "hetero": hetero.float().mean(1)}
