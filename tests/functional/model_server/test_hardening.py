"""Bad input against the real server: huge integers, values beyond float32, deep nesting and
stalled clients get a documented JSON 4xx (or are closed), a model's NaN is a JSON 5xx, and /ping
stays healthy throughout."""

from __future__ import annotations

import json
import socket
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from handlers.common.contracts import MAX_BODY_BYTES, MAX_JSON_DEPTH
from handlers.serving import inference
from handlers.serving.server import DEFAULT_MAX_PAYLOAD_MB

from .conftest import DIGIT, Server, running_server

READ_TIMEOUT_S = 1.0
NAN_INFERENCE = textwrap.dedent(
    '''
    """predict_fn answers NaN for a row starting with 7; output_fn writes it with json.dumps."""
    import json
    import math

    def model_fn(model_dir):
        return "nan"

    def input_fn(body, content_type):
        return json.loads(body)

    def predict_fn(data, model):
        return [math.nan if row[0] == 7 else row[0] for row in data]

    def output_fn(prediction, accept):
        return json.dumps(prediction), "application/json"
    '''
)


@pytest.fixture(scope="module")
def digits_server(trained_archive: Path, server_logs: Path) -> Iterator[Server]:
    with running_server(
        trained_archive, "--read-timeout", str(READ_TIMEOUT_S), log_dir=server_logs
    ) as server:
        yield server.wait_ready()


@pytest.fixture(scope="module")
def default_server(mlp_artifact: Path, server_logs: Path) -> Iterator[Server]:
    with running_server(mlp_artifact, log_dir=server_logs) as server:
        yield server.wait_ready()


def _assert_error(server: Server, body: bytes | str, status: int, code: str) -> None:
    reply = server.invoke(body)
    assert reply.status == status, reply.body
    assert reply.headers["content-type"] == "application/json"
    error = reply.json()["error"]
    assert error["code"] == code
    assert "Traceback" not in error["message"]
    assert server.ping_status() == 200


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(json.dumps({"instances": [DIGIT[:-1] + [int("9" * 401)]]}), id="401-digit-integer"),
        pytest.param(json.dumps({"instances": [DIGIT[:-1] + [1e39]]}), id="beyond-float32"),
        pytest.param(json.dumps({"instances": [DIGIT[:-1] + [-1e39]]}), id="below-float32"),
        pytest.param("[" * 1000 + "]" * 1000, id="nested-1000-deep"),
        pytest.param("[" * (MAX_JSON_DEPTH + 1) + "]" * (MAX_JSON_DEPTH + 1), id="one-past-the-limit"),
    ],
)
def test_the_trained_models_server_refuses_extreme_json_with_a_400(digits_server, body):
    # GIVEN the platform's own handler serving a trained model
    # WHEN a body holds an extreme number or nesting THEN it is a JSON 400, and /ping stays 200
    _assert_error(digits_server, body, 400, "invalid_request")


def test_nesting_up_to_the_limit_reaches_the_handler(digits_server):
    # GIVEN a body exactly at the depth limit (brackets inside strings do not count)
    body = "[" * MAX_JSON_DEPTH + '"[[[["' + "]" * MAX_JSON_DEPTH
    # WHEN it is sent THEN the handler, not the depth check, refuses it (its rows are not numbers)
    reply = digits_server.invoke(body)
    assert reply.status in (400, 422), reply.body
    assert "nested deeper" not in reply.json()["error"]["message"]


def test_the_default_handler_refuses_extreme_json_with_a_400(default_server):
    for body in ("[[" + "9" * 401 + ", 1, 2, 3]]", "[[1e39, 1, 2, 3]]", "[" * 1000 + "]" * 1000):
        _assert_error(default_server, body, 400, "invalid_request")


def test_a_model_that_answers_nan_gets_a_json_500_not_invalid_json(tmp_path):
    # GIVEN a model whose output_fn writes NaN for some rows
    (tmp_path / "code").mkdir()
    (tmp_path / "code" / "inference.py").write_text(NAN_INFERENCE)
    with running_server(tmp_path, log_dir=tmp_path) as server:
        server.wait_ready()
        # WHEN a finite row is sent THEN it is answered as usual
        assert server.invoke("[[1]]").json() == [1]
        # WHEN the model produces NaN THEN the caller gets the documented JSON 500
        _assert_error(server, "[[7]]", 500, "bad_model_output")


def _half_request(port: int, data: bytes) -> float:
    """Send ``data`` and stall; seconds until the server closes the connection."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(data)
        started = time.monotonic()
        received = b""
        while chunk := sock.recv(4096):  # b"" once the server closes
            received += chunk
        elapsed = time.monotonic() - started
    if received:  # a stalled body is answered before the close
        assert b" 408 " in received.split(b"\r\n", 1)[0]
        assert b'"request_timeout"' in received
    return elapsed


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(b"", id="nothing"),
        pytest.param(b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Ty", id="half-the-headers"),
        pytest.param(
            b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 100\r\n\r\n[[1, 2",
            id="half-the-body",
        ),
    ],
)
def test_a_stalled_client_is_closed_within_the_read_timeout(digits_server, data):
    # GIVEN a client that sends part of a request and stalls
    # WHEN it waits THEN the server closes the connection within the read timeout (plus slack)
    elapsed = _half_request(digits_server.port, data)
    assert elapsed < READ_TIMEOUT_S + 3.0
    assert digits_server.ping_status() == 200


_NUMBERS = st.one_of(
    st.integers(min_value=-(10**500), max_value=10**500),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from([1e39, -1e39, 3.4e38, 1e-320, 2**64, -(2**63)]),
)
_JSON = st.recursive(
    _NUMBERS | st.text(max_size=5) | st.booleans() | st.none(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=3), children, max_size=3)
    ),
    max_leaves=30,
)


def _deep(depth: int, leaf: str) -> str:
    return "[" * depth + leaf + "]" * depth


_BODIES = st.one_of(
    _JSON.map(json.dumps),
    _JSON.map(lambda doc: json.dumps({"instances": doc})),
    st.builds(_deep, st.integers(min_value=1, max_value=5000), _NUMBERS.map(json.dumps)),
)


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=_BODIES)
def test_no_extreme_json_gets_a_5xx(digits_server, body):
    reply = digits_server.invoke(body)
    assert reply.status < 500, (body[:200], reply.body)
    if reply.status != 200:
        assert reply.json()["error"]["code"]


def test_the_body_limit_is_the_one_in_contracts():
    # The handler ships alone in model.tar.gz, so it carries a copy of the limit
    assert inference.MAX_BODY_BYTES == MAX_BODY_BYTES
    assert DEFAULT_MAX_PAYLOAD_MB * 1024 * 1024 == MAX_BODY_BYTES
