"""VLSG (IJCAI 2024): vision-language semantic graphs in multi-view clustering (this project's interpretation)."""

from lightning_kd.methods.vlsg.model import ViewAutoencoder, VLSGNet
from lightning_kd.methods.vlsg.module import VLSG

__all__ = ["VLSG", "VLSGNet", "ViewAutoencoder"]
