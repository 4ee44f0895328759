"""lightning_kd: knowledge-distillation methods for multimodal emotion and sentiment recognition."""

__version__ = "0.1.0"
