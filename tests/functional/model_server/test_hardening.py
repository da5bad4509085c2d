"""Bad input against the real server: huge integers, values beyond float32, deep nesting and
stalled clients get a documented JSON 4xx (or are closed), a model's NaN is a JSON 5xx, and /ping
stays healthy throughout."""

from __future__ import annotations

import json
import math
import socket
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from handlers.common.contracts import MAX_BODY_BYTES, MAX_JSON_DEPTH
from handlers.serving import inference
from handlers.serving.server import DEFAULT_MAX_PAYLOAD_MB

from .conftest import DIGIT, Server, running_server

READ_TIMEOUT_S = 1.0
CLOSED_WITHIN_S = 30.0  # an upper bound for the close to happen at all, never a timing assertion
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
def default_server(tmp_path_factory: pytest.TempPathFactory, server_logs: Path) -> Iterator[Server]:
    """A TorchScript model and no code: the default SageMaker PyTorch functions serve it."""
    root = tmp_path_factory.mktemp("default-functions")
    mlp = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2)).eval()
    torch.jit.save(torch.jit.trace(mlp, torch.zeros(1, 4)), str(root / "model.pt"))
    with running_server(root, log_dir=server_logs) as server:
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


def _stall(port: int, data: bytes) -> bytes:
    """Send ``data``, stall, and return what the server sent before closing the connection
    (``recv`` raises ``TimeoutError`` if it never closes it)."""
    with socket.create_connection(("127.0.0.1", port), timeout=CLOSED_WITHIN_S) as sock:
        sock.sendall(data)
        received = b""
        while chunk := sock.recv(4096):  # b"" once the server closes
            received += chunk
    return received


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
def test_a_stalled_client_gets_a_408_and_its_connection_closed(digits_server, data):
    # GIVEN a client that opens a connection, sends part of a request (or nothing) and stalls
    # WHEN it waits THEN the server answers a JSON 408 and closes the connection
    received = _stall(digits_server.port, data)
    status_line, _, rest = received.partition(b"\r\n")
    assert status_line == b"HTTP/1.1 408 Request Timeout"
    assert json.loads(rest.split(b"\r\n\r\n", 1)[1])["error"]["code"] == "request_timeout"
    # AND /ping answers 200 throughout
    assert digits_server.ping_status() == 200


def test_a_client_that_sends_slowly_but_whole_is_served(digits_server):
    # GIVEN a request sent in two parts, the second well within the read timeout
    body = json.dumps({"instances": [DIGIT]}).encode()
    head = (
        "POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}"
    )
    with socket.create_connection(("127.0.0.1", digits_server.port), timeout=CLOSED_WITHIN_S) as sock:
        sock.sendall(head.encode())
        sock.sendall(b"\r\nConnection: close\r\n\r\n" + body)
        received = b""
        while chunk := sock.recv(4096):
            received += chunk
    # THEN it is answered as usual
    assert received.startswith(b"HTTP/1.1 200 ")
    assert json.loads(received.split(b"\r\n\r\n", 1)[1])["predictions"]


def test_stalled_clients_do_not_hold_the_server(digits_server):
    # GIVEN several clients that stalled mid-request
    sockets = [socket.create_connection(("127.0.0.1", digits_server.port)) for _ in range(8)]
    try:
        for sock in sockets:
            sock.sendall(b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Length: 50\r\n\r\n[")
        # WHEN another client asks THEN it is served while they stall
        assert digits_server.ping_status() == 200
        assert digits_server.invoke(json.dumps({"instances": [DIGIT]})).status == 200
    finally:
        for sock in sockets:
            sock.close()


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


def _no_5xx(server: Server, body: str) -> None:
    reply = server.invoke(body)
    assert reply.status < 500, (body[:200], reply.body)
    if reply.status != 200:
        assert reply.json()["error"]["code"]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=_BODIES)
def test_no_extreme_json_gets_a_5xx_from_the_built_in_handler(digits_server, body):
    _no_5xx(digits_server, body)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=_BODIES)
def test_no_extreme_json_gets_a_5xx_from_the_default_functions(default_server, body):
    _no_5xx(default_server, body)


def test_a_trained_model_that_computes_nan_is_a_500_never_a_200(trained_model_dir):
    # GIVEN the built-in handler's model with its weights broken (NaN)
    served = inference.model_fn(str(trained_model_dir))
    for parameter in served.model.parameters():
        parameter.data.fill_(math.nan)
    # WHEN a valid request reaches it THEN the handler says the model failed (500), not the caller
    with pytest.raises(inference.NonFiniteOutputError) as raised:
        inference.predict_fn(inference.input_fn(json.dumps([DIGIT]), "application/json"), served)
    assert raised.value.status_code == 500


def test_one_body_limit_for_the_server_and_the_built_in_handler(monkeypatch):
    # GIVEN no setting: the handler (which ships alone in model.tar.gz) and the server agree
    monkeypatch.delenv(inference.MAX_PAYLOAD_ENV, raising=False)
    assert inference.max_body_bytes() == MAX_BODY_BYTES
    assert DEFAULT_MAX_PAYLOAD_MB * 1024 * 1024 == MAX_BODY_BYTES
    # AND the container's one setting moves both
    monkeypatch.setenv(inference.MAX_PAYLOAD_ENV, "2")
    assert inference.max_body_bytes() == 2 * 1024 * 1024
    with pytest.raises(inference.PayloadTooLargeError):
        inference.input_fn(b"[" + b"1," * (1024 * 1024) + b"1]", "application/json")
