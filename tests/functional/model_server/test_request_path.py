"""The request path around the batcher: a request that outlives --timeout gets a JSON 504, and an
artifact whose input_fn is slow has it run off the event loop, so the server keeps answering."""

from __future__ import annotations

import json
import textwrap
import threading
from pathlib import Path

import pytest

from .conftest import WAIT_S, Reply, running_server

SLOW_INPUT_INFERENCE = textwrap.dedent(
    '''
    """input_fn sleeps (so it is not cheap) and is held while $MS_TEST_INPUT_GATE exists."""
    import json
    import os
    import time

    import torch

    def model_fn(model_dir):
        return "double"

    def input_fn(body, content_type):
        time.sleep(0.05)
        path = os.environ.get("MS_TEST_INPUT_GATE")
        while path and os.path.exists(path):
            time.sleep(0.005)
        return torch.tensor(json.loads(body), dtype=torch.float32)

    def predict_fn(data, model):
        return data * 2
    '''
)


@pytest.fixture(scope="module")
def slow_input_artifact(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("slow-input")
    (root / "code").mkdir()
    (root / "code" / "inference.py").write_text(SLOW_INPUT_INFERENCE)
    return root


def test_a_request_past_the_timeout_gets_a_json_504_and_the_server_keeps_serving(gated_artifact, tmp_path):
    gate = tmp_path / "gate"
    with running_server(
        gated_artifact, "--timeout", "0.5", log_dir=tmp_path, MS_TEST_GATE=str(gate)
    ) as server:
        server.wait_ready()
        # GIVEN a forward pass held past the request timeout
        server.close_gate()
        # WHEN a request waits for it
        reply = server.invoke("[[1.0]]", **{"X-Request-Id": "slow-1"})
        # THEN it gets a 504 with a JSON error naming the request
        assert reply.status == 504, reply.body
        assert reply.json()["error"]["code"] == "timeout"
        assert reply.json()["error"]["request_id"] == "slow-1"
        # AND once the model is free again, the server answers as before
        server.open_gate()
        assert server.invoke("[[2.0]]").json() == [[5.0]]
        assert server.metrics()["responses_by_status"]["504"] == 1


def test_a_slow_input_fn_runs_off_the_event_loop(slow_input_artifact, tmp_path):
    gate = tmp_path / "input-gate"
    with running_server(slow_input_artifact, log_dir=tmp_path, MS_TEST_INPUT_GATE=str(gate)) as server:
        server.wait_ready()
        # GIVEN the server has seen that this input_fn is not cheap
        for value in range(3):
            assert server.invoke(f"[[{value}.0]]").json() == [[2.0 * value]]
        # WHEN a request is held inside input_fn
        gate.touch()
        replies: list[Reply] = []
        caller = threading.Thread(target=lambda: replies.append(server.invoke("[[4.0]]")), daemon=True)
        caller.start()
        # THEN /metrics and /ping still answer meanwhile (the event loop is free) and show it preparing
        server.wait_until(lambda: server.metrics()["preparing"] == 1, "a request inside input_fn")
        assert server.ping_status() == 200
        # AND it gets its answer once input_fn returns
        gate.unlink()
        caller.join(WAIT_S)
        assert [r.status for r in replies] == [200]
        assert json.loads(replies[0].body) == [[8.0]]
