"""Evaluation metrics (MMSA ``MetricsTop`` rules for sentiment regression; binary sentiment and emotion
classification; clustering)."""

from lightning_kd.metrics.ccc import CCC_KEYS, ValenceArousalCCC, valence_arousal_ccc
from lightning_kd.metrics.classification import (
    BINARY_SENTIMENT_KEYS,
    EMOTIONS,
    ClassificationMetrics,
    binary_sentiment_metrics,
    emotion_keys,
    emotion_metrics,
)
from lightning_kd.metrics.clustering import (
    CLUSTERING_KEYS,
    ClusteringMetrics,
    EvaluatedSamples,
    clustering_metrics,
    contingency_matrix,
)
from lightning_kd.metrics.sentiment import (
    MMSA_KEYS,
    SIMS_KEYS,
    SentimentMetrics,
    mmsa_regression_metrics,
    sims_regression_metrics,
)

__all__ = [
    "CCC_KEYS",
    "ValenceArousalCCC",
    "valence_arousal_ccc",
    "BINARY_SENTIMENT_KEYS",
    "EMOTIONS",
    "ClassificationMetrics",
    "binary_sentiment_metrics",
    "emotion_keys",
    "emotion_metrics",
    "CLUSTERING_KEYS",
    "ClusteringMetrics",
    "EvaluatedSamples",
    "clustering_metrics",
    "contingency_matrix",
    "MMSA_KEYS",
    "SIMS_KEYS",
    "SentimentMetrics",
    "mmsa_regression_metrics",
    "sims_regression_metrics",
]
