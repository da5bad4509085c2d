"""The baseline built from captured requests: features found by path, statistics identical to the
training baseline's (the Lambda cannot ship training_jobs), and nothing built from nothing."""

from __future__ import annotations

import random
from datetime import UTC, datetime

import pytest

from handlers.monitoring.capture import CapturedRequest, output_confidences
from handlers.monitoring.captured_baseline import (
    build_captured_baseline,
    confidence_baseline,
    feature_baseline,
    instance_features,
    paths_row,
)
from training_jobs import baselines


@pytest.mark.parametrize(
    ("instance", "features"),
    [
        ({"age": 3, "plan": "gold", "flag": True}, {"age": 3.0}),
        ([1, [2, 3]], {"[0]": 1.0, "[1][0]": 2.0, "[1][1]": 3.0}),
        ({"x": {"y": [4.5]}}, {"x.y[0]": 4.5}),
        (7, {"value": 7.0}),
        ("two words", {"text_chars": 9.0, "text_words": 2.0}),
        (None, {}),
    ],
)
def test_numeric_leaves_are_named_by_their_path(instance: object, features: dict[str, float]) -> None:
    assert instance_features(instance) == features


def test_a_row_needs_every_baseline_feature() -> None:
    assert paths_row({"a": 1, "b": 2}, ["b", "a"]) == [2.0, 1.0]
    assert paths_row({"a": 1}, ["a", "b"]) is None


def test_statistics_match_the_training_baselines_number_for_number() -> None:
    rng = random.Random(3)
    values = [rng.gauss(0, 1) for _ in range(1000)]
    confidences = [rng.uniform(0.5, 1) for _ in range(300)]
    assert feature_baseline(values) == baselines.feature_baseline(values)
    expected = baselines.confidence_baseline(confidences)
    assert expected is not None
    assert {k: v for k, v in (confidence_baseline(confidences) or {}).items() if k != "sample"} == expected


def test_only_features_every_request_carries_are_kept() -> None:
    at = datetime(2024, 6, 1, tzinfo=UTC)
    requests = [
        CapturedRequest(at, [{"a": 1.0, "b": 2.0}], [0.9]),
        CapturedRequest(at, [{"a": 2.0}], [0.8]),
    ]
    baseline = build_captured_baseline(requests)
    assert baseline is not None and baseline["feature_names"] == ["a"]
    assert baseline["confidence"]["count"] == 2 and baseline["built_from"]["last"] == at.isoformat()


def test_nothing_numeric_and_no_confidence_builds_nothing() -> None:
    assert build_captured_baseline([CapturedRequest(None, [{"name": "x"}], [])]) is None


@pytest.mark.parametrize(
    ("answer", "confidences"),
    [
        ('{"predictions": [{"label": 1, "confidence": 0.7}]}', [0.7]),
        ('{"predictions": [1, 0], "confidence": [0.6, null]}', [0.6]),
        ('{"probabilities": [[0.2, 0.8], [0.9, 0.1]]}', [0.8, 0.9]),
        ('{"predictions": [{"probabilities": [0.3, 0.7]}]}', [0.7]),
        ('{"predictions": [{"value": 151.2}]}', []),
        ("[0.1, 0.9]", []),
    ],
)
def test_confidence_is_read_from_the_common_answer_shapes(answer: str, confidences: list[float]) -> None:
    assert output_confidences("application/json", answer) == confidences
