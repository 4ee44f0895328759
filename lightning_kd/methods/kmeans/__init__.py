"""k-means baselines of multi-view clustering as a LightningModule (same CLI, data and metrics as VLSG)."""

from lightning_kd.methods.kmeans.model import fit_kmeans, nearest_centre, run_seed
from lightning_kd.methods.kmeans.module import KMeansBaseline

__all__ = ["KMeansBaseline", "fit_kmeans", "nearest_centre", "run_seed"]
