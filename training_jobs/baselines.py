"""Baseline statistics of a model's training data, saved as ``baseline.json`` next to the model.

The drift monitor compares captured traffic with it (PSI over these bins, KS against the sample,
mean confidence). Standard library only, so the monitor's Lambda (no numpy) and this module agree
on every number. The format: docs/artifacts.md.
"""

from __future__ import annotations

import json
import math
import statistics
from bisect import bisect_right
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

BASELINE_FILE = "baseline.json"
BASELINE_FORMAT = "ml-platform/baseline/v1"
DEFAULT_BINS = 10
# Evenly spaced order statistics kept per feature for the KS test (the whole set can be large).
SAMPLE_SIZE = 256
TEXT_FEATURES = ("text_chars", "text_words")
CONFIDENCE_EDGES = tuple(round(k / DEFAULT_BINS, 10) for k in range(1, DEFAULT_BINS))

FeatureRow = Sequence[float] | str


def text_features(text: str) -> tuple[float, float]:
    """The numbers a text model's drift is measured on: length in characters and in words."""
    return float(len(text)), float(len(text.split()))


def quantile_edges(values: Sequence[float], bins: int = DEFAULT_BINS) -> list[float]:
    """The interior cut points of ``bins`` equal-frequency bins (ties merged, so maybe fewer)."""
    if bins < 2:  # noqa: PLR2004 - one bin has no cut point
        return []
    if len(values) < 2:  # noqa: PLR2004 - statistics.quantiles needs two points
        return [float(values[0])] if values else []
    cuts = statistics.quantiles(values, n=bins, method="inclusive")
    return sorted({float(cut) for cut in cuts})


def bin_proportions(values: Sequence[float], edges: Sequence[float]) -> list[float]:
    """The share of ``values`` in each of the ``len(edges) + 1`` bins (a value on an edge goes up)."""
    counts = [0] * (len(edges) + 1)
    for value in values:
        counts[bisect_right(edges, value)] += 1
    return [count / len(values) for count in counts] if values else [0.0] * len(counts)


def order_sample(values: Sequence[float], size: int = SAMPLE_SIZE) -> list[float]:
    """``size`` evenly spaced order statistics of ``values`` (all of them when there are fewer)."""
    ordered = sorted(float(v) for v in values)
    if len(ordered) <= size:
        return ordered
    step = (len(ordered) - 1) / (size - 1)
    return [ordered[round(i * step)] for i in range(size)]


def feature_baseline(values: Sequence[float], bins: int = DEFAULT_BINS) -> dict[str, Any]:
    """Bins, proportions, mean, standard deviation, count and a KS sample of one feature."""
    if not values:
        raise ValueError("a feature baseline needs at least one value")
    if not all(math.isfinite(v) for v in values):
        raise ValueError("feature values must be finite numbers")
    edges = quantile_edges(values, bins)
    return {
        "edges": edges,
        "proportions": bin_proportions(values, edges),
        "mean": statistics.fmean(values),
        "std": statistics.pstdev(values),
        "count": len(values),
        "sample": order_sample(values),
    }


def confidence_baseline(confidences: Sequence[float]) -> dict[str, Any] | None:
    """Histogram (ten fixed bins over [0, 1]) and mean of validation-set confidences; ``None`` if none."""
    if not confidences:
        return None
    return {
        "edges": list(CONFIDENCE_EDGES),
        "proportions": bin_proportions(confidences, CONFIDENCE_EDGES),
        "mean": statistics.fmean(confidences),
        "count": len(confidences),
    }


def feature_columns(
    rows: Sequence[FeatureRow], feature_names: Sequence[str] | None = None
) -> dict[str, list[float]]:
    """Rows (numbers, or texts) as one column per named feature."""
    if not rows:
        raise ValueError("a baseline needs at least one training row")
    numeric: list[tuple[float, ...]]
    if isinstance(rows[0], str):
        numeric = [text_features(str(row)) for row in rows]
        names: Sequence[str] = TEXT_FEATURES
    else:
        numeric = [tuple(float(v) for v in row) for row in rows]
        width = len(numeric[0])
        if any(len(row) != width for row in numeric):
            raise ValueError("every training row must have the same number of features")
        names = feature_names or [f"f{index}" for index in range(width)]
        if len(names) != width:
            raise ValueError(f"{len(names)} feature names for {width} features")
    return {name: [row[index] for row in numeric] for index, name in enumerate(names)}


def compute_baseline(
    features: Sequence[FeatureRow],
    confidences: Sequence[float] = (),
    feature_names: Sequence[str] | None = None,
    bins: int = DEFAULT_BINS,
) -> dict[str, Any]:
    """The baseline document: per-feature statistics and the confidence histogram.

    Parameters
    ----------
    features:
        Training rows as the endpoint receives them: sequences of numbers, or texts.
    confidences:
        The model's prediction confidence on the validation set (empty for regressors).
    feature_names:
        Names of the numeric features (``f0``, ``f1``, ... by default).
    """
    columns = feature_columns(features, feature_names)
    return {
        "format": BASELINE_FORMAT,
        "feature_names": list(columns),
        "features": {name: feature_baseline(values, bins) for name, values in columns.items()},
        "confidence": confidence_baseline([float(c) for c in confidences]),
    }


def validation_confidences(model: Any, instances: Sequence[FeatureRow], batch_size: int = 512) -> list[float]:
    """The model's top-class softmax probability per instance; ``[]`` for a regressor.

    ``model`` is a ``models.TaskModel`` (``encode`` + forward). torch is imported here, inside the
    training container, so importing this module stays standard-library only.
    """
    if getattr(model, "task_kind", None) == "regression" or not instances:
        return []
    import torch  # noqa: PLC0415 - only the training container calls this

    model.eval()
    confidences: list[float] = []
    with torch.inference_mode():
        for start in range(0, len(instances), batch_size):
            chunk = [
                row if isinstance(row, str) else list(row) for row in instances[start : start + batch_size]
            ]
            output = model(*model.encode(chunk)).detach().float().cpu()
            confidences.extend(float(c) for c in torch.softmax(output, dim=1).max(dim=1).values.tolist())
    return confidences


def write_baseline(
    model_dir: Path | str,
    features: Sequence[FeatureRow],
    confidences: Sequence[float] = (),
    feature_names: Sequence[str] | None = None,
) -> Path:
    """Write ``baseline.json`` into ``model_dir`` (it travels in ``model.tar.gz``). Returns its path."""
    document = compute_baseline(features, confidences, feature_names)
    path = Path(model_dir) / BASELINE_FILE
    path.write_text(json.dumps(document, indent=1, sort_keys=True) + "\n")
    return path


def read_baseline(source: Path | str | Mapping[str, Any]) -> dict[str, Any]:
    """A baseline document from a path or an already parsed mapping, its format checked."""
    document = dict(source) if isinstance(source, Mapping) else json.loads(Path(source).read_text())
    if document.get("format") != BASELINE_FORMAT:
        raise ValueError(f"not a {BASELINE_FORMAT} document (format={document.get('format')!r})")
    return document
