"""VLSG as a LightningModule: pretraining by reconstruction, then graph-guided contrastive learning, then
clustering of all samples (transductive) by k-means on the learned features or by the label heads."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from lightning.pytorch.utilities import rank_zero_info
from torch import Tensor

from lightning_kd.checkpoint import ConfigError
from lightning_kd.data.batch import Batch
from lightning_kd.data.contract import DataNeeds
from lightning_kd.data.semantic_graph import NEIGHBOURS_KEY
from lightning_kd.methods.base import MethodModule
from lightning_kd.methods.kmeans.model import fit_kmeans, run_seed
from lightning_kd.methods.vlsg.losses import VLSGLossOptions, contrastive_losses, neighbour_mask
from lightning_kd.methods.vlsg.model import VLSGNet, VLSGNetOptions
from lightning_kd.metrics.clustering import EvaluatedSamples, clustering_metrics
from lightning_kd.options import options

__all__ = ["VLSG", "EvaluatedSamples"]


class VLSG(MethodModule):
    """Multi-view clustering with semantic graphs (Ke et al., IJCAI 2024, "Integrating Vision-Language
    Semantic Graphs in Multi-View Clustering"; this project's interpretation, the paper's code is not public).

    Schedule (one ``fit``, epoch-based so resumed runs repeat it):

    1. epochs ``< pretrain_epochs``: every view's autoencoder learns to reconstruct its (graph-filtered) view;
    2. afterwards: reconstruction + ``loss.contrastive_weight`` x graph-guided cross-view contrastive loss on the
       feature heads, averaged over the pairs of views (semantic-graph neighbours are never negatives: by
       default they are extra positives, ``loss.neighbour_mode``) + ``loss.cluster_weight`` x MFLVC's cluster-level
       contrastive loss on the label heads (:func:`~lightning_kd.methods.vlsg.losses.contrastive_losses`);
    3. at every validation epoch end, all samples are clustered (``cluster_on``): by the label heads, or by
       k-means whose centres are stored in the checkpoint, so ``test`` and ``predict`` assign samples to the
       same clusters.

    Labels are never used for training or model selection; ``val/ACC`` etc. are logged for monitoring only
    (the configs checkpoint the last epoch). The semantic graphs and the filtered views come from the
    datamodule (``data.init_args.semantic_graph``); without one this is the plain MFLVC-style pipeline.

    Args:
        feature_dims: view -> input size (linked from the datamodule).
        num_clusters: K; ``None`` = the datamodule's number of classes, read at setup (and then saved in the
            checkpoint's hyper-parameters).
        net: the :class:`~lightning_kd.methods.vlsg.model.VLSGNetOptions` (``hidden``, ``latent``,
            ``feature_dim``, ``shared_heads``).
        loss: the :class:`~lightning_kd.methods.vlsg.losses.VLSGLossOptions` (weights and temperatures of the
            contrastive phase, ``neighbour_mode``, ``pair_reduction``).
        pretrain_epochs: reconstruction-only epochs before the contrastive phase.
        use_graph: read the semantic neighbours the datamodule attaches (``semantic_graph``); ``False`` ignores
            them (the filtered views are still used).
        cluster_on: ``"latent"`` (k-means on the concatenated, per-view L2-normalised latent codes ``z``),
            ``"features"`` (k-means on the normalised feature heads) or ``"labels"`` (argmax of the label heads
            averaged over views).
        kmeans_init: k-means restarts (scikit-learn ``n_init``).
        kmeans_seed: k-means ``random_state`` (and the seed of the ``kmeans_fit_size`` subsample); ``None`` = the
            run's ``seed_everything`` value.
        kmeans_fit_size: ``None`` fits k-means on all N embeddings; a number fits the centres (same restarts, same
            k-means++) on that many embeddings drawn uniformly at random (seeded), then assigns every sample to its
            nearest centre in blocks (:func:`~lightning_kd.methods.kmeans.model.fit_kmeans`). The centres of a
            uniform subsample estimate the full fit's; it bounds the time and scikit-learn's float32 copies
            (``N x V latent``: 8 GB at N = 1M with 4 views) to the subsample. For N >~ 200k.
        embedding_dtype: ``"float32"``, or ``"float16"``: the embeddings of all N samples are kept in half precision
            until they are clustered (4 GB instead of 8 at N = 1M with 4 views x 512 latent); k-means reads them
            converted back to float32 block by block. The rounding (2^-11 relative) is below bf16-mixed training's.
        lr, weight_decay: Adam (constant learning rate, as MFLVC: the base's ``lr_scheduler="none"``; a plateau
            schedule would watch ``val/loss``, which clustering does not log).
        seq_lens: accepted for the CLI link; multi-view inputs are vectors.

    ``num_clusters: null`` is resolved at ``setup`` from the datamodule, or, when a checkpoint is loaded without
    data (``VLSG.load_from_checkpoint``), from the checkpoint's tensors; the hyper-parameters are never rewritten.
    """

    @classmethod
    def data_needs(cls, hparams: Mapping[str, Any]) -> DataNeeds:
        """Feature-vector views ``view_0`` .. with class labels (used only to evaluate the clustering)."""
        return DataNeeds(views=1, targets=("cluster_labels",))

    def __init__(
        self,
        feature_dims: dict[str, int],
        num_clusters: int | None = None,
        net: VLSGNetOptions = VLSGNetOptions(),  # noqa: B008 - frozen dataclass, shown by --print_config
        loss: VLSGLossOptions = VLSGLossOptions(),  # noqa: B008
        pretrain_epochs: int = 50,
        use_graph: bool = True,
        cluster_on: Literal["features", "latent", "labels"] = "latent",
        kmeans_init: int = 10,
        kmeans_seed: int | None = None,
        kmeans_fit_size: int | None = None,
        embedding_dtype: Literal["float32", "float16"] = "float32",
        lr: float = 3e-4,
        weight_decay: float = 0.0,
        seq_lens: dict[str, int] | None = None,
    ) -> None:
        super().__init__(lr=lr, weight_decay=weight_decay, lr_scheduler="none")
        if cluster_on not in ("features", "latent", "labels"):
            raise ValueError(f"cluster_on must be 'features', 'latent' or 'labels', got {cluster_on!r}")
        if kmeans_fit_size is not None and kmeans_fit_size < 1:
            raise ConfigError(f"model.init_args.kmeans_fit_size must be >= 1 (samples) or null (all), got "
                              f"{kmeans_fit_size}")
        if embedding_dtype not in ("float32", "float16"):
            raise ConfigError(f"model.init_args.embedding_dtype must be 'float32' or 'float16', got {embedding_dtype!r}")
        self.net_options, self.loss_options = options(VLSGNetOptions, net), options(VLSGLossOptions, loss)
        self.save_hyperparameters(ignore=["seq_lens"])
        self.save_options(net=self.net_options, loss=self.loss_options)
        self.net: VLSGNet | None = None
        self.num_clusters: int | None = None  # resolved by _build (from the argument, the data or a checkpoint)
        self.use_graph = use_graph
        self.val_metrics = EvaluatedSamples(getattr(torch, embedding_dtype))
        self.test_metrics = EvaluatedSamples(getattr(torch, embedding_dtype))
        if num_clusters is not None:
            self._build(num_clusters)
        #: after ``test``: the plotted embeddings (feature heads with ``cluster_on: labels``), cluster ids and
        #: labels of every sample, in row order (read by :class:`~lightning_kd.callbacks.EmbeddingPlot`)
        self.test_embedding: np.ndarray | None = None
        self.test_prediction: np.ndarray | None = None
        self.test_target: np.ndarray | None = None

    # -- setup -----------------------------------------------------------------------------------
    def _build(self, num_clusters: int) -> None:
        """The network and the k-means centre buffers for ``num_clusters`` clusters."""
        h, o = self.hparams, self.net_options
        self.net = VLSGNet(h.feature_dims, num_clusters, o)
        self.num_clusters = num_clusters
        emb = (o.latent if h.cluster_on == "latent" else o.feature_dim) * len(h.feature_dims)
        self.register_buffer("cluster_centers", torch.zeros(num_clusters, emb))
        self.register_buffer("centers_fitted", torch.tensor(False))

    def setup(self, stage: str) -> None:
        dm = getattr(self.trainer, "datamodule", None) if self._trainer is not None else None
        data_k = getattr(dm, "num_clusters", None)
        if self.net is None:  # num_clusters: null -> the data's number of classes
            if data_k is None:
                raise ConfigError("VLSG needs the number of clusters: set model.init_args.num_clusters, or use a "
                                  "datamodule with labels (it counts the classes)")
            self._build(int(data_k))
        elif data_k is not None and data_k != self.num_clusters:
            raise ConfigError(f"model.init_args.num_clusters is {self.num_clusters} but the data has {data_k} "
                              "classes; set it to match, or to null to take the data's count")
        if stage == "fit" and self.use_graph and dm is not None:
            graph = getattr(dm, "semantic_graph", None)
            if graph is None or not graph.neighbours:
                rank_zero_info("VLSG: the datamodule builds no semantic graph (data.init_args.semantic_graph is "
                               "null), so the contrastive loss uses every other sample as a negative (the "
                               "pipeline without the semantic graph).")

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Check the method tag, then build the network for the checkpoint's number of clusters when nothing
        built it yet (``load_from_checkpoint`` without data), or refuse a checkpoint of another K."""
        super().on_load_checkpoint(checkpoint)
        centres = checkpoint.get("state_dict", {}).get("cluster_centers")
        if centres is None:
            return
        k = int(centres.shape[0])
        if self.net is None:
            self._build(k)
        elif k != self.num_clusters:
            raise ConfigError(f"the checkpoint clusters into {k} clusters but the model is built for "
                              f"{self.num_clusters} (the data's classes or model.init_args.num_clusters); use the "
                              "data and config the checkpoint was trained with")

    # -- losses ----------------------------------------------------------------------------------
    def in_contrastive_phase(self) -> bool:
        return self.current_epoch >= self.hparams.pretrain_epochs

    def losses(self, batch: Batch, contrastive: bool) -> dict[str, Tensor]:
        """Every loss term of a batch; ``"loss"`` is the optimised total."""
        views = self.net.views
        out = self.net({v: batch.inputs[v] for v in views})
        recon = sum(F.mse_loss(out["recon"][v].float(), batch.inputs[v].float()) for v in views)
        terms: dict[str, Tensor] = {"recon": recon}
        total = recon
        if contrastive and len(views) > 1:
            neighbours = None
            if self.use_graph and NEIGHBOURS_KEY in batch.inputs:
                neighbours = neighbour_mask(batch.inputs[NEIGHBOURS_KEY], batch.index)
                terms["batch_neighbours"] = neighbours.float().sum(1).mean()
            o = self.loss_options
            feat, clus = contrastive_losses(out["h"], out["q"], neighbours, o)
            terms["feature_contrastive"], terms["cluster_contrastive"] = feat, clus
            total = total + o.contrastive_weight * feat + o.cluster_weight * clus
        else:  # the heads take no part in pretraining: a zero term keeps every parameter in the graph (DDP)
            total = total + 0.0 * sum(out["h"][v].sum() + out["q"][v].sum() for v in views)
        terms["loss"] = total
        return terms

    def training_losses(self, batch: Batch) -> dict[str, Tensor]:
        """Every loss term of one training step, for the epoch's phase (logged by MethodModule's ``training_step``)."""
        return self.losses(batch, self.in_contrastive_phase())

    # -- evaluation (MethodModule's hooks): embed every sample, cluster all of them at epoch end --------
    def _embed(self, batch: Batch, kind: str | None = None) -> Tensor:
        """The embedding ``kind`` (default ``cluster_on``) of a batch, ``(B, D)`` float32."""
        z = self.net.encode({v: batch.inputs[v] for v in self.net.views})
        return self.net.embed(z, kind or self.hparams.cluster_on).float()

    def _eval_step(self, batch: Batch, stage: str, metrics: EvaluatedSamples) -> None:
        """Collect the batch's embeddings (no ``<stage>/loss``: validation data is the training data,
        ``train/loss`` already reports the objective). With ``cluster_on: labels`` the test also keeps the
        feature heads, which the embedding plot shows instead of K probabilities."""
        z = self.net.encode({v: batch.inputs[v] for v in self.net.views})
        emb = self.net.embed(z, self.hparams.cluster_on).float()
        if stage == "test" and self.hparams.cluster_on == "labels":
            emb = torch.cat([emb, self.net.embed(z, "features").float()], dim=1)
        metrics.update(batch.index, emb, batch.target)

    def _eval_epoch_end(self, stage: str, metrics: EvaluatedSamples) -> None:
        if metrics.update_count == 0 or self.trainer.sanity_checking:
            metrics.reset()
            return
        _, emb, tgt = metrics.samples()  # the N embeddings once (no copy)
        metrics.reset()
        plotted = emb
        if self.hparams.cluster_on == "labels":
            k = self.num_clusters
            emb, plotted = emb[:, :k], (emb[:, k:] if emb.shape[1] > k else emb)
            pred = emb.argmax(1)
        elif stage == "val" or not bool(self.centers_fitted):
            pred = self.fit_clusters(emb).to(emb.device)
        else:
            pred = self.assign(emb)
        scores = clustering_metrics(pred.cpu(), tgt.cpu())
        self.log_dict({f"{stage}/{k}": float(v) for k, v in scores.items()}, sync_dist=False)
        if stage == "test":
            self.test_embedding = plotted.cpu().float().numpy()
            self.test_prediction = pred.cpu().numpy()
            self.test_target = tgt.cpu().numpy()

    def _kmeans_seed(self) -> int:
        return run_seed(self.hparams.kmeans_seed)

    def fit_clusters(self, embedding: Tensor) -> Tensor:
        """k-means (scikit-learn) of ``embedding (N, D)`` (on a subsample: ``kmeans_fit_size``); stores the centres
        and returns the cluster ids."""
        size = self.hparams.kmeans_fit_size
        if size is not None and size < len(embedding) and size < self.num_clusters:
            raise ConfigError(f"model.init_args.kmeans_fit_size={size} is below the {self.num_clusters} clusters; "
                              "raise it (e.g. 100000) or set null (all samples)")
        centres, labels = fit_kmeans(embedding, self.num_clusters, self.hparams.kmeans_init, self._kmeans_seed(),
                                     fit_size=size)
        self.cluster_centers.copy_(centres)
        self.centers_fitted.fill_(True)
        return labels

    def assign(self, embedding: Tensor, block: int = 65536) -> Tensor:
        """Cluster ids ``(B,)`` of embeddings: nearest stored centre (in float32 blocks of ``block`` rows), or argmax
        of the label heads."""
        if self.hparams.cluster_on == "labels":
            return embedding.argmax(1)
        if not bool(self.centers_fitted):
            raise RuntimeError("VLSG has no cluster centres yet: they are fitted at validation epoch ends; "
                               "pass a checkpoint written by `lightning-kd fit` (its validation fitted them)")
        centres = self.cluster_centers.float()
        return torch.cat([torch.cdist(embedding[i:i + block].float(), centres).argmin(1)
                          for i in range(0, max(len(embedding), 1), block)])

    def predict_step(self, batch: Batch, batch_idx: int) -> dict[str, Tensor]:
        return {"index": batch.index, "prediction": self.assign(self._embed(batch)), "target": batch.target}

    def forward(self, batch: Batch) -> Tensor:
        """Cluster ids of a batch."""
        return self.assign(self._embed(batch))
