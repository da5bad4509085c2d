"""The model server answers as the SageMaker PyTorch container would: readiness, predictions equal
to the in-process handler's, default handlers for what an artifact leaves out, clear errors."""

from __future__ import annotations

import http.client
import io
import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from handlers.serving import inference

from .conftest import DIGIT, WAIT_S, Server, running_server

DIGIT_JSON = json.dumps({"instances": [DIGIT, [16.0 - v for v in DIGIT]]})
DIGIT_CSV = ",".join(str(v) for v in DIGIT) + "\n"
MLP_ROWS = [[0.5, -1.0, 2.0, 0.0], [1.0, 1.0, 1.0, 1.0], [-3.0, 0.25, 0.0, 4.0]]


@pytest.fixture(scope="module")
def trained_server(trained_archive: Path, server_logs: Path) -> Iterator[Server]:
    with running_server(trained_archive, log_dir=server_logs) as server:
        yield server.wait_ready()


@pytest.fixture(scope="module")
def mlp_server(mlp_artifact: Path, server_logs: Path) -> Iterator[Server]:
    with running_server(mlp_artifact, log_dir=server_logs) as server:
        yield server.wait_ready()


@pytest.fixture(scope="module")
def gated_server(gated_artifact: Path, server_logs: Path) -> Iterator[Server]:
    gate = server_logs / "gate-serving"
    with running_server(gated_artifact, log_dir=server_logs, MS_TEST_GATE=str(gate)) as server:
        yield server.wait_ready()


def _in_process(model_dir: Path, body: str, content_type: str) -> object:
    served = inference.model_fn(str(model_dir))
    text, _ = inference.output_fn(inference.predict_fn(inference.input_fn(body, content_type), served), None)
    return json.loads(text)


def test_ping_is_503_while_the_model_loads_and_200_once_it_is_ready(gated_artifact, tmp_path):
    # GIVEN a server whose model_fn is held until a file disappears
    load_gate = tmp_path / "loading"
    load_gate.touch()
    with running_server(gated_artifact, log_dir=tmp_path, MS_TEST_LOAD_GATE=str(load_gate)) as server:
        # WHEN it listens but the model is still loading
        server.wait_until(lambda: server.ping_status() is not None, "the server to listen")
        # THEN /ping and /invocations say 503 (not ready), with a JSON error for the invocation
        assert server.ping_status() == 503
        early = server.invoke("[[1.0]]")
        assert early.status == 503
        assert early.json()["error"]["code"] == "model_not_ready"
        # WHEN the model finishes loading THEN /ping turns 200 and predictions flow
        load_gate.unlink()
        server.wait_ready()
        assert server.invoke("[[1.0, 2.0]]").json() == [[3.0, 5.0]]


@pytest.mark.parametrize(
    ("body", "content_type"), [(DIGIT_JSON, "application/json"), (DIGIT_CSV, "text/csv")], ids=["json", "csv"]
)
def test_a_trained_model_tar_gz_answers_as_the_in_process_handler(
    trained_server, trained_model_dir, body, content_type
):
    # GIVEN the server started on model.tar.gz of a model our training code produced
    # WHEN a request is sent
    reply = trained_server.invoke(body, content_type)
    # THEN the answer is byte-for-byte what the handler computes in process, as JSON
    assert reply.status == 200, reply.body
    assert reply.headers["content-type"].startswith("application/json")
    assert reply.json() == _in_process(trained_model_dir, body, content_type)
    assert len(reply.json()["predictions"]) == (2 if content_type == "application/json" else 1)


def test_a_dlc_layout_archive_gets_the_default_model_fn_and_predict_fn(mlp_server, mlp_artifact):
    # GIVEN a TorchScript model.pth whose code/inference.py defines only input_fn and output_fn
    expected = torch.jit.load(str(mlp_artifact / "model.pth"))(torch.tensor(MLP_ROWS)).tolist()
    # WHEN rows are sent in the artifact's own format
    reply = mlp_server.invoke(json.dumps({"inputs": MLP_ROWS}))
    # THEN the default model_fn loaded the TorchScript file and the default predict_fn ran it
    assert reply.status == 200, reply.body
    outputs = reply.json()["outputs"]
    assert torch.allclose(torch.tensor(outputs), torch.tensor(expected), atol=1e-6)
    # AND the artifact's own input_fn decides what it accepts (its status_code error is kept)
    refused = mlp_server.invoke("1,2,3,4", "text/csv")
    assert refused.status == 415
    assert "only application/json" in refused.json()["error"]["message"]


@pytest.mark.parametrize(
    ("accept", "content_type", "decode"),
    [
        ("application/json", "application/json", json.loads),
        ("*/*", "application/json", json.loads),
        ("text/csv", "text/csv", lambda b: [[float(v) for v in b.decode().strip().split(",")]]),
    ],
)
def test_default_handlers_honour_content_type_and_accept(gated_server, accept, content_type, decode):
    # GIVEN a server with the default input_fn/output_fn
    # WHEN a CSV row is sent asking for a given Accept
    reply = gated_server.invoke("1,2,3\n", "text/csv", Accept=accept)
    # THEN the body is encoded as asked, with that content type
    assert reply.status == 200, reply.body
    assert reply.headers["content-type"].startswith(content_type)
    assert decode(reply.body) == [[3.0, 5.0, 7.0]]


