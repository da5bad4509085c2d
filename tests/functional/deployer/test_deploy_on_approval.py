"""The approval event: a new model and config, then CreateEndpoint or a blue/green UpdateEndpoint."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest
from botocore.stub import ANY

from handlers.deployer.errors import DeploymentConflictError
from handlers.deployer.plan import TAG_EXPECTED_CONFIG
from handlers.registry.client import ModelVersion
from tests.functional.deployer.conftest import (
    ALARMS,
    CAPTURE_URI,
    ENDPOINT,
    ENDPOINT_ARN,
    GROUP,
    IMAGE,
    KMS_KEY,
    PLANNED_ENV,
    ROLE,
    Approved,
    Split,
    approval_event,
    emitted_metrics,
    endpoint_description,
    handle,
)

NAME = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$")


def endpoint_tags(sagemaker: Any) -> dict[str, str]:
    # moto appends re-added keys instead of replacing them; the last one is the live value.
    return {tag["Key"]: tag["Value"] for tag in sagemaker.list_tags(ResourceArn=ENDPOINT_ARN)["Tags"]}


def first_deployment(approved: Approved, split: Split) -> tuple[ModelVersion, dict[str, Any]]:
    """Version 1 deployed to a new endpoint, all on moto."""
    version = approved(run=1)
    split(stubbed=())
    return version, handle(approval_event(version))


def test_first_deployment_creates_the_endpoint(moto_sagemaker: Any, approved: Approved, split: Split) -> None:
    # GIVEN an approved version and no endpoint yet
    version = approved(run=1)
    client, _ = split(stubbed=())

    # WHEN its approval event arrives
    result = handle(approval_event(version))

    # THEN a model, a config and the endpoint are created, and the expected config is recorded
    assert result["status"] == result["action"] == "created"
    assert client.names()[-1] == "create_endpoint"
    endpoint = moto_sagemaker.describe_endpoint(EndpointName=ENDPOINT)
    assert endpoint["EndpointConfigName"] == result["expected_config"]
    assert endpoint_tags(moto_sagemaker)[TAG_EXPECTED_CONFIG] == result["expected_config"]
    assert result["model_package_arn"] == version.arn


def test_the_model_serves_the_package_in_isolation(
    moto_sagemaker: Any, approved: Approved, split: Split
) -> None:
    # GIVEN an approved version WHEN it is deployed
    version = approved(run=1)
    client, _ = split(stubbed=())
    result = handle(approval_event(version))

    # THEN the model runs the package's artifact with the serving contract, isolated, on the stack's
    # image for the endpoint's (GPU) instance family, whatever image the package names
    request = client.request("create_model")
    assert request["ModelName"] == result["model_name"]
    assert NAME.match(request["ModelName"]) and request["ModelName"].startswith(f"{GROUP}-v1-")
    container = request["PrimaryContainer"]
    assert version.image_uri == IMAGE
    assert container["Image"] == PLANNED_ENV["SERVING_IMAGE_GPU"]
    assert "/mlp-dev/serving-gpu:" in container["Image"]
    assert container["ModelDataUrl"] == version.artifact_uri
    assert container["Environment"] == {
        "TS_DEFAULT_WORKERS_PER_MODEL": "1",  # the package's own environment is kept
        "SAGEMAKER_PROGRAM": "inference.py",
        "SAGEMAKER_SUBMIT_DIRECTORY": "/opt/ml/model/code",
        "SAGEMAKER_REGION": "us-east-1",
        "MODEL_SERVER_PRECISION": "float32",  # the stack's serving.precision
        "MODEL_VERSION": "1",  # the serving handler names the version in every answer
        # the model server's CloudWatch metrics carry the endpoint and variant as dimensions
        "ENDPOINT_NAME": ENDPOINT,
        "VARIANT_NAME": "primary",
    }
    assert request["ExecutionRoleArn"] == ROLE
    assert request["EnableNetworkIsolation"] is True
    described = moto_sagemaker.describe_model(ModelName=request["ModelName"])
    assert described["PrimaryContainer"]["Image"] == container["Image"]


def test_the_config_captures_data_with_kms(moto_sagemaker: Any, approved: Approved, split: Split) -> None:
    # GIVEN a dev stack on ml.g4dn (local NVMe storage) capturing 100 % of requests
    _, result = first_deployment(approved, split)

    # WHEN the created config is read back from SageMaker
    config = moto_sagemaker.describe_endpoint_config(EndpointConfigName=result["expected_config"])

    # THEN one variant with the stable name, and capture of inputs and outputs, encrypted
    (variant,) = config["ProductionVariants"]
    assert variant["VariantName"] == "primary"
    assert variant["ModelName"] == result["model_name"]
    assert (variant["InstanceType"], variant["InitialInstanceCount"]) == ("ml.g4dn.xlarge", 1)
    capture = config["DataCaptureConfig"]
    assert capture["EnableCapture"] is True
    assert capture["InitialSamplingPercentage"] == 100
    assert capture["DestinationS3Uri"] == CAPTURE_URI
    assert capture["KmsKeyId"] == KMS_KEY
    assert {option["CaptureMode"] for option in capture["CaptureOptions"]} == {"Input", "Output"}
    # SageMaker refuses a volume KMS key on instance types with local storage (hardware-encrypted).
    assert "KmsKeyId" not in config


def test_the_config_encrypts_volumes_where_sagemaker_allows_it(
    deploy_env: Callable[..., None], moto_sagemaker: Any, approved: Approved, split: Split
) -> None:
    # GIVEN a prod-shaped stack on an instance type without local storage, sampling 20 %
    deploy_env(
        INSTANCE_TYPE="ml.p3.2xlarge",
        INITIAL_INSTANCE_COUNT="2",
        MIN_INSTANCES="2",
        OFF_HOURS="",  # prod keeps its capacity around the clock
        ENVIRONMENT="prod",
        DATA_CAPTURE_PERCENT="20",
    )

    # WHEN a version is deployed
    _, result = first_deployment(approved, split)

    # THEN the config carries the KMS key and the prod instance count
    config = moto_sagemaker.describe_endpoint_config(EndpointConfigName=result["expected_config"])
    assert config["KmsKeyId"] == KMS_KEY
    assert config["ProductionVariants"][0]["InitialInstanceCount"] == 2
    assert config["DataCaptureConfig"]["InitialSamplingPercentage"] == 20


def blue_green(routing: dict[str, Any], timeout: int) -> dict[str, Any]:
    return {
        "BlueGreenUpdatePolicy": {
            "TrafficRoutingConfiguration": routing,
            "TerminationWaitInSeconds": 120,
            "MaximumExecutionTimeoutInSeconds": timeout,
        },
        "AutoRollbackConfiguration": {"Alarms": [{"AlarmName": name} for name in ALARMS]},
    }


STRATEGIES = {
    # strategy: (extra environment, expected DeploymentConfig, the waits SageMaker makes)
    "all-at-once": (
        {},
        blue_green({"Type": "ALL_AT_ONCE", "WaitIntervalInSeconds": 600}, 2520),
        600 + 120,
    ),
    "canary": (
        {"CANARY_PERCENT": "10"},
        blue_green(
            {
                "Type": "CANARY",
                "WaitIntervalInSeconds": 600,
                "CanarySize": {"Type": "CAPACITY_PERCENT", "Value": 10},
            },
            3120,
        ),
        2 * 600 + 120,
    ),
    "linear": (
        {"LINEAR_STEP_PERCENT": "25"},
        blue_green(
            {
                "Type": "LINEAR",
                "WaitIntervalInSeconds": 600,
                "LinearStepSize": {"Type": "CAPACITY_PERCENT", "Value": 25},
            },
            4320,
        ),
        4 * 600 + 120,
    ),
}


@pytest.mark.parametrize("strategy", sorted(STRATEGIES))
def test_an_update_is_blue_green_with_rollback(
    *,
    deploy_env: Callable[..., None],
    moto_sagemaker: Any,
    approved: Approved,
    split: Split,
    capsys: pytest.CaptureFixture[str],
    strategy: str,
) -> None:
    # GIVEN version 1 live on the endpoint, and version 2 approved, under this strategy
    environment, expected_deployment, waits = STRATEGIES[strategy]
    deploy_env(DEPLOYMENT_STRATEGY=strategy, **environment)
    first, live = first_deployment(approved, split)
    second = approved(run=2)
    client, stubber = split()
    stubber.add_response(
        "describe_endpoint",
        endpoint_description("InService", live["expected_config"]),
        {"EndpointName": ENDPOINT},
    )
    stubber.add_response(
        "update_endpoint",
        {"EndpointArn": ENDPOINT_ARN},
        {
            "EndpointName": ENDPOINT,
            "EndpointConfigName": ANY,
            "DeploymentConfig": expected_deployment,
            "RetainAllVariantProperties": True,
        },
    )

    # WHEN version 2's approval event arrives
    result = handle(approval_event(second))

    # THEN the endpoint is updated, blue/green, to a NEW config of a NEW model
    stubber.assert_no_pending_responses()
    update = client.request("update_endpoint")
    assert result["status"] == "updated"
    assert update["EndpointConfigName"] == result["expected_config"] != live["expected_config"]
    assert result["model_name"] != live["model_name"]
    assert result["previous_config"] == live["expected_config"]
    assert result["deployment_config"] == expected_deployment
    # ... the execution timeout outlasts every wait ...
    policy = update["DeploymentConfig"]["BlueGreenUpdatePolicy"]
    assert policy["MaximumExecutionTimeoutInSeconds"] > waits
    # ... the variant keeps its name, so the update may retain autoscaled counts ...
    new_config = moto_sagemaker.describe_endpoint_config(EndpointConfigName=result["expected_config"])
    assert [v["VariantName"] for v in new_config["ProductionVariants"]] == ["primary"]
    # ... the model-level lineage is tagged, and the expected config is recorded on the endpoint ...
    assert endpoint_tags(moto_sagemaker)[TAG_EXPECTED_CONFIG] == result["expected_config"]
    assert second.arn != first.arn and result["model_version"] == 2
    # ... and nothing was deleted: the config in use and its model still exist
    assert not [name for name in client.names() if name.startswith("delete")]
    assert moto_sagemaker.describe_endpoint_config(EndpointConfigName=live["expected_config"])
    assert moto_sagemaker.describe_model(ModelName=live["model_name"])
    assert "DeploymentStarted" in {name for name, _ in emitted_metrics(capsys.readouterr().out)}


def test_a_retried_approval_changes_nothing(moto_sagemaker: Any, approved: Approved, split: Split) -> None:
    # GIVEN a version already deployed by its approval event
    version, first = first_deployment(approved, split)

    # WHEN the same event is delivered again (EventBridge is at-least-once; Lambda retries)
    client, _ = split(stubbed=())
    again = handle(approval_event(version))

    # THEN the same names are derived, nothing new is created, and the endpoint is untouched
    assert again["status"] == "unchanged"
    assert again["expected_config"] == first["expected_config"]
    assert "update_endpoint" not in client.names() and "create_endpoint" not in client.names()
    assert len(moto_sagemaker.list_endpoint_configs()["EndpointConfigs"]) == 1


def test_a_busy_endpoint_is_a_conflict(approved: Approved, split: Split) -> None:
    # GIVEN an endpoint already updating to some other config
    version = approved(run=1)
    client, stubber = split()
    stubber.add_response(
        "describe_endpoint",
        endpoint_description("Updating", "mlp-dev-models-v0-aaaaaaaa", pending="mlp-dev-models-v9-bbbbbbbb"),
    )

    # WHEN an approval arrives THEN the deployer refuses to stack an update on it
    with pytest.raises(DeploymentConflictError, match="Updating"):
        handle(approval_event(version))
    assert "update_endpoint" not in client.names()


@pytest.mark.parametrize(
    ("detail", "why"),
    [
        ({"ModelPackageGroupName": "other-team-models"}, "group"),
        ({"ModelApprovalStatus": "PendingManualApproval"}, "PendingManualApproval"),
        ({"ModelApprovalStatus": "Rejected"}, "Rejected"),
    ],
)
def test_events_not_for_this_deployer_are_ignored(
    approved: Approved, split: Split, detail: dict[str, Any], why: str
) -> None:
    # GIVEN an approved version WHEN an event for another group, or not an approval, arrives
    version = approved(run=1)
    client, _ = split(stubbed=())
    result = handle(approval_event(version, **detail))

    # THEN nothing is called and the answer says why
    assert result["status"] == "ignored"
    assert why in result["reason"]
    assert client.calls == []


@pytest.mark.parametrize("status", ["PendingManualApproval", "Rejected"])
def test_an_approval_event_for_an_unapproved_package_is_refused(
    approved: Approved, split: Split, capsys: pytest.CaptureFixture[str], status: str
) -> None:
    # GIVEN a version whose status changed after the approval event was sent (the race)
    version = approved(run=1, status=status)
    client, _ = split(stubbed=())

    # WHEN the stale "Approved" event arrives
    result = handle(approval_event(version))

    # THEN the registry, read now, wins: nothing is created, and the refusal is counted
    assert result["status"] == "refused"
    assert status in result["reason"]
    assert client.names() == ["describe_model_package"]
    assert ("DeploymentRefused", {"EndpointName": ENDPOINT}) in [
        (name, {k: v for k, v in dims.items() if k == "EndpointName"})
        for name, dims in emitted_metrics(capsys.readouterr().out)
    ]
