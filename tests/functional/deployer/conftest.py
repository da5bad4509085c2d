"""The deployer on moto, with botocore's Stubber for what moto lacks (UpdateEndpoint).

``SplitClient`` sends chosen operations to a Stubber-backed client (every call queued and its
parameters checked) and everything else to moto, recording every call in order.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber
from moto import mock_aws

from handlers.deployer import handler as deployer
from handlers.registry.client import ModelRegistry, ModelVersion
from infra.offline import run_offline
from tests.functional.conftest import REGION

EVENTS = Path(__file__).resolve().parents[2] / "events"
ACCOUNT = "123456789012"
GROUP = "mlp-dev-models"
ENDPOINT = "mlp-dev-endpoint"
ENDPOINT_ARN = f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:endpoint/{ENDPOINT}"
# The deployer's environment as the dev stack's program declares it (its Lambda gets exactly this).
PLANNED_ENV: dict[str, str] = {
    str(name): str(value)
    for name, value in run_offline("dev")
    .named("deployer-deployer")
    .inputs["environment"]["variables"]
    .items()
}
ROLE = PLANNED_ENV["SAGEMAKER_EXECUTION_ROLE_ARN"]
KMS_KEY = PLANNED_ENV["KMS_KEY_ARN"]
CAPTURE_URI = PLANNED_ENV["DATA_CAPTURE_S3_URI"]
IMAGE = "763104351884.dkr.ecr.us-east-1.amazonaws.com/pytorch-inference:2.3.0-gpu-py311"
ALARMS = tuple(json.loads(PLANNED_ENV["ROLLBACK_ALARM_NAMES"]))
NOW = datetime(2024, 6, 3, 14, 0, tzinfo=UTC)


def load_event(name: str) -> dict[str, Any]:
    return json.loads((EVENTS / name).read_text())


def approval_event(version: ModelVersion | None = None, **detail: Any) -> dict[str, Any]:
    """tests/events/eventbridge_model_package_approved.json, pointed at ``version``."""
    event = copy.deepcopy(load_event("eventbridge_model_package_approved.json"))
    if version is not None:
        event["detail"].update(
            ModelPackageArn=version.arn,
            ModelPackageVersion=version.version,
            ModelPackageGroupName=version.group,
        )
        event["resources"] = [version.arn]
    event["detail"].update(detail)
    return event


def endpoint_event(status: str = "IN_SERVICE", config_name: str = "whatever") -> dict[str, Any]:
    event = copy.deepcopy(load_event("eventbridge_endpoint_state_change.json"))
    event["detail"].update(EndpointStatus=status, EndpointConfigName=config_name)
    return event


class FakeContext:
    function_name = "mlp-dev-deployer"
    memory_limit_in_mb = 256
    invoked_function_arn = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:mlp-dev-deployer"
    aws_request_id = "5d0b6a41-93c2-4e1f-8a7b-0c9d8e7f6a5b"


class SplitClient:
    """moto for most operations, a Stubber-backed client for ``stubbed`` ones; records every call."""

    def __init__(self, moto: Any, stub: Any, stubbed: frozenset[str]) -> None:
        self._moto, self._stub, self._stubbed = moto, stub, stubbed
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def __getattr__(self, name: str) -> Any:
        target = getattr(self._stub if name in self._stubbed else self._moto, name)
        if not callable(target):
            return target

        def call(**kwargs: Any) -> Any:
            self.calls.append((name, copy.deepcopy(kwargs)))
            return target(**kwargs)

        return call

    def names(self) -> list[str]:
        return [name for name, _ in self.calls]

    def request(self, name: str) -> dict[str, Any]:
        """The parameters of the one call to ``name``."""
        found = [kwargs for called, kwargs in self.calls if called == name]
        assert len(found) == 1, f"{name} called {len(found)} times: {self.names()}"
        return found[0]


def endpoint_description(
    status: str, config_name: str, *, failure_reason: str | None = None, pending: str | None = None
) -> dict[str, Any]:
    """A DescribeEndpoint response (Stubber checks it against the real output shape)."""
    response: dict[str, Any] = {
        "EndpointName": ENDPOINT,
        "EndpointArn": ENDPOINT_ARN,
        "EndpointConfigName": config_name,
        "ProductionVariants": [{"VariantName": "primary", "CurrentInstanceCount": 1, "CurrentWeight": 1.0}],
        "EndpointStatus": status,
        "CreationTime": NOW,
        "LastModifiedTime": NOW,
    }
    if failure_reason:
        response["FailureReason"] = failure_reason
    if pending:
        response["PendingDeploymentSummary"] = {"EndpointConfigName": pending}
    return response


@pytest.fixture
def deploy_env(aws_credentials: None, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., None]]:
    """The deployer Lambda's environment: the dev stack's declared one, with the settings these
    tests pin (a GPU instance, canary, scaling bounds); call it with overrides (NAME=value)."""
    base = {
        **PLANNED_ENV,
        "INSTANCE_TYPE": "ml.g4dn.xlarge",
        "INITIAL_INSTANCE_COUNT": "1",
        "MIN_INSTANCES": "1",
        "MAX_INSTANCES": "3",
        "TARGET_INVOCATIONS_PER_INSTANCE": "150",
        "ENVIRONMENT": "dev",
        "DEPLOYMENT_STRATEGY": "canary",
        "CANARY_PERCENT": "10",
        "BAKING_SECONDS": "600",
        "TERMINATION_WAIT_SECONDS": "120",
        "AWS_REGION": REGION,
        "POWERTOOLS_TRACE_DISABLED": "true",
        "POWERTOOLS_SERVICE_NAME": "deployer",
    }

    def apply(**overrides: str) -> None:
        for name, value in {**base, **overrides}.items():
            monkeypatch.setenv(name, value)
        deployer.reset_configuration()

    apply()
    yield apply
    deployer.reset_configuration()
    deployer.sagemaker_client.set(None)
    deployer.autoscaling_client.set(None)


@pytest.fixture
def scaling(deploy_env: Callable[..., None]) -> Iterator[Stubber]:
    """The deployer's Application Auto Scaling client; every call must be queued."""
    client = boto3.client("application-autoscaling", region_name=REGION)
    with Stubber(client) as stubber:
        deployer.autoscaling_client.set(client)
        yield stubber
        stubber.assert_no_pending_responses()


