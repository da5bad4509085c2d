"""mlctl's operations commands on moto, with Stubber where moto stops, and a tiny local HTTP API.

- ``mlctl``: runs one command line through the commands' own ``add_*_parser`` functions.
- ``platform``: a moto AWS with this stack's model package group and an outputs file naming it.
- ``api``: a stdlib HTTP server on 127.0.0.1 standing in for API Gateway (checks ``x-api-key``).
- ``SplitClient``: moto for most operations, a Stubber-backed client for the ones moto lacks.
"""

from __future__ import annotations

import argparse
import json
import logging
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

from handlers.deployer.handler import deploy_model_version
from handlers.deployer.settings import DeploySettings
from handlers.registry.client import ModelRegistry, ModelVersion
from mlctl import deploy_wait, invoke, models, targets, train
from tests.functional.conftest import ARTIFACTS, GROUP, IMAGE, REGION
from tests.functional.deployer.conftest import SplitClient  # noqa: F401 - re-exported for the tests

ACCOUNT = "123456789012"
STACK = "dev"
ENDPOINT = "mlp-dev-endpoint"
ENDPOINT_ARN = f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:endpoint/{ENDPOINT}"
PIPELINE = "mlp-dev-training"
DEPLOYER_FUNCTION = "mlp-dev-deployer"
API_KEY = "k3y-for-tests-only-0123456789"
NOW = datetime(2024, 6, 3, 14, 0, tzinfo=UTC)
# The deployer Lambda's environment (see handlers/deployer/plan.py), as local mode records it.
DEPLOYER_ENV = {
    "MODEL_PACKAGE_GROUP": GROUP,
    "ENDPOINT_NAME": ENDPOINT,
    "SAGEMAKER_EXECUTION_ROLE_ARN": f"arn:aws:iam::{ACCOUNT}:role/mlp-dev-sagemaker-execution",
    "KMS_KEY_ARN": f"arn:aws:kms:{REGION}:{ACCOUNT}:key/0b7e2c4d-1f3a-4b5c-9d6e-7f8a9b0c1d2e",
    "DATA_CAPTURE_S3_URI": f"s3://mlp-dev-artifacts-{ACCOUNT}-{REGION}/data-capture/{ENDPOINT}",
    "INSTANCE_TYPE": "ml.m5.large",
    "DEPLOYMENT_STRATEGY": "all-at-once",
    "BAKING_SECONDS": "0",
    "TERMINATION_WAIT_SECONDS": "0",
}


def base_outputs(**overrides: Any) -> dict[str, Any]:
    """The stack outputs mlctl reads (infra/__main__.py exports them)."""
    outputs: dict[str, Any] = {
        "environment": "dev",
        "region": REGION,
        "modelPackageGroupName": GROUP,
        "trainingPipelineName": PIPELINE,
        "endpointName": ENDPOINT,
        "apiUrl": "https://abc123.execute-api.us-east-1.amazonaws.com/live",
        "apiKeyId": None,
        "deployerFunctionName": DEPLOYER_FUNCTION,
    }
    outputs.update(overrides)
    return outputs


@dataclass
class Result:
    code: int
    out: str
    err: str


def build_parser() -> argparse.ArgumentParser:
    """A parser with every operations command, registered as mlctl/cli.py registers them."""
    parser = argparse.ArgumentParser(prog="mlctl")
    commands = parser.add_subparsers(dest="command", required=True)
    models.add_models_parser(commands)
    deploy_wait.add_deploy_parser(commands)
    train.add_train_parser(commands)
    invoke.add_invoke_parser(commands)
    return parser


@pytest.fixture
def mlctl(capsys: pytest.CaptureFixture[str]) -> Callable[..., Result]:
    """Run ``mlctl <argv>``; returns the exit code and what it printed."""

    def run(*argv: str) -> Result:
        capsys.readouterr()  # only this command's output
        args = build_parser().parse_args(list(argv))
        code = args.handler(args)
        captured = capsys.readouterr()
        return Result(code, captured.out, captured.err)

    return run


@pytest.fixture
def outputs_file(tmp_path: Path) -> Callable[..., Path]:
    """Write stack outputs (base ones, with overrides) to a JSON file; returns its path."""

    def write(**overrides: Any) -> Path:
        path = tmp_path / "outputs.json"
        path.write_text(json.dumps(base_outputs(**overrides)))
        return path

    return write


@dataclass
class Platform:
    """A moto AWS holding this stack's group, and the ``--outputs-file`` options pointing at it."""

    sagemaker: Any
    registry: ModelRegistry
    outputs_path: Path

    @property
    def target(self) -> list[str]:
        return ["--outputs-file", str(self.outputs_path)]

    def register(self, run: int, status: str = "Approved", **overrides: Any) -> ModelVersion:
        """Register version ``run`` as the training pipeline does, then approve or reject it."""
        arguments: dict[str, Any] = {
            "dataset_version": f"2024-06-0{run}T00-00-00Z",
            "code_version": f"commit{run:04d}",
            "metrics": {"accuracy": 0.9 + run / 100, "loss": 0.3 - run / 100},
            "hyperparameters": {"epochs": 10 + run, "lr": "0.001"},
            "training_job": f"mlp-dev-train-run-{run}",
        }
        arguments.update(overrides)
        version = self.registry.register(GROUP, f"{ARTIFACTS}/run-{run}/model.tar.gz", IMAGE, **arguments)
        if status == "Approved":
            return self.registry.approve(version.arn, f"run {run} passed review")
        if status == "Rejected":
            return self.registry.reject(version.arn, f"run {run} failed review")
        return version

    def deploy(self, version: ModelVersion, client: Any | None = None) -> str:
        """Deploy through the deployer's own code (CreateEndpoint on moto); returns the expected config."""
        settings = DeploySettings.from_env({**DEPLOYER_ENV, "AWS_REGION": REGION})
        return deploy_model_version(client or self.sagemaker, settings, version.arn).expected_config


