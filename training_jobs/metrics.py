"""The one format training metrics are printed in, and the SageMaker regexes that read it.

Kept free of torch so the pipeline definition (which passes ``METRIC_DEFINITIONS`` to the
training job) can import it without the training dependencies.

A line looks like ``[metric] epoch=3 train_loss=0.123400 validation_accuracy=0.950000``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

METRIC_PREFIX = "[metric]"
METRIC_NAMES = (
    "train_loss",
    "validation_loss",
    "validation_accuracy",
    "validation_rmse",
    "validation_r2",
)
_NUMBER = r"(-?[0-9]+\.[0-9]+|nan|-?inf)"

# SageMaker applies each regex to every log line and records the first group as the value.
METRIC_DEFINITIONS: list[dict[str, str]] = [
    {"Name": "epoch", "Regex": r"\[metric\] epoch=([0-9]+)"},
    *({"Name": name, "Regex": rf"\[metric\] epoch=[0-9]+ .*?\b{name}={_NUMBER}"} for name in METRIC_NAMES),
]


def format_metric_line(epoch: int, metrics: Mapping[str, float]) -> str:
    """Render one epoch's metrics; only names in ``METRIC_NAMES`` (so a regex exists for each)."""
    unknown = sorted(set(metrics) - set(METRIC_NAMES))
    if unknown:
        raise ValueError(f"metrics without a METRIC_DEFINITIONS entry: {unknown}")
    values = " ".join(f"{name}={_fixed(metrics[name])}" for name in METRIC_NAMES if name in metrics)
    return f"{METRIC_PREFIX} epoch={epoch} {values}"


def _fixed(value: float) -> str:
    # Fixed-point, never exponent notation, so the regexes stay simple.
    return f"{value:.6f}" if math.isfinite(value) else str(value)
