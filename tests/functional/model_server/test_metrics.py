"""GET /metrics over real HTTP: Prometheus text summed over every worker, this worker's JSON on
request, the private multiprocess folder, and the CloudWatch EMF lines on stdout.

Every request goes on a fresh connection, so SO_REUSEPORT spreads them over the workers; the
Prometheus counts must add up whichever worker answers a scrape. Other workers publish within a
second, so a test waits (bounded) for the totals rather than sleeping.
"""

from __future__ import annotations

import json
import os
import signal
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from .conftest import Server, running_server

GOOD = json.dumps({"inputs": [[0.1, 0.2, 0.3, 0.4]]})
GOOD_REQUESTS = 24
REFUSED_REQUESTS = 6  # text/plain: the artifact's input_fn answers 415


def scrape(server: Server) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    """``{sample name: {sorted labels: value}}`` of one Prometheus scrape."""
    reply = server.request("GET", "/metrics")
    assert reply.status == 200
    assert reply.headers["content-type"].startswith("text/plain")
    samples: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for family in text_string_to_metric_families(reply.body.decode()):
        for sample in family.samples:
            samples.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return samples


def value(samples: dict[str, Any], name: str, **labels: str) -> float:
    return float(samples.get(name, {}).get(tuple(sorted(labels.items())), 0.0))


def requests_counted(server: Server) -> float:
    return sum(scrape(server).get("model_server_requests_total", {}).values())


def send_traffic(server: Server) -> None:
    for _ in range(GOOD_REQUESTS):
        assert server.invoke(GOOD).status == 200
    for _ in range(REFUSED_REQUESTS):
        assert server.invoke("hello", content_type="text/plain").status == 415


@pytest.fixture(scope="module")
def two_workers(mlp_artifact: Path, server_logs: Path) -> Iterator[Server]:
    with running_server(mlp_artifact, "--workers", "2", log_dir=server_logs) as server:
        server.wait_ready()
        _json_views(server, 2)  # both listen: the traffic reaches both
        send_traffic(server)
        yield server


def test_every_scrape_counts_the_requests_of_all_workers(two_workers: Server) -> None:
    # GIVEN 30 requests spread over two workers
    total = GOOD_REQUESTS + REFUSED_REQUESTS
    two_workers.wait_until(lambda: requests_counted(two_workers) == total, "all requests counted")
    # AND both workers answered some of them (each one's JSON is its own view)
    per_worker = _json_views(two_workers, 2)
    assert sum(view["requests"] for view in per_worker.values()) == total
    assert all(0 < view["requests"] < total for view in per_worker.values())

    # WHEN Prometheus scrapes several times, whichever worker answers
    for _ in range(6):
        samples = scrape(two_workers)
        # THEN every scrape counts every request, by status, and errors by kind
        assert value(samples, "model_server_requests_total", status="200") == GOOD_REQUESTS
        assert value(samples, "model_server_requests_total", status="415") == REFUSED_REQUESTS
        assert value(samples, "model_server_errors_total", kind="client") == REFUSED_REQUESTS
        assert value(samples, "model_server_errors_total", kind="server") == 0
        assert value(samples, "model_server_request_duration_seconds_count") == total
        assert value(samples, "model_server_request_duration_seconds_bucket", le="+Inf") == total
        # AND every answered request went through exactly one forward pass
        assert value(samples, "model_server_batch_requests_sum") == GOOD_REQUESTS
        assert value(samples, "model_server_batch_rows_sum") == GOOD_REQUESTS  # one row each
        passes = value(samples, "model_server_forward_duration_seconds_count")
        assert 1 <= passes == value(samples, "model_server_batch_requests_count")
        # AND the gauges cover both live workers
        assert value(samples, "model_server_workers") == 2
        assert value(samples, "model_server_ready") == 1
        assert value(samples, "model_server_in_flight_requests") == 0
        assert value(samples, "model_server_model_load_seconds") > 0


