"""Evaluation metrics (MMSA ``MetricsTop`` rules for sentiment regression)."""

from lightning_kd.metrics.sentiment import (
    MMSA_KEYS,
    SIMS_KEYS,
    SentimentMetrics,
    mmsa_regression_metrics,
    sims_regression_metrics,
)

__all__ = [
    "MMSA_KEYS",
    "SIMS_KEYS",
    "SentimentMetrics",
    "mmsa_regression_metrics",
    "sims_regression_metrics",
]
