"""The model server's metrics in one process: what a worker publishes to Prometheus, the CloudWatch
EMF lines it prints, the quantiles they carry, and the settings that switch EMF on.

No ``PROMETHEUS_MULTIPROC_DIR`` here, so prometheus_client keeps values in memory and the
worker's own registry is scraped; the sum over workers is tested on real servers
(tests/functional/model_server/test_metrics.py).
"""

from __future__ import annotations

import asyncio
import json
import math
import subprocess
import sys
from typing import Any

import pytest
import torch
from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from handlers.common.contracts import METRICS_NAMESPACE
from handlers.serving import server as model_server
from handlers.serving.batching import Batcher, BatchInfo
from handlers.serving.metrics import (
    LATENCY_BUCKETS,
    MULTIPROC_DIR_ENV,
    ServerMetrics,
    quantile,
    wants_json,
)

ENDPOINT = {"ENDPOINT_NAME": "churn-prod", "VARIANT_NAME": "primary", "MODEL_VERSION": "7"}
# EMF units CloudWatch accepts (the ones these lines use are a subset).
EMF_UNITS = {"Count", "Milliseconds", "Seconds", "Percent", "None"}


def samples(text: bytes) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    found: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for family in text_string_to_metric_families(text.decode()):
        for sample in family.samples:
            found.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return found


def answer(metrics: ServerMetrics, status: int) -> None:
    """One invocation through the hot-path calls, as the app makes them."""
    started = metrics.request_started()
    metrics.count(status)
    metrics.request_finished(started)


def new_metrics(**kwargs: Any) -> tuple[ServerMetrics, list[str]]:
    lines: list[str] = []
    metrics = ServerMetrics(lambda: True, environ=ENDPOINT, emit=lines.append, **kwargs)
    return metrics, lines


# --- Prometheus ------------------------------------------------------------------------------------


def test_published_counts_by_status_and_error_kind() -> None:
    # GIVEN answers 200 x3, 404, 415, 503
    metrics, _ = new_metrics()
    for status in (200, 200, 200, 404, 415, 503):
        answer(metrics, status)
    # WHEN scraped
    found = samples(metrics.exposition())
    # THEN each status is counted, 4xx as client errors and 5xx as server errors
    by_status = {dict(labels)["status"]: n for labels, n in found["model_server_requests_total"].items()}
    assert by_status == {"200": 3, "404": 1, "415": 1, "503": 1}
    assert found["model_server_errors_total"] == {(("kind", "client"),): 2, (("kind", "server"),): 1}
    assert found["model_server_request_duration_seconds_count"][()] == 6
    assert found["model_server_in_flight_requests"][()] == 0


def test_publishing_twice_adds_only_what_changed() -> None:
    # GIVEN one published answer
    metrics, _ = new_metrics()
    answer(metrics, 200)
    metrics.publish()
    # WHEN another arrives and it is scraped (which publishes again)
    answer(metrics, 200)
    found = samples(metrics.exposition())
    # THEN two, not three
    assert found["model_server_requests_total"][(("status", "200"),)] == 2
    assert found["model_server_request_duration_seconds_count"][()] == 2


def test_a_published_tally_reads_like_a_histogram_observed_value_by_value() -> None:
    # GIVEN latencies across every bucket, one above the last bound
    observed = [0.0004, 0.001, 0.0015, 0.003, 0.04, 0.04, 0.7, 3.0, 9.9, 42.0]
    reference = Histogram(
        "model_server_request_duration_seconds", "x", buckets=LATENCY_BUCKETS, registry=CollectorRegistry()
    )
    metrics, _ = new_metrics()
    for seconds in observed:
        reference.observe(seconds)
        metrics.latency.observe(seconds)
    # WHEN the worker publishes its tally in one go
    ours = samples(metrics.exposition())
    registry = CollectorRegistry()
    registry.register(reference)
    theirs = samples(generate_latest(registry))
    # THEN the buckets, count and sum are those of prometheus_client's own observe
    for name in ("_bucket", "_count"):
        key = f"model_server_request_duration_seconds{name}"
        assert ours[key] == theirs[key]
    key = "model_server_request_duration_seconds_sum"
    assert ours[key][()] == pytest.approx(theirs[key][()])


