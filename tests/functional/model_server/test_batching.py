"""Dynamic batching over real HTTP: concurrent callers share a forward pass and each gets the
answer for its own input; a request that breaks a batch fails alone; --no-batching does not batch.

The gated model holds its forward pass while a gate file exists, so a test can queue requests
behind a running batch and watch the queue on /metrics: no sleeps, no timing assertions.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from .conftest import WAIT_S, Reply, Server, running_server


@pytest.fixture(scope="module")
def batching_server(gated_artifact: Path, server_logs: Path) -> Iterator[Server]:
    gate = server_logs / "gate-batching"
    args = ("--max-batch-size", "32")
    with running_server(gated_artifact, *args, log_dir=server_logs, MS_TEST_GATE=str(gate)) as server:
        yield server.wait_ready()


class Callers:
    """Requests sent from their own threads; ``replies[i]`` is caller i's answer."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.replies: dict[int, Reply] = {}
        self.threads: list[threading.Thread] = []

    def send(self, index: int, body: str) -> None:
        def call() -> None:
            self.replies[index] = self.server.invoke(body)

        thread = threading.Thread(target=call, daemon=True)
        thread.start()
        self.threads.append(thread)

    def join(self) -> dict[int, Reply]:
        for thread in self.threads:
            thread.join(WAIT_S)
        assert not any(t.is_alive() for t in self.threads), "a caller never got an answer"
        return self.replies


def _hold_a_forward_pass(server: Server, callers: Callers) -> None:
    """Close the gate and get one request running inside predict_fn, so others queue behind it."""
    server.close_gate()
    callers.send(-1, "[[1000.0]]")
    server.wait_until(lambda: _depth(server) == (0, 0, 1), "the first request to be inside predict_fn")


def _depth(server: Server) -> tuple[int, int, int]:
    metrics = server.metrics()
    return metrics["preparing"], metrics["queued"], metrics["model_busy"]


def test_concurrent_callers_share_forward_passes_and_each_gets_its_own_answer(batching_server):
    server = batching_server
    before = server.metrics()
    callers = Callers(server)
    # GIVEN a forward pass in progress
    _hold_a_forward_pass(server, callers)
    # WHEN 31 more callers send distinct inputs and all of them are queued
    for i in range(31):
        callers.send(i, f"[[{i}.0, {i}.5]]")
    server.wait_until(lambda: _depth(server) == (0, 31, 1), "31 queued requests")
    server.open_gate()
    replies = callers.join()
    # THEN every caller got 2x + 1 of ITS input
    assert replies[-1].json() == [[2001.0]]
    for i in range(31):
        assert replies[i].status == 200, replies[i].body
        assert replies[i].json() == [[2 * i + 1.0, 2 * i + 2.0]], i
    # AND the 31 queued requests shared one forward pass, which the headers and /metrics show
    assert {replies[i].headers["x-batch-size"] for i in range(31)} == {"31"}
    assert replies[-1].headers["x-batch-size"] == "1"
    after = server.metrics()
    assert after["batches"] - before["batches"] == 2
    assert after["batched_requests"] - before["batched_requests"] == 32
    assert after["rows"] - before["rows"] == 32
    assert after["largest_batch"] == 31
    assert after["batch_size_histogram"]["31"] >= 1
    assert after["mean_batch_size"] > 1


def test_batches_never_exceed_max_batch_size_rows(batching_server):
    server = batching_server
    callers = Callers(server)
    _hold_a_forward_pass(server, callers)
    # GIVEN 3 queued requests of 12 rows each behind a running pass (36 rows > 32)
    for i in range(3):
        callers.send(i, str([[float(i)] * 2] * 12))
    server.wait_until(lambda: _depth(server) == (0, 3, 1), "3 queued requests")
    server.open_gate()
    replies = callers.join()
    # THEN two of them shared a pass (24 rows) and the third ran next, each with its own rows back
    sizes = sorted(replies[i].headers["x-batch-size"] for i in range(3))
    assert sizes == ["1", "2", "2"]
    for i in range(3):
        assert replies[i].json() == [[2 * i + 1.0] * 2] * 12


def test_an_input_that_breaks_a_batch_fails_alone(batching_server):
    server = batching_server
    before = server.metrics()
    callers = Callers(server)
    # GIVEN 6 good requests and one whose value breaks predict_fn, queued into one batch
    _hold_a_forward_pass(server, callers)
    bodies = {i: f"[[{i}.0]]" for i in range(6)} | {6: "[[-1.0]]"}
    for i, body in bodies.items():
        callers.send(i, body)
    server.wait_until(lambda: _depth(server) == (0, 7, 1), "7 queued requests")
    # WHEN the batch runs (and fails as a whole)
    server.open_gate()
    replies = callers.join()
    # THEN only the bad request fails, with a JSON 500 and no internals; the others get their answers
    assert replies[6].status == 500
    assert replies[6].json()["error"]["code"] == "internal_error"
    assert "negative" not in replies[6].body.decode()
    for i in range(6):
        assert replies[i].status == 200, replies[i].body
        assert replies[i].json() == [[2 * i + 1.0]]
    after = server.metrics()
    assert after["retried_alone"] - before["retried_alone"] == 7
    assert after["responses_by_status"]["500"] - before["responses_by_status"].get("500", 0) == 1
    # AND the server keeps batching afterwards
    assert after["batching"] is True
    assert server.ping_status() == 200


def test_no_batching_runs_one_request_per_forward_pass(gated_artifact, tmp_path):
    gate = tmp_path / "gate"
    with running_server(gated_artifact, "--no-batching", log_dir=tmp_path, MS_TEST_GATE=str(gate)) as server:
        server.wait_ready()
        callers = Callers(server)
        # GIVEN 4 requests queued behind a running forward pass
        _hold_a_forward_pass(server, callers)
        for i in range(4):
            callers.send(i, f"[[{i}.0]]")
        server.wait_until(lambda: _depth(server) == (0, 4, 1), "4 queued requests")
        server.open_gate()
        replies = callers.join()
        # THEN each was its own forward pass, and each got its own answer
        for i in range(4):
            assert replies[i].json() == [[2 * i + 1.0]]
            assert replies[i].headers["x-batch-size"] == "1"
        metrics = server.metrics()
        assert metrics["batching"] is False
        assert metrics["batches"] == 5
        assert metrics["largest_batch"] == 1
