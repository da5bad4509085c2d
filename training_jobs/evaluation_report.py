"""The shape of ``evaluation.json`` and the metric arithmetic behind it (pure Python).

The pipeline's condition reads a metric through a ``PropertyFile`` and ``JsonGet`` at
:func:`metric_json_path`; this module imports nothing heavy, so the pipeline definition can import it.

    {"model": "digits-cnn", "task": "digits", "dataset_version": "<sha256>", "samples": 180,
     "metrics": {"accuracy": {"value": 0.95, "direction": "higher"},
                 "rmse": {"value": 41.2, "direction": "lower"}, ...}}

This is the evaluation contract (docs/bring-your-own-model.md): a team's own evaluation script
writes the same file. Each metric has its value and its direction (which way is better); the
pipeline's gate, the registration and the champion gate read both from here. Only ``metrics`` is
required; ``dataset_version`` and ``samples`` are recorded when present.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

EVALUATION_FILE = "evaluation.json"
DATASET_VERSION_PATH = "dataset_version"  # JsonGet's path to the dataset version the model was tested on

CLASSIFICATION_METRICS = ("accuracy", "precision", "recall", "f1")
REGRESSION_METRICS = ("rmse", "mae", "r2")
HIGHER, LOWER = "higher", "lower"  # a metric's "direction": which way is better
DIRECTIONS = (HIGHER, LOWER)
# The directions of the metrics this module computes (a team's script states its own).
METRIC_DIRECTIONS = {
    **dict.fromkeys(CLASSIFICATION_METRICS, HIGHER),
    "rmse": LOWER,
    "mae": LOWER,
    "r2": HIGHER,
}


def classification_metrics(y_true: Sequence[int], y_pred: Sequence[int]) -> dict[str, float]:
    """Accuracy and macro precision/recall/F1 over the classes seen in either sequence
    (a class with no predictions scores 0 precision, as scikit-learn's default does)."""
    _same_length(y_true, y_pred)
    classes = sorted(set(y_true) | set(y_pred))
    precisions, recalls, f1s = [], [], []
    for cls in classes:
        tp = sum(t == cls and p == cls for t, p in zip(y_true, y_pred, strict=True))
        predicted = sum(p == cls for p in y_pred)
        actual = sum(t == cls for t in y_true)
        precision = tp / predicted if predicted else 0.0
        recall = tp / actual if actual else 0.0
        precisions.append(precision)
        recalls.append(recall)
        f1s.append(2 * precision * recall / (precision + recall) if precision + recall else 0.0)
    return {
        "accuracy": sum(t == p for t, p in zip(y_true, y_pred, strict=True)) / len(y_true),
        "precision": _mean(precisions),
        "recall": _mean(recalls),
        "f1": _mean(f1s),
    }


def regression_metrics(y_true: Sequence[float], y_pred: Sequence[float]) -> dict[str, float]:
    """RMSE, MAE and R2 (1 - SS_res / SS_tot; 0 when the targets are constant)."""
    _same_length(y_true, y_pred)
    errors = [p - t for t, p in zip(y_true, y_pred, strict=True)]
    mean_true = _mean(list(y_true))
    total = sum((t - mean_true) ** 2 for t in y_true)
    residual = sum(e**2 for e in errors)
    return {
        "rmse": math.sqrt(residual / len(errors)),
        "mae": _mean([abs(e) for e in errors]),
        "r2": 1.0 - residual / total if total else 0.0,
    }


def build_report(
    metrics: dict[str, float], *, model: str, task: str, dataset_version: str | None, samples: int
) -> dict[str, Any]:
    return {
        "model": model,
        "task": task,
        "dataset_version": dataset_version,
        "samples": samples,
        "metrics": {
            name: {"value": value, "direction": METRIC_DIRECTIONS[name]} for name, value in metrics.items()
        },
    }


def metric_json_path(metric: str) -> str:
    """Where :func:`build_report` puts ``metric``, as JsonGet's dotted path."""
    return f"metrics.{metric}.value"


def direction_json_path(metric: str) -> str:
    """Where the report says which way ``metric`` is better (``higher`` or ``lower``)."""
    return f"metrics.{metric}.direction"


def _same_length(a: Sequence[Any], b: Sequence[Any]) -> None:
    if not a or len(a) != len(b):
        raise ValueError(f"need two equally long, non-empty sequences (got {len(a)} and {len(b)})")


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else 0.0
