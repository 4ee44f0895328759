"""The k-means baseline as a LightningModule: ``lightning-kd fit`` collects the training split, fits k-means once
(no gradient steps) and stores the centres; validation, ``test`` and ``predict`` assign samples to the nearest
stored centre, so a checkpoint reproduces the clustering."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any, Literal

import numpy as np
import torch
from lightning.pytorch.utilities import rank_zero_info
from torch import Tensor

from lightning_kd.checkpoint import ConfigError
from lightning_kd.data.batch import Batch
from lightning_kd.data.contract import DataNeeds
from lightning_kd.methods.base import MethodModule
from lightning_kd.methods.kmeans.model import fit_kmeans, nearest_centre, run_seed
from lightning_kd.metrics.clustering import EvaluatedSamples, clustering_metrics

__all__ = ["FEATURES", "KMeansBaseline", "KMeansStep"]

#: what the baseline clusters: the views as the datamodule gives them, unfiltered or graph-filtered
FEATURES = ("concat", "filtered")


class KMeansStep(torch.optim.Optimizer):
    """The k-means fit as an optimiser (manual optimisation): :meth:`step` calls ``fit`` once the training pass
    has collected the samples. Its "parameters" are the centres it writes; it reads no gradients."""

    def __init__(self, centres: Tensor, fit: Callable[[], None]) -> None:
        super().__init__([centres], {})
        self._fit = fit

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        result = closure() if closure is not None else None  # Lightning's hooks around the step
        self._fit()
        return result


class KMeansBaseline(MethodModule):
    """k-means (scikit-learn ``KMeans``) on the concatenated views of a multi-view clustering datamodule: the
    shallow baselines of VLSG (Ke et al., IJCAI 2024), run through the same CLI, data and metrics.

    ``fit`` is one pass over the training split (all samples: clustering is transductive) that collects the
    features; k-means is fitted once after its last batch (before validation), as the one step of the optimiser
    :class:`KMeansStep` (no gradients), its centres stored as buffers, and the run stops after that epoch. Validation, ``test`` and ``predict``
    assign every sample to its nearest stored centre and score the assignment (``ACC``, ``NMI``, ``ARI``,
    ``purity``; labels are never used to fit). On the fitted samples this is scikit-learn's own ``labels_``.

    Args:
        feature_dims: view -> input size (linked from the datamodule).
        num_clusters: K; ``None`` = the datamodule's number of classes, read at setup (or, for a checkpoint loaded
            without data, the number of stored centres).
        features: what the datamodule gives, checked at setup: ``"concat"`` = its (standardised) views unfiltered
            (``data.init_args.semantic_graph: null``); ``"filtered"`` = its views after the semantic graph's
            low-pass filter (a ``semantic_graph`` with ``filter_order >= 1``: the input VLSG sees). The views are
            concatenated in both cases.
        balance_views: scale each view by ``1 / sqrt(D_v)`` before concatenating, so every view weighs the same in
            the distances (plain concatenation lets the widest views dominate).
        kmeans_init: k-means restarts (scikit-learn ``n_init``; VLSG's ``kmeans_init``).
        kmeans_seed: k-means ``random_state``; ``None`` = the run's ``seed_everything`` value.
        seq_lens: accepted for the CLI link; multi-view inputs are vectors.
    """

    @classmethod
    def data_needs(cls, hparams: Mapping[str, Any]) -> DataNeeds:
        """Feature-vector views ``view_0`` .. with class labels (used only to score the clustering)."""
        return DataNeeds(views=1, targets=("cluster_labels",))

    def __init__(
        self,
        feature_dims: dict[str, int],
        num_clusters: int | None = None,
        features: Literal["concat", "filtered"] = "concat",
        balance_views: bool = False,
        kmeans_init: int = 10,
        kmeans_seed: int | None = None,
        seq_lens: dict[str, int] | None = None,
    ) -> None:
        super().__init__(lr_scheduler="none")
        if features not in FEATURES:
            raise ConfigError(f"model.init_args.features must be 'concat' or 'filtered', got {features!r}")
        if kmeans_init < 1:
            raise ConfigError(f"model.init_args.kmeans_init (k-means restarts) must be >= 1, got {kmeans_init}")
        self.save_hyperparameters(ignore=["seq_lens"])
        self.automatic_optimization = False  # nothing is optimised by gradients
        self.views = list(feature_dims)  # the datamodule's order: view_0, view_1, ...
        self.num_clusters: int | None = None  # resolved by _build (from the argument, the data or a checkpoint)
        self.train_samples = EvaluatedSamples()
        self.val_metrics = EvaluatedSamples()
        self.test_metrics = EvaluatedSamples()
        if num_clusters is not None:
            self._build(num_clusters)
        #: after ``test``: the clustered features, cluster ids and labels of every sample, in row order (read by
        #: :class:`~lightning_kd.callbacks.EmbeddingPlot`)
        self.test_embedding: np.ndarray | None = None
        self.test_prediction: np.ndarray | None = None
        self.test_target: np.ndarray | None = None

    # -- setup -----------------------------------------------------------------------------------
    def _build(self, num_clusters: int) -> None:
        """The buffers of ``num_clusters`` centres (saved in the checkpoint)."""
        self.num_clusters = num_clusters
        dim = sum(self.hparams.feature_dims.values())
        self.register_buffer("cluster_centers", torch.zeros(num_clusters, dim))
        self.register_buffer("centers_fitted", torch.tensor(False))

    def setup(self, stage: str) -> None:
        if self._trainer is not None and self.trainer.world_size > 1:
            raise ConfigError(f"KMeansBaseline runs in one process (scikit-learn k-means; DDP would wrap a module "
                              f"without parameters), but the trainer has {self.trainer.world_size}. Fix: "
                              "--trainer.devices 1 --trainer.num_nodes 1")
        dm = getattr(self.trainer, "datamodule", None) if self._trainer is not None else None
        data_k = getattr(dm, "num_clusters", None)
        if self.num_clusters is None:
            if data_k is None:
                raise ConfigError("KMeansBaseline needs the number of clusters: set model.init_args.num_clusters, or "
                                  "use a datamodule with labels (it counts the classes)")
            self._build(int(data_k))
        elif data_k is not None and data_k != self.num_clusters:
            raise ConfigError(f"model.init_args.num_clusters is {self.num_clusters} but the data has {data_k} "
                              "classes; set it to match, or to null to take the data's count")
        if dm is not None:
            self._check_features(dm)

    def _check_features(self, dm: Any) -> None:
        """``features`` must say what the datamodule gives (filtered views or not)."""
        graph = getattr(dm, "semantic_graph", None)
        order = int(getattr(graph, "filter_order", 0)) if graph is not None else 0
        if self.hparams.features == "filtered" and order < 1:
            why = "builds no semantic graph (data.init_args.semantic_graph is null)" if graph is None else \
                "filters nothing (data.init_args.semantic_graph.filter_order is 0)"
            raise ConfigError(f"model.init_args.features is 'filtered', but the datamodule {why}, so its views are "
                              "not filtered. Fix: set data.init_args.semantic_graph (as configs/kmeans/mfeat.yaml "
                              "does), or --model.init_args.features concat")
        if self.hparams.features == "concat" and order >= 1:
            raise ConfigError("model.init_args.features is 'concat', but the datamodule low-pass filters its views on "
                              f"its semantic graph (data.init_args.semantic_graph.filter_order {order}). Fix: add "
                              "--data.init_args.semantic_graph null for the unfiltered views, or set "
                              "--model.init_args.features filtered")

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Check the method tag, then build the buffers for the checkpoint's centres when nothing built them yet
        (``load_from_checkpoint`` without data), or refuse centres of another K or feature size."""
        super().on_load_checkpoint(checkpoint)
        centres = checkpoint.get("state_dict", {}).get("cluster_centers")
        if centres is None:
            return
        k, dim = (int(s) for s in centres.shape)
        if self.num_clusters is None:
            self._build(k)
        if (k, dim) != tuple(self.cluster_centers.shape):
            raise ConfigError(f"the checkpoint holds {k} centres of {dim} features but the model is built for "
                              f"{self.num_clusters} of {self.cluster_centers.shape[1]} (the data's classes and views); "
                              "use the data and config the checkpoint was fitted with (its run's config.yaml)")

    # -- features --------------------------------------------------------------------------------
    def features(self, batch: Batch) -> Tensor:
        """The concatenated views of a batch, ``(B, sum D_v)`` float32 (each scaled by ``1/sqrt(D_v)`` with
        ``balance_views``)."""
        xs = [batch.inputs[v].float() for v in self.views]
        if self.hparams.balance_views:
            xs = [x / math.sqrt(x.shape[1]) for x in xs]
        return torch.cat(xs, dim=1)

    # -- fit: one pass over the training split, then k-means as the one optimiser step -----------------
    def configure_optimizers(self) -> KMeansStep:
        """The k-means fit as the module's one optimiser step (:class:`KMeansStep`): no gradients."""
        return KMeansStep(self.cluster_centers, self._fit_collected)

    def training_losses(self, batch: Batch) -> dict[str, Tensor]:
        """k-means minimises no loss by gradient steps (unused: :meth:`training_step` collects the features)."""
        return {}

    def training_step(self, batch: Batch, batch_idx: int) -> None:
        """Collect the batch's features; after the pass's last batch, fit k-means (the optimiser's step, which
        Lightning counts, so the checkpoint callbacks save the centres) and end the fit after this epoch."""
        if bool(self.centers_fitted):  # a resumed or longer fit: nothing left to do
            return
        self.train_samples.update(batch.index, self.features(batch), batch.target)
        if batch_idx + 1 == self.trainer.num_training_batches:
            self.optimizers().step()
            self.trainer.should_stop = True

    def _fit_collected(self) -> None:
        """Fit k-means on the samples the training pass collected (once each, in row order)."""
        _, x, _ = self.train_samples.compute()
        self.train_samples.reset()
        seed = run_seed(self.hparams.kmeans_seed)
        centres, _ = fit_kmeans(x, self.num_clusters, self.hparams.kmeans_init, seed)
        self.cluster_centers.copy_(centres)
        self.centers_fitted.fill_(True)
        rank_zero_info(f"KMeansBaseline: k-means fitted on {len(x)} samples x {x.shape[1]} features "
                       f"({self.num_clusters} clusters, n_init {self.hparams.kmeans_init}, random_state {seed})")

    # -- evaluation (MethodModule's hooks): assign every sample to its nearest centre, score at epoch end ---
    def _eval_step(self, batch: Batch, stage: str, metrics: EvaluatedSamples) -> None:
        metrics.update(batch.index, self.features(batch), batch.target)

    def _eval_epoch_end(self, stage: str, metrics: EvaluatedSamples) -> None:
        if metrics.update_count == 0 or self.trainer.sanity_checking:
            metrics.reset()
            return
        _, x, tgt = metrics.compute()
        metrics.reset()
        pred = self.assign(x)
        scores = clustering_metrics(pred.cpu(), tgt.cpu())
        self.log_dict({f"{stage}/{k}": float(v) for k, v in scores.items()}, sync_dist=False)
        if stage == "test":
            self.test_embedding = x.cpu().numpy()
            self.test_prediction = pred.cpu().numpy()
            self.test_target = tgt.cpu().numpy()

    def assign(self, x: Tensor) -> Tensor:
        """Cluster ids ``(B,)`` of features ``x``: the nearest stored centre."""
        if not bool(self.centers_fitted):
            raise ConfigError("KMeansBaseline has no fitted centres: `lightning-kd fit` fits them. Fix: pass "
                              "--ckpt_path with a checkpoint of a finished fit (checkpoints/last.ckpt)")
        return nearest_centre(x, self.cluster_centers)

    def predict_step(self, batch: Batch, batch_idx: int) -> dict[str, Tensor]:
        return {"index": batch.index, "prediction": self.assign(self.features(batch)), "target": batch.target}

    def forward(self, batch: Batch) -> Tensor:
        """Cluster ids of a batch."""
        return self.assign(self.features(batch))
