"""Late-fusion baseline (no decoupling, no distillation)."""

from lightning_kd.methods.fusion.module import FusionBaseline

__all__ = ["FusionBaseline"]
