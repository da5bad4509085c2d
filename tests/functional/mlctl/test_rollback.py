"""``mlctl models rollback``: reject what serves now, deploy an older approved version the deployer's way."""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Iterator
from typing import Any

import boto3
import pytest
from botocore.response import StreamingBody
from botocore.stub import ANY, Stubber

from handlers.deployer.handler import ModelPackageStateChange
from handlers.deployer.plan import (
    TAG_EXPECTED_CONFIG,
    TAG_MODEL_PACKAGE,
    approval_event_pattern,
)
from mlctl import models
from tests.functional.mlctl.conftest import (
    DEPLOYER_FUNCTION,
    ENDPOINT_ARN,
    GROUP,
    REGION,
    Platform,
    Result,
    SplitClient,
    use_clients,
)


def endpoint_tags(sagemaker: Any) -> dict[str, str]:
    # moto appends re-added keys instead of replacing them; the last one is the live value.
    return {tag["Key"]: tag["Value"] for tag in sagemaker.list_tags(ResourceArn=ENDPOINT_ARN)["Tags"]}


@pytest.fixture
def lambda_stub() -> Iterator[tuple[SplitClient, Stubber]]:
    """A Stubber-backed Lambda client, wrapped so that every request (the event sent) is recorded."""
    client = boto3.client("lambda", region_name=REGION)
    with Stubber(client) as stubber:
        yield SplitClient(client, client, frozenset()), stubber
        stubber.assert_no_pending_responses()


def lambda_answer(document: dict[str, Any], *, function_error: str | None = None) -> dict[str, Any]:
    data = json.dumps(document).encode()
    response: dict[str, Any] = {"StatusCode": 200, "Payload": StreamingBody(io.BytesIO(data), len(data))}
    if function_error:
        response["FunctionError"] = function_error
    return response


def test_rollback_on_aws_invokes_the_deployer_with_an_approval_event(
    platform: Platform,
    mlctl: Callable[..., Result],
    monkeypatch: pytest.MonkeyPatch,
    lambda_stub: tuple[SplitClient, Stubber],
) -> None:
    # GIVEN v1 approved, v2 approved and serving, and a v3 whose deployment SageMaker rolled back
    # (the endpoint's tags name v3, but the live config is v2's)
    v1, v2, v3 = platform.register(1), platform.register(2), platform.register(3)
    platform.deploy(v2)
    platform.sagemaker.add_tags(
        ResourceArn=ENDPOINT_ARN,
        Tags=[
            {"Key": TAG_EXPECTED_CONFIG, "Value": "v3-config"},
            {"Key": TAG_MODEL_PACKAGE, "Value": v3.arn},
        ],
    )
    lambda_client, stubber = lambda_stub
    stubber.add_response(
        "invoke",
        lambda_answer(
            {"status": "updated", "expected_config": "mlp-dev-models-v1-0a1b2c3d", "model_version": 1}
        ),
        {"FunctionName": DEPLOYER_FUNCTION, "InvocationType": "RequestResponse", "Payload": ANY},
    )
    use_clients(monkeypatch, models, **{"lambda": lambda_client})

    # WHEN the deployed version is rolled back
    result = mlctl("models", "rollback", "--reason", "p99 latency doubled", *platform.target)

    # THEN the version that serves (v2, not v3) is rejected with the reason
    assert result.code == 0, result.err
    assert platform.registry.describe(v2.arn).status == "Rejected"
    assert platform.registry.describe(v2.arn).approval_description == "p99 latency doubled"
    assert platform.registry.describe(v3.arn).status == "Approved"
    # AND the deployer got the event SageMaker sends when v1 is approved, which its rule matches
    (name, request), *_ = lambda_client.calls
    event = json.loads(request["Payload"])
    pattern = approval_event_pattern(GROUP)
    assert event["source"] in pattern["source"] and event["detail-type"] in pattern["detail-type"]
    assert ModelPackageStateChange.from_detail(event["detail"]) == ModelPackageStateChange(
        group=GROUP, version=1, arn=v1.arn, approval_status="Approved"
    )
    assert event["resources"] == [v1.arn]
    # AND its answer is reported, with how to follow the deployment
    assert "deploying mlp-dev-models/1: updated" in result.out
    assert "mlctl deploy wait --expected-config mlp-dev-models-v1-0a1b2c3d" in result.out


def test_a_failing_deployer_is_one_line(
    platform: Platform,
    mlctl: Callable[..., Result],
    monkeypatch: pytest.MonkeyPatch,
    lambda_stub: tuple[SplitClient, Stubber],
) -> None:
    # GIVEN v1 approved and v2 serving, and a deployer that raises
    platform.register(1)
    platform.deploy(platform.register(2))
    lambda_client, stubber = lambda_stub
    stubber.add_response(
        "invoke",
        lambda_answer(
            {"errorType": "DeploymentConflictError", "errorMessage": "endpoint mlp-dev-endpoint is Updating"},
            function_error="Unhandled",
        ),
    )
    use_clients(monkeypatch, models, **{"lambda": lambda_client})

    # WHEN rolled back
    result = mlctl("models", "rollback", "--reason", "bad model", *platform.target)

    # THEN exit 1, one line with the deployer's error
    assert result.code == 1
    assert result.err.strip() == (
        f"mlctl models rollback: the deployer {DEPLOYER_FUNCTION} failed: DeploymentConflictError: "
        "endpoint mlp-dev-endpoint is Updating"
    )


def test_rollback_refuses_when_nothing_older_is_approved(
    platform: Platform, mlctl: Callable[..., Result]
) -> None:
    # GIVEN v1 rejected and v2 serving
    platform.register(1, status="Rejected")
    v2 = platform.register(2)
    platform.deploy(v2)

    # WHEN rolled back
    result = mlctl("models", "rollback", "--reason", "bad model", *platform.target)

    # THEN it is refused clearly, and the serving version was not rejected
    assert result.code == 1
    assert "nothing to roll back to: no approved version of mlp-dev-models is older than" in result.err
    assert platform.registry.describe(v2.arn).status == "Approved"


def test_rollback_to_a_rejected_version_is_refused(platform: Platform, mlctl: Callable[..., Result]) -> None:
    # GIVEN v1 rejected and v2 serving
    platform.register(1, status="Rejected")
    v2 = platform.register(2)
    platform.deploy(v2)

    # WHEN rolled back --to 1
    result = mlctl("models", "rollback", "--to", "1", "--reason", "bad model", *platform.target)

    # THEN it says v1 must be approved first; nothing changed
    assert result.code == 1
    assert "version 1 is Rejected; only an Approved version can be deployed" in result.err
    assert platform.registry.describe(v2.arn).status == "Approved"
