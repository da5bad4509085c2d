"""Fixtures for the local gateways: a real model-server container, stdlib fake containers, and
the runtime gateway in front of them.

- ``model_container``: ``python -m handlers.serving.server`` on a tiny TorchScript classifier
  (``model.pth`` + a ``code/inference.py`` answering in the container contract
  ``{"predictions": [{"label", "confidence"}]}``): label 0 when the first feature is positive;
- ``FakeContainer``: an in-process ``/invocations`` server answering with its own name, which
  can hold requests (a gate) so a test can keep them in flight without relying on timing.
"""

from __future__ import annotations

import csv
import io
import json
import textwrap
import threading
import warnings
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import boto3
import pytest
import torch
from botocore.config import Config

from emulator.api_gateway import LocalApiGateway
from emulator.runtime import EndpointRouter, Route, RuntimeGateway
from tests.functional.model_server.conftest import WAIT_S, Server, running_server

ENDPOINT = "local-endpoint"
VARIANT = "primary"
REGION = "us-east-1"
API_KEY = "local-test-key"
STAGE = "local"

CLASSIFIER_INFERENCE = textwrap.dedent(
    '''
    """Default model_fn/input_fn/predict_fn; answers in the API's container contract."""
    import json

    import torch


    def output_fn(prediction, accept):
        confidence, label = torch.softmax(prediction, dim=1).max(dim=1)
        predictions = [
            {"label": int(lab), "confidence": round(float(conf), 4)} for lab, conf in zip(label, confidence)
        ]
        return json.dumps({"predictions": predictions}), "application/json"
    '''
)


@pytest.fixture(scope="session")
def classifier_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three features in, two classes out: class 0 iff the first feature is positive."""
    root = tmp_path_factory.mktemp("classifier")
    layer = torch.nn.Linear(3, 2)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([[1.0, 0.0, 0.0], [-1.0, 0.0, 0.0]]))
        layer.bias.zero_()
    with warnings.catch_warnings():  # torch.jit is what the server's default model_fn loads
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.jit.save(torch.jit.script(layer.eval()), str(root / "model.pth"))
    (root / "code").mkdir()
    (root / "code" / "inference.py").write_text(CLASSIFIER_INFERENCE)
    return root


@pytest.fixture(scope="session")
def model_container(classifier_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with running_server(classifier_dir, "--no-batching", log_dir=tmp_path_factory.mktemp("logs")) as server:
        yield server.wait_ready()


def container_url(server: Server) -> str:
    return f"http://127.0.0.1:{server.port}"


@pytest.fixture
def router() -> EndpointRouter:
    return EndpointRouter()


@pytest.fixture
def runtime(router: EndpointRouter) -> Iterator[RuntimeGateway]:
    gateway = RuntimeGateway(router, None, host="127.0.0.1", port=0, region=REGION)
    gateway.start()
    yield gateway
    gateway.stop()


@pytest.fixture
def served(router: EndpointRouter, runtime: RuntimeGateway, model_container: Server) -> RuntimeGateway:
    """The runtime gateway with ``ENDPOINT`` routed to the real model container."""
    router.set_route(ENDPOINT, Route(container_url(model_container), VARIANT, "config-1", "1"))
    return runtime


def runtime_client(url: str, attempts: int = 1) -> Any:
    """A user's plain boto3 client for the gateway (no retries unless asked: errors show as they come)."""
    return boto3.client(
        "sagemaker-runtime",
        endpoint_url=url,
        region_name=REGION,
        aws_access_key_id="x",
        aws_secret_access_key="x",
        config=Config(retries={"total_max_attempts": attempts, "mode": "standard"}, read_timeout=WAIT_S),
    )


def instances_of(body: bytes, content_type: str) -> list[Any]:
    if content_type.startswith("text/csv"):
        return [row for row in csv.reader(io.StringIO(body.decode())) if row]
    document = json.loads(body)
    return list(document["instances"] if isinstance(document, dict) else document)


class FakeContainer:
    """A model container in this process: ``POST /invocations`` answers
    ``{"server": NAME, "predictions": [{"label": NAME, "confidence": 0.75}, ...]}`` (one per
    instance). While the gate is closed, requests wait inside the container (``held`` counts them)."""

    def __init__(self, name: str, confidence: float = 0.75) -> None:
        self.name, self.confidence = name, confidence
        self.gate = threading.Event()
        self.gate.set()
        self.held = 0
        self.served = 0
        self.changed = threading.Condition()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> FakeContainer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def wait_for(self, predicate: Any) -> None:
        with self.changed:
            assert self.changed.wait_for(lambda: predicate(self), WAIT_S), f"{self.name}: condition never met"

    def answer(self, body: bytes, content_type: str) -> tuple[int, dict[str, Any]]:
        if not self.gate.is_set():
            with self.changed:
                self.held += 1
                self.changed.notify_all()
            self.gate.wait(WAIT_S)
        with self.changed:
            self.served += 1
            self.changed.notify_all()
        try:
            instances = instances_of(body, content_type)
        except (ValueError, KeyError, TypeError):
            return 400, {"error": {"code": "bad_request", "message": 'expected {"instances": [...]}'}}
        predictions = [{"label": self.name, "confidence": self.confidence} for _ in instances]
        return 200, {"server": self.name, "predictions": predictions}

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        container = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:  # noqa: N802 - the stdlib's naming
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                status, document = container.answer(body, self.headers.get("Content-Type") or "")
                payload = json.dumps(document).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass

        return Handler


@pytest.fixture
def fake_container() -> Iterator[FakeContainer]:
    container = FakeContainer("blue").start()
    yield container
    container.stop()


@pytest.fixture
def start_api() -> Iterator[Callable[..., LocalApiGateway]]:
    """Start local API gateways in front of a handler (the test's API key unless told otherwise)."""
    started: list[LocalApiGateway] = []

    def start(handler: Any, **options: Any) -> LocalApiGateway:
        api = LocalApiGateway(handler, options.pop("api_key", API_KEY), STAGE, "127.0.0.1", 0, **options)
        api.start()
        started.append(api)
        return api

    yield start
    for api in started:
        api.stop()