def test_forward_passes_recorded_by_the_batcher_are_published() -> None:
    # GIVEN a real batcher whose passes the metrics watch
    batcher = Batcher(lambda data: data * 2, max_batch_size=8, max_batch_delay_s=0.0)
    metrics, _ = new_metrics()
    metrics.model_loaded(0.25, batcher.metrics.passes, batcher.queued)
    loop = asyncio.new_event_loop()
    try:
        # WHEN two requests of 3 and 1 rows are answered
        for rows in (3, 1):
            future: asyncio.Future[tuple[Any, BatchInfo]] = loop.create_future()
            batcher.submit(lambda rows=rows: torch.ones(rows, 2), future, loop)
            loop.run_until_complete(asyncio.wait_for(future, 10))
    finally:
        batcher.close(timeout=10)
        loop.close()
    found = samples(metrics.exposition())
    # THEN the rows and requests of every pass, its seconds, and the load time are published
    assert found["model_server_batch_rows_sum"][()] == 4
    assert found["model_server_batch_requests_sum"][()] == 2
    passes = found["model_server_batch_requests_count"][()]
    assert passes == found["model_server_forward_duration_seconds_count"][()] == 2
    assert found["model_server_model_load_seconds"][()] == 0.25
    assert found["model_server_queued_requests"][()] == 0


def test_ready_follows_the_workers_state() -> None:
    state = {"ready": False}
    metrics = ServerMetrics(lambda: state["ready"], environ={})
    assert samples(metrics.exposition())["model_server_ready"][()] == 0
    state["ready"] = True
    assert samples(metrics.exposition())["model_server_ready"][()] == 1


