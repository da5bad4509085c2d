"""The request and answer formats the SageMaker toolkit supports, through the real server: a request
the SageMaker Python SDK's ``NumpySerializer`` writes gets the JSON request's answer, ``Accept``
picks JSON, CSV or NPY, and ``.npz`` bodies (a scipy.sparse matrix, as the toolkit takes them) work
with the default functions. Broken binary bodies are 400s."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse
import torch
from sagemaker.core.deserializers import NumpyDeserializer
from sagemaker.core.serializers import NumpySerializer

from .conftest import DIGIT, Server, running_server

NPY = "application/x-npy"
NPZ = "application/x-npz"
DIGITS = [DIGIT, [16.0 - v for v in DIGIT]]
ROWS = [[0.5, -1.0, 2.0, 0.0], [0.0, 0.0, 0.0, 3.0]]


@pytest.fixture(scope="module")
def digits_server(trained_archive: Path, server_logs: Path) -> Iterator[Server]:
    with running_server(trained_archive, log_dir=server_logs) as server:
        yield server.wait_ready()


@pytest.fixture(scope="module")
def default_server(tmp_path_factory: pytest.TempPathFactory, server_logs: Path) -> Iterator[Server]:
    """A TorchScript model and no code: the default SageMaker PyTorch functions serve it."""
    root = tmp_path_factory.mktemp("formats-default")
    torch.manual_seed(3)
    mlp = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2)).eval()
    torch.jit.save(torch.jit.trace(mlp, torch.zeros(1, 4)), str(root / "model.pt"))
    with running_server(root, log_dir=server_logs) as server:
        yield server.wait_ready()


def _npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()


def test_a_numpy_serializer_request_gets_the_json_requests_answer(digits_server):
    # GIVEN the same rows as JSON and as the SDK's NumpySerializer writes them
    serializer = NumpySerializer()
    as_json = digits_server.invoke(json.dumps({"instances": DIGITS}))
    as_npy = digits_server.invoke(serializer.serialize(np.array(DIGITS)), serializer.CONTENT_TYPE)
    # THEN both get the same JSON answer
    assert as_json.status == as_npy.status == 200
    assert as_npy.headers["content-type"] == "application/json"
    assert as_npy.json() == as_json.json()
    # AND a list (the serializer takes those too) is the same request
    as_list = digits_server.invoke(serializer.serialize(DIGITS), serializer.CONTENT_TYPE)
    assert as_list.json() == as_json.json()


def test_accept_picks_npy_or_csv_for_the_built_in_handler(digits_server):
    expected = digits_server.invoke(json.dumps(DIGITS)).json()["predictions"]
    # WHEN the SDK's NumpyDeserializer asks for NPY THEN it reads labels and confidences
    reply = digits_server.invoke(_npy(np.array(DIGITS)), NPY, Accept=NPY)
    assert reply.headers["content-type"] == NPY
    answer = NumpyDeserializer().deserialize(io.BytesIO(reply.body), NPY)
    assert answer["label"].tolist() == [item["label"] for item in expected]
    assert answer["confidence"].tolist() == pytest.approx([item["confidence"] for item in expected], abs=1e-6)
    # WHEN CSV is asked for THEN one "label,confidence" line per instance
    reply = digits_server.invoke(json.dumps(DIGITS), Accept="text/csv")
    assert reply.headers["content-type"] == "text/csv"
    lines = [line.split(",") for line in reply.body.decode().splitlines()]
    assert [line[0] for line in lines] == [item["label"] for item in expected]
    # WHEN nothing it writes is acceptable THEN 406, saying what it writes
    refused = digits_server.invoke(json.dumps(DIGITS), Accept="image/png")
    assert refused.status == 406
    assert NPY in refused.json()["error"]["message"]


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b"not an npy file", id="not-npy"),
        pytest.param(_npy(np.array([["a", "b"]])), id="strings"),
        pytest.param(_npy(np.array([[np.nan] * 64])), id="nan"),
        pytest.param(_npy(np.array([[1e39] * 64])), id="beyond-float32"),
        pytest.param(_npy(np.array(5.0)), id="scalar"),
    ],
)
def test_a_broken_npy_body_is_a_400_from_the_built_in_handler(digits_server, body):
    reply = digits_server.invoke(body, NPY)
    assert reply.status == 400, reply.body
    assert reply.json()["error"]["code"] == "invalid_request"


def test_a_pickled_npy_body_is_refused_never_unpickled(digits_server, default_server):
    # GIVEN an .npy holding Python objects, which only unpickling could read
    buffer = io.BytesIO()
    np.save(buffer, np.array([{"x": 1}], dtype=object), allow_pickle=True)
    # THEN both handlers refuse it with a 400
    for server in (digits_server, default_server):
        reply = server.invoke(buffer.getvalue(), NPY)
        assert reply.status == 400, reply.body


def test_the_default_functions_answer_npy_and_npz_like_json(default_server):
    expected = np.array(default_server.invoke(json.dumps(ROWS)).json())
    # WHEN the rows come as NPY, asking for NPY back THEN the same numbers
    reply = default_server.invoke(_npy(np.array(ROWS, dtype=np.float32)), NPY, Accept=NPY)
    assert reply.headers["content-type"] == NPY
    np.testing.assert_allclose(np.load(io.BytesIO(reply.body)), expected, rtol=1e-6)
    # WHEN they come as a scipy.sparse CSR matrix (what the toolkit's npz decoder takes) THEN too
    buffer = io.BytesIO()
    scipy.sparse.save_npz(buffer, scipy.sparse.csr_matrix(np.array(ROWS, dtype=np.float32)))
    np.testing.assert_allclose(default_server.invoke(buffer.getvalue(), NPZ).json(), expected, rtol=1e-6)
    # AND as one dense array in an .npz
    buffer = io.BytesIO()
    np.savez(buffer, rows=np.array(ROWS, dtype=np.float32))
    np.testing.assert_allclose(default_server.invoke(buffer.getvalue(), NPZ).json(), expected, rtol=1e-6)


def _sparse_with(**changes: object) -> bytes:
    matrix = scipy.sparse.csr_matrix(np.array(ROWS, dtype=np.float32))
    arrays = {
        "format": np.array(b"csr"),
        "shape": np.array(matrix.shape),
        "data": matrix.data,
        "indices": matrix.indices,
        "indptr": matrix.indptr,
        **changes,
    }
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("body", "status"),
    [
        pytest.param(b"PK not a zip", 400, id="not-a-zip"),
        pytest.param(_sparse_with(indices=np.array([0, 9, 1, 3])), 400, id="index-outside"),
        pytest.param(_sparse_with(indptr=np.array([0, 3, 1])), 400, id="indptr-not-ascending"),
        pytest.param(_sparse_with(format=np.array(b"coo")), 400, id="coo"),
        pytest.param(_sparse_with(shape=np.array([10**6, 10**6])), 413, id="too-large-dense"),
    ],
)
def test_a_broken_npz_body_is_a_4xx(default_server, body, status):
    reply = default_server.invoke(body, NPZ)
    assert reply.status == status, reply.body
    assert default_server.ping_status() == 200
