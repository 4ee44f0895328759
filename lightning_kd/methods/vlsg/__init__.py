"""VLSG (IJCAI 2024): vision-language semantic graphs in multi-view clustering (this project's interpretation)."""

from lightning_kd.methods.vlsg.losses import VLSGLossOptions
from lightning_kd.methods.vlsg.model import ViewAutoencoder, VLSGNet, VLSGNetOptions
from lightning_kd.methods.vlsg.module import VLSG

__all__ = ["VLSG", "VLSGLossOptions", "VLSGNet", "VLSGNetOptions", "ViewAutoencoder"]