def test_metrics_refuse_a_multiprocess_folder_set_after_prometheus_client_was_imported(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    # GIVEN prometheus_client already imported in memory mode (as in this process)
    monkeypatch.setenv(MULTIPROC_DIR_ENV, str(tmp_path))
    # THEN the worker's metrics refuse to start rather than count each worker alone
    with pytest.raises(RuntimeError, match=MULTIPROC_DIR_ENV):
        ServerMetrics(lambda: True)


def test_the_server_entry_point_does_not_import_prometheus_client() -> None:
    # prometheus_client reads its folder once, at import: the supervisor must set it first.
    code = "import sys, handlers.serving.server; print('prometheus_client' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"


@pytest.mark.parametrize(
    ("accept", "json_view"),
    [
        ("application/json", True),
        ("Application/JSON; q=1", True),
        ("application/json, text/plain", True),
        ("text/plain, application/json", False),
        ("text/plain;version=0.0.4", False),
        ("*/*", False),
        ("", False),
    ],
)
def test_json_only_when_asked_for_first(accept: str, json_view: bool) -> None:
    assert wants_json(accept) is json_view


# --- CloudWatch EMF --------------------------------------------------------------------------------


def assert_valid_emf(document: dict[str, Any]) -> None:
    """The structure CloudWatch Logs extracts metrics from (the EMF specification)."""
    meta = document["_aws"]
    assert isinstance(meta["Timestamp"], int) and meta["Timestamp"] > 0
    (directive,) = meta["CloudWatchMetrics"]
    assert directive["Namespace"] == METRICS_NAMESPACE
    for dimension_set in directive["Dimensions"]:
        assert 1 <= len(dimension_set) <= 30
        assert all(isinstance(document[name], str) and document[name] for name in dimension_set)
    assert 1 <= len(directive["Metrics"]) <= 100
    for metric in directive["Metrics"]:
        assert set(metric) <= {"Name", "Unit", "StorageResolution"} and metric["Unit"] in EMF_UNITS
        figure = document[metric["Name"]]
        assert isinstance(figure, int | float) and math.isfinite(figure)


def test_an_emf_line_is_a_valid_document_of_what_changed() -> None:
    # GIVEN answers and one forward pass of 3 requests, 5 rows
    metrics, lines = new_metrics(emf_interval_s=60)
    for status in (200, 200, 200, 400, 500):
        answer(metrics, status)
    metrics.passes.record(3, 5, 0.004)
    # WHEN two lines are printed, the second after one more answer
    metrics.emit_emf()
    answer(metrics, 200)
    metrics.emit_emf()
    first, second = (json.loads(line) for line in lines)
    # THEN both are valid EMF documents with the endpoint's dimensions
    for document in (first, second):
        assert_valid_emf(document)
        assert (document["EndpointName"], document["VariantName"]) == ("churn-prod", "primary")
        assert document["ModelVersion"] == "7"
    # AND each holds what changed since the one before
    assert (first["Requests"], first["ClientErrors"], first["ServerErrors"]) == (5, 1, 1)
    assert (first["ForwardPasses"], first["MeanBatchRequests"], first["MeanBatchRows"]) == (1, 3, 5)
    assert 2 <= first["ForwardLatencyP50"] <= 5  # ms: 4 ms lies in the (2, 5] ms bucket
    assert first["ServerLatencyP50"] <= first["ServerLatencyP99"]
    assert (second["Requests"], second["ClientErrors"], second["ForwardPasses"]) == (1, 0, 0)
    # AND figures of an empty interval are left out, not reported as zero latency
    assert "ForwardLatencyP99" not in second and "MeanBatchRows" not in second


def test_without_the_deployers_variables_the_dimensions_say_unknown() -> None:
    metrics = ServerMetrics(lambda: True, environ={})
    document = metrics.emf_document()
    assert_valid_emf(document)
    assert (document["EndpointName"], document["VariantName"]) == ("unknown", "unknown")
    assert "ModelVersion" not in document


def test_shutdown_prints_the_last_line_only_when_emf_is_on() -> None:
    on, on_lines = new_metrics(emf_interval_s=60)
    off, off_lines = new_metrics()
    for metrics in (on, off):
        answer(metrics, 200)
        metrics.close()
    assert [json.loads(line)["Requests"] for line in on_lines] == [1]
    assert off_lines == []


@pytest.mark.parametrize(
    ("counts", "q", "expected"),
    [
        ([4, 0, 0], 0.5, 0.5),  # all in (0, 1]: the middle of the bucket
        ([0, 10, 0], 0.99, 1.99),  # all in (1, 2]
        ([5, 5, 0], 0.5, 1.0),  # exactly the first half
        ([0, 0, 3], 0.99, 2.0),  # above the last bound: the last bound
        ([0, 0, 0], 0.5, None),
    ],
)
def test_quantile_interpolates_within_its_bucket(counts: list[int], q: float, expected: float | None) -> None:
    result = quantile((1.0, 2.0), counts, q)
    assert result == (pytest.approx(expected) if expected is not None else None)


# --- the setting -----------------------------------------------------------------------------------


def _emf_interval(argv: list[str], env: dict[str, str]) -> float:
    return model_server.resolve_settings(model_server.parse_args(argv), env).emf_interval_s


def test_emf_is_on_in_the_container_and_off_elsewhere_unless_set() -> None:
    # GIVEN nothing set THEN a container started as SageMaker starts it prints a line a minute
    assert _emf_interval(["serve"], {}) == 60
    # AND a server started otherwise (local mode, tests) prints none
    assert _emf_interval([], {}) == 0
    # GIVEN the variable THEN it wins over the default; GIVEN the argument THEN it wins over both
    assert _emf_interval(["serve"], {model_server.EMF_INTERVAL: "0"}) == 0
    assert _emf_interval([], {model_server.EMF_INTERVAL: "15"}) == 15
    assert _emf_interval(["--emf-interval", "5"], {model_server.EMF_INTERVAL: "15"}) == 5


@pytest.mark.parametrize(
    ("argv", "env"), [(["--emf-interval", "-1"], {}), ([], {"MLP_EMF_INTERVAL_S": "often"})]
)
def test_a_bad_emf_interval_is_refused_naming_the_setting(argv: list[str], env: dict[str, str]) -> None:
    with pytest.raises(model_server.SettingsError, match="MLP_EMF_INTERVAL_S"):
        model_server.resolve_settings(model_server.parse_args(argv), env)
