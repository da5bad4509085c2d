"""A drift baseline built from the first captured requests, for a model that came without one.

A model brought from elsewhere has no training baseline, and its requests need not follow any of
the platform's input kinds. So features are found in the traffic itself: every numeric leaf of an
instance, named by its path (``age``, ``inputs[2]``, ``image.size[0]``), that all of the first
``BASELINE_REQUESTS`` requests carry; a text instance gives ``text_chars`` / ``text_words`` as for
the built-in text models. The model's confidence (or top class probability) gets a baseline too
when its answers carry one. The document has the training baseline's format (``format``,
``feature_names``, ``features``, ``confidence``) plus ``source: "captured"`` and ``built_from``;
the statistics match ``training_jobs.baselines`` number for number (a test checks it: the Lambda
cannot ship that package).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterator, Sequence
from typing import Any

from handlers.common.contracts import BASELINE_FORMAT
from handlers.monitoring.capture import TEXT_FEATURES, CapturedRequest
from handlers.monitoring.stats import bin_proportions

CAPTURED_SOURCE = "captured"
DEFAULT_BINS = 10
SAMPLE_SIZE = 256  # order statistics kept per feature for the KS test
MAX_FEATURES = 100  # an image's pixels would give thousands: the first ones are kept
CONFIDENCE_EDGES = tuple(round(k / DEFAULT_BINS, 10) for k in range(1, DEFAULT_BINS))


def instance_features(instance: Any) -> dict[str, float]:
    """Every finite numeric leaf of ``instance`` by its path; a text gives its two length features."""
    if isinstance(instance, str):
        return {TEXT_FEATURES[0]: float(len(instance)), TEXT_FEATURES[1]: float(len(instance.split()))}
    return dict(_leaves(instance, ""))


def _leaves(value: Any, path: str) -> Iterator[tuple[str, float]]:
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _leaves(item, f"{path}.{key}" if path else str(key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _leaves(item, f"{path}[{index}]")
    elif isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        yield path or "value", float(value)


def paths_row(instance: Any, feature_names: Sequence[str]) -> list[float] | None:
    """``instance`` as a row of the named features; None when it lacks one of them."""
    features = instance_features(instance)
    if not all(name in features for name in feature_names):
        return None
    return [features[name] for name in feature_names]


def build_captured_baseline(requests: Sequence[CapturedRequest]) -> dict[str, Any] | None:
    """The baseline of ``requests`` (the first captured, in order); None when their instances share
    no numeric feature and carry no confidence (nothing to compare later traffic with)."""
    rows = [instance_features(instance) for request in requests for instance in request.instances]
    names = [name for name in (rows[0] if rows else {}) if all(name in row for row in rows)][:MAX_FEATURES]
    confidences = [c for request in requests for c in request.confidences]
    if not names and not confidences:
        return None
    times = [r.at.isoformat() for r in requests if r.at is not None]
    return {
        "format": BASELINE_FORMAT,
        "source": CAPTURED_SOURCE,
        "feature_names": names,
        "features": {name: feature_baseline([row[name] for row in rows]) for name in names},
        "confidence": confidence_baseline(confidences),
        "built_from": {
            "requests": len(requests),
            "instances": len(rows),
            "first": min(times, default=None),
            "last": max(times, default=None),
        },
    }


def feature_baseline(values: Sequence[float], bins: int = DEFAULT_BINS) -> dict[str, Any]:
    """Bins, proportions, mean, standard deviation, count and a KS sample of one feature."""
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
    """Ten fixed bins over [0, 1], mean and KS sample of the answers' confidences; None if none."""
    if not confidences:
        return None
    return {
        "edges": list(CONFIDENCE_EDGES),
        "proportions": bin_proportions(confidences, CONFIDENCE_EDGES),
        "mean": statistics.fmean(confidences),
        "count": len(confidences),
        "sample": order_sample(confidences),
    }


def quantile_edges(values: Sequence[float], bins: int = DEFAULT_BINS) -> list[float]:
    """The interior cut points of ``bins`` equal-frequency bins (ties merged, so maybe fewer)."""
    if len(values) < 2:  # noqa: PLR2004 - statistics.quantiles needs two points
        return [float(values[0])] if values else []
    return sorted({float(cut) for cut in statistics.quantiles(values, n=bins, method="inclusive")})


def order_sample(values: Sequence[float], size: int = SAMPLE_SIZE) -> list[float]:
    """``size`` evenly spaced order statistics of ``values`` (all of them when there are fewer)."""
    ordered = sorted(float(v) for v in values)
    if len(ordered) <= size:
        return ordered
    step = (len(ordered) - 1) / (size - 1)
    return [ordered[round(i * step)] for i in range(size)]