@pytest.fixture
def moto_sagemaker(deploy_env: Callable[..., None]) -> Iterator[Any]:
    with mock_aws():
        client = boto3.client("sagemaker", region_name=REGION)
        client.create_model_package_group(ModelPackageGroupName=GROUP)
        yield client


@pytest.fixture
def approved(moto_sagemaker: Any) -> Callable[..., ModelVersion]:
    """Register a version (run N) and approve it, unless told to leave it pending or reject it."""
    registry = ModelRegistry(moto_sagemaker)

    def make(run: int = 1, status: str = "Approved", accuracy: float = 0.95) -> ModelVersion:
        version = registry.register(
            GROUP,
            f"s3://mlp-dev-artifacts-{ACCOUNT}-{REGION}/models/run-{run}/model.tar.gz",
            IMAGE,
            dataset_version=f"2024-06-0{run}T00-00-00Z",
            metrics={"accuracy": accuracy},
            environment={"TS_DEFAULT_WORKERS_PER_MODEL": "1"},
        )
        if status == "Approved":
            return registry.approve(version.arn, "passed review")
        if status == "Rejected":
            return registry.reject(version.arn, "failed review")
        return version

    return make


@pytest.fixture
def split(moto_sagemaker: Any) -> Iterator[Callable[..., tuple[SplitClient, Stubber]]]:
    """A SplitClient whose ``stubbed`` operations go to a Stubber (default: the endpoint ones)."""
    stubbers: list[Stubber] = []

    def make(
        stubbed: tuple[str, ...] = ("describe_endpoint", "update_endpoint"),
    ) -> tuple[SplitClient, Stubber]:
        stub_client = boto3.client("sagemaker", region_name=REGION)
        stubber = Stubber(stub_client)
        stubber.activate()
        stubbers.append(stubber)
        client = SplitClient(moto_sagemaker, stub_client, frozenset(stubbed))
        deployer.sagemaker_client.set(client)  # type: ignore[arg-type]
        return client, stubber

    yield make
    for stubber in stubbers:
        stubber.deactivate()


def emitted_metrics(stdout: str) -> list[tuple[str, dict[str, str]]]:
    """(metric name, dimensions) of every EMF document powertools printed."""
    found: list[tuple[str, dict[str, str]]] = []
    for line in stdout.splitlines():
        try:
            document = json.loads(line)
        except json.JSONDecodeError:
            continue
        if not isinstance(document, dict) or "_aws" not in document:
            continue
        for directive in document["_aws"]["CloudWatchMetrics"]:
            dimensions = {name: document[name] for group in directive["Dimensions"] for name in group}
            found.extend((metric["Name"], dimensions) for metric in directive["Metrics"])
    return found


Approved = Callable[..., ModelVersion]  # the ``approved`` fixture
Split = Callable[..., tuple[SplitClient, Stubber]]  # the ``split`` fixture


def handle(event: dict[str, Any]) -> dict[str, Any]:
    """The deployer Lambda on one event."""
    return deployer.lambda_handler(event, FakeContext())
