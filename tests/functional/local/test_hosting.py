"""Local SageMaker hosting: the emulator reports endpoint states as SageMaker does, and the
deployer's verification judges them the same way (moto in-process; model servers faked here,
real ones in test_local_up.py)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

from emulator import hosting
from handlers.deployer.handler import DeploymentFailedError
from handlers.deployer.verify import describe_endpoint_state, evaluate_endpoint

REGION = "us-east-1"
ACCOUNT = "123456789012"
ENDPOINT = "mlp-dev-endpoint"


class FakeProcess:
    returncode: int | None = None

    def poll(self) -> int | None:
        return self.returncode


class FakeContainer:
    starts = 0

    def __init__(self, model_name: str) -> None:
        FakeContainer.starts += 1
        self.model_name = model_name
        self.url = f"http://127.0.0.1/{model_name}/{FakeContainer.starts}"
        self.stopped = threading.Event()
        self.process = FakeProcess()

    def stop(self) -> None:
        self.stopped.set()


@pytest.fixture
def sagemaker(aws_credentials: None) -> Iterator[Any]:
    undo = hosting.extend_moto()  # moto's classes are shared by the whole test session: undone below
    try:
        with mock_aws():
            client = boto3.client("sagemaker", region_name=REGION)
            for version in (1, 2, 3):
                client.create_model(
                    ModelName=f"model-v{version}",
                    ExecutionRoleArn=f"arn:aws:iam::{ACCOUNT}:role/model",
                    PrimaryContainer={
                        "Image": "image",
                        "ModelDataUrl": f"s3://artifacts/v{version}/model.tar.gz",
                    },
                )
                client.create_endpoint_config(
                    EndpointConfigName=f"config-v{version}",
                    ProductionVariants=[
                        {
                            "VariantName": "primary",
                            "ModelName": f"model-v{version}",
                            "InstanceType": "ml.m5.large",
                            "InitialInstanceCount": 1,
                        }
                    ],
                )
            yield client
    finally:
        undo()


@pytest.fixture
def served(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> Iterator[tuple[hosting.LocalHosting, list[Any]]]:
    routes: list[hosting.ServedModel] = []
    containers: dict[str, FakeContainer] = {}
    broken: set[str] = set()  # models whose next server does not come up

    def fake_start(model_name: str, model_dir: Path, environment: dict[str, str], log_dir: Path) -> Any:
        if model_name == "model-v3" or model_name in broken:  # a model whose server never comes up
            raise hosting.ContainerStartError("the model server for model-v3 exited with 3: bad weights")
        containers[model_name] = FakeContainer(model_name)
        return containers[model_name]

    monkeypatch.setattr(hosting, "start_container", fake_start)
    watcher = hosting.LocalHosting(
        lambda: hosting.sagemaker_backend(ACCOUNT, REGION),
        lambda uri, path: None,
        routes.append,
        tmp_path,
        poll_s=0.01,
    )
    monkeypatch.setattr(watcher, "_model_dir", lambda name, url: tmp_path / name)
    watcher.start()
    try:
        yield watcher, [routes, containers, broken]
    finally:
        watcher.stop()


def _wait_for(client: Any, status: str, not_status: str | None = None) -> dict[str, Any]:
    for _ in range(2000):
        answer = client.describe_endpoint(EndpointName=ENDPOINT)
        if answer["EndpointStatus"] == status and answer["EndpointStatus"] != not_status:
            return dict(answer)
        threading.Event().wait(0.005)
    raise AssertionError(f"endpoint never reached {status}: {answer['EndpointStatus']}")


def test_create_and_update_endpoint_report_their_progress_as_sagemaker_does(sagemaker: Any) -> None:
    # WHEN the deployer creates the endpoint (nothing serves it yet)
    sagemaker.create_endpoint(EndpointName=ENDPOINT, EndpointConfigName="config-v1")
    # THEN it is Creating, not InService
    assert sagemaker.describe_endpoint(EndpointName=ENDPOINT)["EndpointStatus"] == "Creating"
    # AND an update of an endpoint that is not InService is refused, as SageMaker refuses it
    with pytest.raises(sagemaker.exceptions.ClientError, match="Cannot update in-progress endpoint"):
        sagemaker.update_endpoint(EndpointName=ENDPOINT, EndpointConfigName="config-v2")


def test_an_update_switches_the_route_then_reports_the_new_config(sagemaker: Any, served: Any) -> None:
    watcher, (routes, containers, _) = served
    sagemaker.create_endpoint(EndpointName=ENDPOINT, EndpointConfigName="config-v1")
    _wait_for(sagemaker, "InService")
    # WHEN version 2 is deployed with UpdateEndpoint
    sagemaker.update_endpoint(EndpointName=ENDPOINT, EndpointConfigName="config-v2")
    state = describe_endpoint_state(sagemaker, ENDPOINT)
    assert state is not None and state.status in ("Updating", "InService")
    answer = _wait_for(sagemaker, "InService")
    # THEN the endpoint is InService on the new config and the route moved to the new server
    assert answer["EndpointConfigName"] == "config-v2"
    assert [(r.endpoint, r.config_name, r.model_name) for r in routes] == [
        (ENDPOINT, "config-v1", "model-v1"),
        (ENDPOINT, "config-v2", "model-v2"),
    ]
    # AND the deployer's verification accepts it, and the old server is stopped after its drain
    assert evaluate_endpoint(describe_endpoint_state(sagemaker, ENDPOINT), "config-v2") is not None
    assert containers["model-v1"].stopped.wait(5)
    assert watcher.containers() == {ENDPOINT: containers["model-v2"].url}


def test_an_update_whose_server_fails_rolls_back_and_the_deployer_sees_it(
    sagemaker: Any, served: Any
) -> None:
    _, (routes, _, _) = served
    sagemaker.create_endpoint(EndpointName=ENDPOINT, EndpointConfigName="config-v1")
    _wait_for(sagemaker, "InService")
    # WHEN the new version's model server cannot start
    sagemaker.update_endpoint(EndpointName=ENDPOINT, EndpointConfigName="config-v3")
    for _ in range(2000):
        answer = sagemaker.describe_endpoint(EndpointName=ENDPOINT)
        if answer["EndpointStatus"] != "Updating":
            break
        threading.Event().wait(0.005)
    # THEN the endpoint stays InService on the old config with the reason, the route unchanged
    assert answer["EndpointStatus"] == "InService" and answer["EndpointConfigName"] == "config-v1"
    assert "bad weights" in answer["FailureReason"]
    assert [r.config_name for r in routes] == ["config-v1"]
    # AND the deployer's verification reports the silent rollback as a failed deployment
    with pytest.raises(DeploymentFailedError, match="rolled the deployment back"):
        evaluate_endpoint(describe_endpoint_state(sagemaker, ENDPOINT), "config-v3")


def test_a_new_endpoint_whose_server_fails_is_failed(sagemaker: Any, served: Any) -> None:
    sagemaker.create_endpoint(EndpointName=ENDPOINT, EndpointConfigName="config-v3")
    answer = _wait_for(sagemaker, "Failed")
    assert "model server did not start" in answer["FailureReason"]


def test_a_metadata_update_keeps_the_approval_as_sagemaker_does(sagemaker: Any) -> None:
    # GIVEN an approved model package (the deployer's champion gate then records its comparison)
    from handlers.registry.client import ModelRegistry  # noqa: PLC0415

    sagemaker.create_model_package_group(ModelPackageGroupName="mlp-dev-models")
    registry = ModelRegistry(sagemaker)
    version = registry.register(
        "mlp-dev-models", "s3://artifacts/v1/model.tar.gz", "image", metrics={"accuracy": 0.9}
    )
    registry.approve(version.arn, "passed review")
    # WHEN only its metadata is updated
    sagemaker.update_model_package(
        ModelPackageArn=version.arn, CustomerMetadataProperties={"comparison.decision": "promote"}
    )
    # THEN the approval and its description stay, as in SageMaker (plain moto resets both)
    described = registry.describe(version.arn)
    assert (described.status, described.approval_description) == ("Approved", "passed review")
    assert described.customer_metadata == {"comparison.decision": "promote"}


def test_a_dead_model_server_is_replaced_and_the_endpoint_keeps_serving(sagemaker: Any, served: Any) -> None:
    watcher, (routes, containers, _) = served
    sagemaker.create_endpoint(EndpointName=ENDPOINT, EndpointConfigName="config-v1")
    _wait_for(sagemaker, "InService")
    first = containers["model-v1"]
    # WHEN its model server dies (killed, out of memory)
    first.process.returncode = -9
    for _ in range(2000):
        if containers["model-v1"] is not first:
            break
        threading.Event().wait(0.005)
    # THEN a new server serves the same config, the route points at it, and the endpoint stays InService
    replacement = containers["model-v1"]
    assert replacement is not first and routes[-1].url == replacement.url
    assert routes[-1].config_name == "config-v1"
    assert sagemaker.describe_endpoint(EndpointName=ENDPOINT)["EndpointStatus"] == "InService"


def test_a_dead_model_server_that_cannot_be_replaced_fails_the_endpoint(sagemaker: Any, served: Any) -> None:
    watcher, (routes, containers, broken) = served
    sagemaker.create_endpoint(EndpointName=ENDPOINT, EndpointConfigName="config-v1")
    _wait_for(sagemaker, "InService")
    # WHEN the server dies and its replacement cannot start
    broken.add("model-v1")
    containers["model-v1"].process.returncode = 1
    answer = _wait_for(sagemaker, "Failed")
    # THEN the endpoint says Failed, with the reason, instead of InService with nothing behind it
    assert "could not be replaced" in answer["FailureReason"]


def test_adding_a_tag_that_exists_replaces_its_value_as_sagemaker_does(sagemaker: Any) -> None:
    # GIVEN an endpoint tagged by a first deployment
    arn = sagemaker.create_endpoint(EndpointName=ENDPOINT, EndpointConfigName="config-v1")["EndpointArn"]
    sagemaker.add_tags(ResourceArn=arn, Tags=[{"Key": "ml-platform:expected-config", "Value": "config-v1"}])
    # WHEN a second deployment tags it again
    sagemaker.add_tags(ResourceArn=arn, Tags=[{"Key": "ml-platform:expected-config", "Value": "config-v2"}])
    # THEN the key is there once, with the new value
    tags = sagemaker.list_tags(ResourceArn=arn)["Tags"]
    assert [t for t in tags if t["Key"] == "ml-platform:expected-config"] == [
        {"Key": "ml-platform:expected-config", "Value": "config-v2"}
    ]
