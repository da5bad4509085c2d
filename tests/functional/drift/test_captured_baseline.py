"""A version without baseline.json: the monitor builds one from the first captured requests, stores
it, and judges later traffic against that same one; a supplied baseline is used as it is."""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import pytest

from emulator.capture import Invocation, capture_key, capture_line
from handlers.common.s3_uri import S3Uri
from tests.functional.drift.conftest import (
    ARTIFACTS,
    BASELINE_URI,
    CAPTURE_URI,
    ENDPOINT,
    VARIANT,
    WINDOW_END,
    DriftWorld,
)

Run = Callable[..., dict[str, Any]]
SERVING_BASELINE = "serving/baseline.json"  # where the deployer publishes a version's (none here)
FIRST = 300  # BASELINE_REQUESTS: enough for ten PSI bins to be stable between like samples
LATER = 300
PER_FILE = 60  # ten minutes of requests: a file never spans two hours


def byo_request(rng: random.Random, age_mean: float, top: float) -> tuple[dict[str, Any], dict[str, Any]]:
    """A request in a model's own format (no input schema) and its answer with class probabilities."""
    body = {"customer": {"age": rng.gauss(age_mean, 5), "plan": "gold"}, "usage": [rng.uniform(0, 1), 3]}
    answer = {"probabilities": [[round(top, 4), round(1 - top, 4)]], "label": ["stay"]}
    return body, answer


def capture_byo(
    world: DriftWorld, count: int, start: datetime, *, age_mean: float = 40.0, top: float = 0.9, seed: int = 1
) -> None:
    """``count`` captured requests ten seconds apart from ``start``, as SageMaker writes them (one
    file per ``PER_FILE`` requests, in the hour folder of its first)."""
    rng = random.Random(seed)
    location = S3Uri.parse(CAPTURE_URI)
    files: dict[str, list[str]] = {}
    key, file_hour = "", -1
    for number in range(count):
        when = start + timedelta(seconds=10 * number)
        body, answer = byo_request(rng, age_mean, min(1.0, max(0.0, rng.gauss(top, 0.03))))
        invocation = Invocation(
            endpoint=ENDPOINT,
            variant=VARIANT,
            input_body=json.dumps(body).encode(),
            input_type="application/json",
            output_body=json.dumps(answer).encode(),
            output_type="application/json",
            at=when,
        )
        if number % PER_FILE == 0 or when.hour != file_hour:
            key, file_hour = capture_key(location.key, ENDPOINT, VARIANT, when), when.hour
        files.setdefault(key, []).append(capture_line(invocation))
    for name, lines in files.items():
        world.s3.put_object(Bucket=location.bucket, Key=name, Body=("\n".join(lines) + "\n").encode())


def stored_baseline(world: DriftWorld) -> dict[str, Any] | None:
    try:
        return json.loads(world.s3.get_object(Bucket=ARTIFACTS, Key=SERVING_BASELINE)["Body"].read())
    except world.s3.exceptions.NoSuchKey:
        return None


@pytest.fixture
def without_baseline(world: DriftWorld, monkeypatch: pytest.MonkeyPatch) -> DriftWorld:
    monkeypatch.setenv("BASELINE_S3_URI", f"s3://{ARTIFACTS}/{SERVING_BASELINE}")
    monkeypatch.setenv("BASELINE_REQUESTS", str(FIRST))
    monkeypatch.setenv("MIN_RECORDS", "30")
    return world


def variant_of(report: dict[str, Any]) -> dict[str, Any]:
    (variant,) = report["variants"]
    return variant


def test_the_first_requests_become_the_baseline_and_later_checks_use_it(
    without_baseline: DriftWorld, run_monitor: Run
) -> None:
    world = without_baseline
    # GIVEN a model without baseline.json, and its first FIRST requests captured
    capture_byo(world, FIRST, WINDOW_END - timedelta(hours=3))

    # WHEN the monitor runs
    first = run_monitor()

    # THEN it built a baseline from them: each numeric leaf by path, and the top probability
    built = stored_baseline(world)
    assert built is not None and built["source"] == "captured"
    assert built["feature_names"] == ["customer.age", "usage[0]", "usage[1]"]
    assert built["built_from"]["requests"] == FIRST and built["built_from"]["instances"] == FIRST
    assert 0.85 < built["confidence"]["mean"] < 0.95
    assert 35 < built["features"]["customer.age"]["mean"] < 45
    # AND it judged nothing yet: the requests it was built from are not compared with themselves
    assert first["status"] == "no-data" and variant_of(first)["instances"] == 0

    # WHEN later traffic like the first arrives, and the monitor runs again hours later
    later = WINDOW_END + timedelta(hours=1)
    capture_byo(world, LATER, later, seed=2)
    second = run_monitor(time=(WINDOW_END + timedelta(hours=3)).isoformat())

    # THEN it compared those with the same stored baseline: no drift, the baseline unchanged
    assert second["status"] == "ok", second["reason"]
    assert variant_of(second)["instances"] == LATER
    assert {f["name"] for f in variant_of(second)["features"]} == {
        "customer.age",
        "usage[0]",
        "usage[1]",
        "confidence",
    }
    assert stored_baseline(world) == built


def test_drifted_inputs_and_falling_confidence_are_found_against_the_built_baseline(
    without_baseline: DriftWorld, run_monitor: Run
) -> None:
    world = without_baseline
    # GIVEN a baseline built from the first requests
    capture_byo(world, FIRST, WINDOW_END - timedelta(hours=3))
    run_monitor()
    # WHEN older customers arrive and the model grows unsure of them
    capture_byo(world, LATER, WINDOW_END + timedelta(hours=1), age_mean=70.0, top=0.6, seed=3)
    report = run_monitor(time=(WINDOW_END + timedelta(hours=3)).isoformat())
    # THEN both drifts are named, and retraining is started and alerted
    variant = variant_of(report)
    assert report["status"] == "retrain"
    assert {"customer.age", "confidence"} <= set(variant["drifted_features"])
    assert "usage[0]" not in variant["drifted_features"]
    assert variant["confidence_status"] == "retrain"
    assert len(world.executions()) == 1 and world.alerts()


def test_until_there_are_enough_requests_no_baseline_is_built(
    without_baseline: DriftWorld, run_monitor: Run
) -> None:
    # GIVEN fewer captured requests than a baseline needs
    capture_byo(without_baseline, FIRST - 1, WINDOW_END - timedelta(hours=3))
    # WHEN the monitor runs / THEN it says how many it has, stores nothing, and starts nothing
    report = run_monitor()
    assert report["status"] == "no-data"
    assert f"{FIRST - 1} of the {FIRST}" in variant_of(report)["reason"]
    assert stored_baseline(without_baseline) is None
    assert without_baseline.executions() == []


def test_a_supplied_baseline_is_used_and_never_replaced(world: DriftWorld, run_monitor: Run) -> None:
    # GIVEN the version's own baseline.json (the training baseline of conftest.py)
    location = S3Uri.parse(BASELINE_URI)
    supplied = world.s3.get_object(Bucket=location.bucket, Key=location.key)["Body"].read()
    # WHEN the monitor runs over traffic in another format than that baseline's
    capture_byo(world, FIRST, WINDOW_END - timedelta(hours=3))
    report = run_monitor()
    # THEN that baseline decides (these instances do not fit its features), and it is left as it was
    assert variant_of(report)["skipped_instances"] == FIRST and report["status"] == "no-data"
    assert world.s3.get_object(Bucket=location.bucket, Key=location.key)["Body"].read() == supplied
    assert stored_baseline(world) is None
