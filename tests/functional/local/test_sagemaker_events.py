"""SageMaker's EventBridge events as the emulator sends them, at their source (moto in-process with
the hosting extension): when AWS sends them, and in the shapes of the real ones (tests/events/)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

from emulator import hosting
from handlers.registry.client import ModelRegistry, ModelVersion

EVENTS = Path(__file__).resolve().parents[2] / "events"
REGION = "us-east-1"
ACCOUNT = "123456789012"
GROUP = "mlp-dev-models"
ENDPOINT = "mlp-dev-endpoint"
IMAGE = "763104351884.dkr.ecr.us-east-1.amazonaws.com/pytorch-inference:2.3.0-cpu-py311"
ISO_SECONDS = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ")


def real(name: str) -> dict[str, Any]:
    return dict(json.loads((EVENTS / name).read_text()))


@pytest.fixture
def sagemaker(aws_credentials: None) -> Iterator[tuple[Any, list[dict[str, Any]]]]:
    """A moto SageMaker client and the events the emulator's SageMaker sent, in order."""
    sent: list[dict[str, Any]] = []
    undo = hosting.extend_moto(sent.append)  # moto's classes are shared by the session: undone below
    try:
        with mock_aws():
            client = boto3.client("sagemaker", region_name=REGION)
            client.create_model_package_group(ModelPackageGroupName=GROUP)
            yield client, sent
    finally:
        undo()


def register(client: Any) -> ModelVersion:
    return ModelRegistry(client).register(
        GROUP,
        "s3://artifacts/run-1/model.tar.gz",
        IMAGE,
        metrics={"accuracy": 0.95},
        evaluation_report_uri="s3://artifacts/run-1/evaluation.json",
        description="digits-cnn",
    )


def test_approving_a_version_sends_the_model_package_event_in_its_real_shape(sagemaker: Any) -> None:
    client, sent = sagemaker
    # GIVEN a registered version (its creation is an event too, PendingManualApproval)
    version = register(client)
    assert [e["detail"]["ModelApprovalStatus"] for e in sent] == ["PendingManualApproval"]
    # WHEN it is approved
    ModelRegistry(client).approve(version.arn, "reviewed")
    # THEN one more event: the real envelope, about this version, Approved
    expected = real("eventbridge_model_package_approved.json")
    event = sent[-1]
    assert len(sent) == 2 and set(event) == set(expected)
    assert (event["source"], event["detail-type"], event["resources"]) == (
        expected["source"],
        expected["detail-type"],
        [version.arn],
    )
    detail = event["detail"]
    assert set(detail) <= set(expected["detail"])
    assert (detail["ModelPackageGroupName"], detail["ModelPackageVersion"], detail["ModelPackageArn"]) == (
        GROUP,
        1,
        version.arn,
    )
    assert (detail["ModelApprovalStatus"], detail["ApprovalDescription"]) == ("Approved", "reviewed")
    assert detail["InferenceSpecification"]["Containers"][0]["ModelDataUrl"] == version.artifact_uri
    assert ISO_SECONDS.fullmatch(detail["CreationTime"]) and ISO_SECONDS.fullmatch(event["time"])
    assert (event["account"], event["region"]) == (ACCOUNT, REGION)


def test_a_metadata_update_of_an_approved_version_sends_nothing(sagemaker: Any) -> None:
    client, sent = sagemaker
    version = ModelRegistry(client).approve(register(client).arn, "reviewed")
    before = len(sent)
    # WHEN only its metadata changes (the champion gate records its comparison)
    client.update_model_package(
        ModelPackageArn=version.arn, CustomerMetadataProperties={"comparison.decision": "promote"}
    )
    # THEN no event: the approval status did not change
    assert len(sent) == before


def test_an_endpoint_being_created_or_updated_sends_its_state_change_in_its_real_shape(
    sagemaker: Any,
) -> None:
    client, sent = sagemaker
    for config in ("config-v1", "config-v2"):
        client.create_model(
            ModelName=f"model-{config}",
            ExecutionRoleArn=f"arn:aws:iam::{ACCOUNT}:role/model",
            PrimaryContainer={"Image": IMAGE, "ModelDataUrl": "s3://artifacts/model.tar.gz"},
        )
        client.create_endpoint_config(
            EndpointConfigName=config,
            ProductionVariants=[
                {
                    "VariantName": "primary",
                    "ModelName": f"model-{config}",
                    "InstanceType": "ml.m5.large",
                    "InitialInstanceCount": 1,
                }
            ],
        )
    # WHEN the deployer creates the endpoint, and (once it serves) updates it
    client.create_endpoint(
        EndpointName=ENDPOINT,
        EndpointConfigName="config-v1",
        Tags=[{"Key": "ml-platform:expected-config", "Value": "config-v1"}],
    )
    hosting.sagemaker_backend(ACCOUNT, REGION).endpoints[ENDPOINT].endpoint_status = "InService"
    client.update_endpoint(EndpointName=ENDPOINT, EndpointConfigName="config-v2")
    # THEN each call sent the endpoint's state change, with the real event's fields
    expected = real("eventbridge_endpoint_state_change.json")
    creating, updating = sent
    assert set(creating) == set(expected) and set(creating["detail"]) == set(expected["detail"])
    assert creating["detail-type"] == expected["detail-type"] and creating["source"] == expected["source"]
    assert (creating["detail"]["EndpointStatus"], updating["detail"]["EndpointStatus"]) == (
        "CREATING",
        "UPDATING",
    )
    assert creating["detail"]["EndpointName"] == ENDPOINT and creating["resources"] == [
        creating["detail"]["EndpointArn"]
    ]
    assert creating["detail"]["Tags"] == {"ml-platform:expected-config": "config-v1"}
    assert isinstance(creating["detail"]["CreationTime"], float)