@pytest.fixture
def platform(aws_credentials: None, tmp_path: Path) -> Iterator[Platform]:
    with mock_aws():
        sagemaker = boto3.client("sagemaker", region_name=REGION)
        sagemaker.create_model_package_group(ModelPackageGroupName=GROUP)
        path = tmp_path / "outputs.json"
        path.write_text(json.dumps(base_outputs()))
        yield Platform(sagemaker, ModelRegistry(sagemaker), path)


def set_outputs(platform: Platform, **overrides: Any) -> None:
    platform.outputs_path.write_text(json.dumps(base_outputs(**overrides)))


# --- clients ---------------------------------------------------------------------------------------


def use_clients(monkeypatch: pytest.MonkeyPatch, module: Any, **by_service: Any) -> None:
    """Make ``module``'s ``client(target, service)`` return the given clients (others: boto3, i.e. moto)."""
    real = targets.client

    def factory(target: targets.PlatformTarget, service: str, config: Any = None) -> Any:
        return by_service[service] if service in by_service else real(target, service, config)

    monkeypatch.setattr(module, "client", factory)


def endpoint_description(status: str, config_name: str, **extra: Any) -> dict[str, Any]:
    """A DescribeEndpoint response (Stubber checks it against the real output shape)."""
    return {
        "EndpointName": ENDPOINT,
        "EndpointArn": ENDPOINT_ARN,
        "EndpointConfigName": config_name,
        "ProductionVariants": [{"VariantName": "primary", "CurrentInstanceCount": 1, "CurrentWeight": 1.0}],
        "EndpointStatus": status,
        "CreationTime": NOW,
        "LastModifiedTime": NOW,
        **extra,
    }


# --- a stand-in for API Gateway --------------------------------------------------------------------


@dataclass
class ApiServer:
    """``POST /v1/predict`` on 127.0.0.1: 403 without the right ``x-api-key``, else the set answer."""

    url: str
    key: str = API_KEY
    status: int = 200
    answer: dict[str, Any] = field(
        default_factory=lambda: {"predictions": ["ham"], "confidence": [0.9], "model_version": "1"}
    )
    requests: list[dict[str, Any]] = field(default_factory=list)


@pytest.fixture
def api() -> Iterator[ApiServer]:
    server_state: dict[str, ApiServer] = {}

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            state = server_state["api"]
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length).decode()
            headers = {name.lower(): value for name, value in self.headers.items()}
            state.requests.append({"path": self.path, "headers": headers, "body": body})
            if self.headers.get("x-api-key") != state.key:
                self._answer(403, {"message": "Forbidden"})
            elif self.path != "/live/v1/predict":
                self._answer(404, {"error": {"code": "not_found", "message": "no such route"}})
            else:
                self._answer(state.status, state.answer)

        def _answer(self, status: int, document: dict[str, Any]) -> None:
            data = json.dumps(document).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
            pass  # keep the test output to what mlctl prints

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    host, port = server.server_address[:2]
    # API Gateway URLs end with the stage ("/live"); the route adds "/v1/predict" after it.
    server_state["api"] = ApiServer(url=f"http://{host!s}:{port}/live")
    # A short poll interval: shutdown() waits for one, at every test's teardown.
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield server_state["api"]
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


# --- local mode --------------------------------------------------------------------------------------


@dataclass
class LocalPlatform:
    """A moto server standing in for local mode's emulator, and a state file describing it."""

    endpoint_url: str
    state_file: Path
    sagemaker: Any
    registry: ModelRegistry

    @property
    def target(self) -> list[str]:
        return ["--local", "--state-file", str(self.state_file)]


def local_state(
    endpoint_url: str, api_url: str = "http://127.0.0.1:9/live", **overrides: Any
) -> dict[str, Any]:
    state: dict[str, Any] = {
        "stack": "local",
        "region": REGION,
        "aws_endpoint_url": endpoint_url,
        "api_url": api_url,
        "api_key": API_KEY,
        "outputs": base_outputs(apiUrl=api_url),
    }
    state.update(overrides)
    return state


@pytest.fixture
def local_platform(aws_credentials: None, tmp_path: Path) -> Iterator[LocalPlatform]:
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # no request log in the captured output
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint_url = f"http://{host}:{port}"
    sagemaker = boto3.client("sagemaker", region_name=REGION, endpoint_url=endpoint_url)
    sagemaker.create_model_package_group(ModelPackageGroupName=GROUP)
    state_file = tmp_path / "state.json"
    state_file.write_text(json.dumps(local_state(endpoint_url)))
    try:
        yield LocalPlatform(endpoint_url, state_file, sagemaker, ModelRegistry(sagemaker))
    finally:
        server.stop()