def test_default_input_fn_reads_npy_arrays(gated_server):
    # GIVEN a float64 array in .npy format
    buffer = io.BytesIO()
    np.save(buffer, np.array([[1.0, 2.0], [3.0, 4.0]]))
    # WHEN it is sent as application/x-npy, asking for .npy back
    reply = gated_server.invoke(buffer.getvalue(), "application/x-npy", Accept="application/x-npy")
    # THEN the default handlers decode and encode it
    assert reply.status == 200, reply.body
    assert np.load(io.BytesIO(reply.body)).tolist() == [[3.0, 5.0], [7.0, 9.0]]


def test_transform_fn_serves_each_request_whole(transform_artifact, tmp_path):
    # GIVEN an artifact with only model_fn and transform_fn
    with running_server(transform_artifact, log_dir=tmp_path) as server:
        server.wait_ready()
        # WHEN a request arrives
        reply = server.invoke("hello", "text/csv")
        # THEN transform_fn alone answered (its content type), outside the batcher
        assert (reply.status, reply.body, reply.headers["content-type"]) == (200, b"HELLO", "text/plain")
        assert "x-batch-size" not in reply.headers
        assert server.metrics()["batching"] is False


BAD_REQUESTS = [
    pytest.param("trained", "application/xml", "<digits/>", 415, id="trained-415-content-type"),
    pytest.param("trained", "application/json", '{"instances": [[1, 2', 400, id="trained-400-malformed"),
    pytest.param("trained", "application/json", "[[1.0, 2.0, 3.0]]", 422, id="trained-422-feature-count"),
    pytest.param("trained", "application/json", "[[NaN]]", 400, id="trained-400-nan"),
    pytest.param("gated", "application/xml", "<x/>", 415, id="default-415-content-type"),
    pytest.param("gated", "application/json", "[[1, 2", 400, id="default-400-malformed"),
    pytest.param("gated", "application/json", "[[1, 2], [3]]", 400, id="default-400-ragged"),
    pytest.param("gated", "text/csv", "1,two\n", 400, id="default-400-csv-text"),
    pytest.param("gated", "application/json", b"\xff\xfe", 400, id="default-400-not-utf8"),
    pytest.param("mlp", "application/json", '{"inputs": [[1.0, 2.0]]}', 422, id="default-predict-422-shape"),
    pytest.param("gated", "application/json", "[[666]]", 500, id="handler-500-plain-exception"),
]


@pytest.mark.parametrize(("which", "content_type", "body", "status"), BAD_REQUESTS)
def test_bad_input_gets_its_status_a_json_error_and_the_server_keeps_serving(
    request, which, content_type, body, status
):
    server: Server = request.getfixturevalue(f"{which}_server")
    # WHEN a bad request is sent
    reply = server.invoke(body, content_type, **{"X-Request-Id": "req-123"})
    # THEN it gets its own status and a JSON error naming the request, without internals
    assert reply.status == status, reply.body
    error = reply.json()["error"]
    assert error["code"] and error["message"]
    assert error["request_id"] == reply.headers["x-request-id"] == "req-123"
    text = reply.body.decode()
    assert "Traceback" not in text
    assert ".py" not in text
    assert "/tmp" not in text
    if status == 500:
        assert "exploded" not in text
    # AND the server is still healthy and answers a good request
    assert server.ping_status() == 200
    good = {"trained": DIGIT_JSON, "gated": "[[1.0]]", "mlp": json.dumps({"inputs": MLP_ROWS})}[which]
    assert server.invoke(good).status == 200


def test_an_oversize_body_is_refused_with_413_before_it_is_read(gated_server):
    # GIVEN a request that announces 7 MB (over the 6 MB default) and sends only its first bytes
    conn = http.client.HTTPConnection("127.0.0.1", gated_server.port, timeout=WAIT_S)
    try:
        conn.putrequest("POST", "/invocations")
        conn.putheader("Content-Type", "application/json")
        conn.putheader("Content-Length", str(7 * 1024 * 1024))
        conn.endheaders(b"[[1.0")
        # WHEN the server answers
        response = conn.getresponse()
        body = json.loads(response.read())
    finally:
        conn.close()
    # THEN it refused from the header alone: 413 with a JSON error
    assert response.status == 413
    assert body["error"]["code"] == "payload_too_large"
    assert body["error"]["request_id"]
    # AND it keeps serving
    assert gated_server.ping_status() == 200
    assert gated_server.invoke("[[2.0]]").json() == [[5.0]]


@pytest.mark.parametrize(
    ("method", "path", "status"), [("GET", "/nowhere", 404), ("GET", "/invocations", 405)]
)
def test_unknown_routes_and_methods_get_json_errors(gated_server, method, path, status):
    # WHEN a route or method the server does not have is used
    reply = gated_server.request(method, path)
    # THEN the status says so, in the same JSON error shape
    assert reply.status == status
    assert set(reply.json()["error"]) == {"code", "message", "request_id"}