def test_json_is_this_workers_view_on_request(two_workers: Server) -> None:
    # WHEN /metrics is asked for JSON
    reply = two_workers.request("GET", "/metrics", headers={"Accept": "application/json"})
    # THEN it is the answering worker's own counters, as before
    assert reply.status == 200 and reply.headers["content-type"] == "application/json"
    view = reply.json()
    assert view["worker_pid"] > 0 and view["ready"] is True
    assert view["requests"] == sum(view["responses_by_status"].values())
    assert set(view["responses_by_status"]) <= {"200", "415"}


def _json_views(server: Server, workers: int) -> dict[int, dict[str, Any]]:
    views: dict[int, dict[str, Any]] = {}
    server.wait_until(
        lambda: views.update({(view := server.metrics())["worker_pid"]: view}) or len(views) >= workers,
        f"a JSON view from each of {workers} workers",
    )
    return views


def test_a_lone_worker_keeps_its_files_private_and_removes_them_and_prints_emf(
    mlp_artifact: Path, server_logs: Path, tmp_path: Path
) -> None:
    # GIVEN one worker with CloudWatch EMF lines on, its temporary files under our own folder
    env = {"TMPDIR": str(tmp_path), "ENDPOINT_NAME": "churn-endpoint", "VARIANT_NAME": "primary"}
    with running_server(mlp_artifact, "--emf-interval", "60", log_dir=server_logs, **env) as server:
        server.wait_ready()
        send_traffic(server)
        # THEN Prometheus text counts its requests as it does for several workers
        assert requests_counted(server) == GOOD_REQUESTS + REFUSED_REQUESTS
        # AND its multiprocess folder is private to the server's user and holds the metric files
        (folder,) = tmp_path.glob("model-server-metrics-*")
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700
        assert any(folder.glob("*.db"))

        # WHEN it is stopped
        assert server.terminate() == 0

    # THEN the folder is gone
    assert not folder.exists()
    # AND its last EMF line on stdout accounts for every request, with the endpoint's dimensions
    lines = [json.loads(line) for line in server.log().splitlines() if line.startswith('{"_aws"')]
    assert lines, server.log()
    assert sum(line["Requests"] for line in lines) == GOOD_REQUESTS + REFUSED_REQUESTS
    assert sum(line["ClientErrors"] for line in lines) == REFUSED_REQUESTS
    assert {(line["EndpointName"], line["VariantName"]) for line in lines} == {("churn-endpoint", "primary")}
    directive = lines[-1]["_aws"]["CloudWatchMetrics"][0]
    assert directive["Namespace"] == "ml-platform"
    assert directive["Dimensions"] == [["EndpointName", "VariantName"]]


def _answered_by_new_worker(server: Server, known: object) -> bool:
    """Whether a worker not in ``known`` answered; a connection the killed worker's socket had
    queued is reset by the kernel, which only means: not yet."""
    try:
        return server.metrics()["worker_pid"] not in known  # type: ignore[operator]
    except ConnectionError:
        return False


def test_a_replaced_worker_keeps_its_counts_and_drops_its_live_gauges(
    mlp_artifact: Path, server_logs: Path
) -> None:
    # GIVEN two workers whose requests are all published
    with running_server(mlp_artifact, "--workers", "2", log_dir=server_logs) as server:
        server.wait_ready()
        first = _json_views(server, 2)
        send_traffic(server)
        total = GOOD_REQUESTS + REFUSED_REQUESTS
        server.wait_until(lambda: requests_counted(server) == total, "all requests counted")

        # WHEN one worker is killed and the server starts another
        victim = next(iter(first))
        os.kill(victim, signal.SIGKILL)
        server.wait_until(lambda: _answered_by_new_worker(server, first), "a replacement worker")
        server.wait_until(lambda: value(scrape(server), "model_server_ready") == 1, "both workers ready")

        # THEN the dead worker's requests still count, and it no longer counts as a live worker
        samples = scrape(server)
        assert sum(samples["model_server_requests_total"].values()) == total
        assert value(samples, "model_server_workers") == 2
