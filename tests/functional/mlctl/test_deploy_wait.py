"""``mlctl deploy wait``: InService on the expected config, then a 200 smoke request; else exit 1."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber

from handlers.common.input_schema import instance_model_for, parse_input_schema
from handlers.deployer.plan import TAG_EXPECTED_CONFIG
from handlers.registry.client import ModelVersion
from mlctl import deploy_wait
from tests.functional.mlctl.conftest import (
    API_KEY,
    ENDPOINT,
    ENDPOINT_ARN,
    REGION,
    ApiServer,
    Platform,
    Result,
    endpoint_description,
    set_outputs,
    use_clients,
)

OLD, NEW = "mlp-dev-models-v1-0a1b2c3d", "mlp-dev-models-v2-4c1f9a07"
TABULAR_SCHEMA = json.dumps({"kind": "tabular", "feature_names": ["age", "bmi"]})


@pytest.fixture
def stubbed(platform: Platform, monkeypatch: pytest.MonkeyPatch) -> Iterator[Stubber]:
    """deploy wait's SageMaker client on a Stubber: each DescribeEndpoint answer is queued."""
    client = boto3.client("sagemaker", region_name=REGION)
    with Stubber(client) as stubber:
        use_clients(monkeypatch, deploy_wait, sagemaker=client)
        yield stubber
        stubber.assert_no_pending_responses()


def queue(stubber: Stubber, *states: dict[str, Any]) -> None:
    for state in states:
        stubber.add_response("describe_endpoint", state, {"EndpointName": ENDPOINT})


def with_api(platform: Platform, api: ApiServer) -> None:
    """Outputs pointing at the local API, with an API key stored in (moto's) API Gateway."""
    key_id = boto3.client("apigateway", region_name=REGION).create_api_key(
        name="mlp-dev-key", value=API_KEY, enabled=True
    )["id"]
    set_outputs(platform, apiUrl=api.url, apiKeyId=key_id)


def test_a_deployment_that_lands_passes(platform: Platform, mlctl: Callable[..., Result]) -> None:
    # GIVEN the deployer deployed v1 (CreateEndpoint, tagged with the expected config)
    config = platform.deploy(platform.register(1))

    # WHEN CI waits for it (expected config from the endpoint's tag)
    result = mlctl("deploy", "wait", "--no-smoke", "--poll", "0", *platform.target)

    # THEN it passes, with progress lines that carry the elapsed time
    assert result.code == 0, result.err
    assert f"endpoint {ENDPOINT} is InService on {config}" in result.out
    assert all(line.startswith("[") and "s] " in line for line in result.out.strip().splitlines())


def test_waits_through_updating_and_reports_progress(
    platform: Platform, stubbed: Stubber, mlctl: Callable[..., Result]
) -> None:
    # GIVEN an endpoint updating towards NEW, then InService on NEW
    queue(
        stubbed,
        endpoint_description("Updating", OLD, PendingDeploymentSummary={"EndpointConfigName": NEW}),
        endpoint_description("Updating", OLD, PendingDeploymentSummary={"EndpointConfigName": NEW}),
        endpoint_description("InService", NEW),
    )

    # WHEN waited for with an explicit config
    result = mlctl("deploy", "wait", "--expected-config", NEW, "--no-smoke", "--poll", "0", *platform.target)

    # THEN it passes after three checks, saying each state once
    assert result.code == 0, result.err
    lines = result.out.strip().splitlines()
    assert sum(f"is Updating towards {NEW}" in line for line in lines) == 1
    assert f"is InService on {NEW} (3 checks)" in result.out


def test_a_silent_rollback_fails(platform: Platform, mlctl: Callable[..., Result]) -> None:
    # GIVEN v1 serving, while the deployer's tag says it deployed NEW (SageMaker rolled NEW back)
    config = platform.deploy(platform.register(1))
    platform.sagemaker.add_tags(ResourceArn=ENDPOINT_ARN, Tags=[{"Key": TAG_EXPECTED_CONFIG, "Value": NEW}])

    # WHEN waited for
    result = mlctl("deploy", "wait", "--no-smoke", "--poll", "0", *platform.target)

    # THEN InService is not enough: exit 1, one line naming both configs
    assert result.code == 1
    assert result.err.strip().splitlines() == [
        f"mlctl deploy wait: endpoint {ENDPOINT} is InService on {config}, not the deployed {NEW}: "
        "SageMaker rolled the deployment back"
    ]


@pytest.mark.parametrize("status", ["RollingBack", "UpdateRollbackFailed", "Failed"])
def test_a_rollback_or_failure_fails(
    status: str, platform: Platform, stubbed: Stubber, mlctl: Callable[..., Result]
) -> None:
    # GIVEN an update whose alarm fired
    reason = "alarm mlp-dev-endpoint-5xx-rate went into ALARM"
    queue(
        stubbed,
        endpoint_description("Updating", OLD, PendingDeploymentSummary={"EndpointConfigName": NEW}),
        endpoint_description(status, OLD, FailureReason=reason),
    )

    # WHEN waited for
    result = mlctl("deploy", "wait", "--expected-config", NEW, "--no-smoke", "--poll", "0", *platform.target)

    # THEN exit 1 with the status and SageMaker's reason on one line
    assert result.code == 1
    assert result.err.strip() == (
        f"mlctl deploy wait: endpoint {ENDPOINT} is {status} while deploying {NEW}: {reason}"
    )


def test_a_deployment_still_running_at_the_deadline_times_out(
    platform: Platform, stubbed: Stubber, mlctl: Callable[..., Result]
) -> None:
    # GIVEN an endpoint still updating
    queue(
        stubbed, endpoint_description("Updating", OLD, PendingDeploymentSummary={"EndpointConfigName": NEW})
    )

    # WHEN waited for with no time left
    result = mlctl(
        "deploy", "wait", "--expected-config", NEW, "--timeout", "0", "--no-smoke", *platform.target
    )

    # THEN exit 1: a timeout is not a success
    assert result.code == 1
    assert result.err.startswith("mlctl deploy wait: timed out after 0 s (1 checks)")
    assert f"Updating towards {NEW}" in result.err


def test_model_version_waits_for_the_deployer(platform: Platform, mlctl: Callable[..., Result]) -> None:
    # GIVEN v1 deployed
    config = platform.deploy(platform.register(1))

    # WHEN CI waits for v1, and for v2 which the deployer has not started
    done = mlctl("deploy", "wait", "--model-version", "1", "--no-smoke", *platform.target)
    pending = mlctl(
        "deploy", "wait", "--model-version", "2", "--timeout", "0", "--no-smoke", *platform.target
    )

    # THEN v1 passes on its config; v2 times out saying what it waited for
    assert done.code == 0, done.err
    assert f"InService on {config}" in done.out
    assert pending.code == 1
    assert "waiting for the deployer to deploy version 2 (its last deployment is version 1)" in pending.err


def test_an_endpoint_the_deployer_never_tagged_needs_a_config(
    platform: Platform, mlctl: Callable[..., Result]
) -> None:
    # GIVEN an endpoint created outside the deployer (no expected-config tag)
    sagemaker = platform.sagemaker
    sagemaker.create_model(
        ModelName="manual",
        ExecutionRoleArn="arn:aws:iam::123456789012:role/r",
        PrimaryContainer={"Image": "image:1"},
    )
    sagemaker.create_endpoint_config(
        EndpointConfigName="manual",
        ProductionVariants=[
            {
                "VariantName": "primary",
                "ModelName": "manual",
                "InstanceType": "ml.m5.large",
                "InitialInstanceCount": 1,
            }
        ],
    )
    sagemaker.create_endpoint(EndpointName=ENDPOINT, EndpointConfigName="manual")

    # WHEN waited for without --expected-config THEN it says what to pass
    result = mlctl("deploy", "wait", "--no-smoke", *platform.target)
    assert result.code == 1
    assert "pass --expected-config or --model-version" in result.err


def register_with_schema(platform: Platform, run: int, schema: str = TABULAR_SCHEMA) -> ModelVersion:
    """Version ``run`` as the pipeline leaves it: its evaluate step wrote the model's input schema next
    to the evaluation report the version points at."""
    s3 = boto3.client("s3", region_name=REGION)
    s3.create_bucket(Bucket="mlp-dev-artifacts")
    folder = f"evaluation/run-{run}"
    s3.put_object(Bucket="mlp-dev-artifacts", Key=f"{folder}/evaluation.json", Body=b"{}")
    s3.put_object(Bucket="mlp-dev-artifacts", Key=f"{folder}/input-schema.json", Body=schema.encode())
    return platform.register(run, evaluation_report_uri=f"s3://mlp-dev-artifacts/{folder}/evaluation.json")


def test_the_smoke_request_uses_the_api_key_and_the_model_schema(
    platform: Platform, api: ApiServer, mlctl: Callable[..., Result]
) -> None:
    # GIVEN v1 (a tabular model with its input schema) deployed, and the API with its key
    platform.deploy(register_with_schema(platform, 1))
    with_api(platform, api)

    # WHEN waited for with the smoke request on (the default)
    result = mlctl("deploy", "wait", "--poll", "0", *platform.target)

    # THEN one POST to /v1/predict with the stored key and a sample instance of the schema
    assert result.code == 0, result.err
    (request,) = api.requests
    assert request["path"] == "/live/v1/predict"
    assert request["headers"]["x-api-key"] == API_KEY
    assert json.loads(request["body"]) == {"instances": [[0.0, 0.0]]}
    assert "smoke request: HTTP 200" in result.out


def test_a_failing_smoke_request_fails_the_deployment(
    platform: Platform, api: ApiServer, mlctl: Callable[..., Result]
) -> None:
    # GIVEN v1 deployed and an API that answers 502
    platform.deploy(platform.register(1))
    with_api(platform, api)
    api.status, api.answer = 502, {"error": {"code": "model_error", "message": "the model failed"}}

    # WHEN waited for with an explicit smoke body
    body = json.dumps({"instance": {"text": "hello"}})
    result = mlctl("deploy", "wait", "--smoke-body", body, "--poll", "0", *platform.target)

    # THEN exit 1 with the status and the error body on one line
    assert result.code == 1
    assert json.loads(api.requests[0]["body"]) == {"instance": {"text": "hello"}}
    assert "answered HTTP 502" in result.err and "model_error" in result.err
    assert len(result.err.strip().splitlines()) == 1


def test_no_schema_and_no_smoke_body_is_a_failure(platform: Platform, mlctl: Callable[..., Result]) -> None:
    # GIVEN v1 deployed without an input schema anywhere
    platform.deploy(platform.register(1))

    # WHEN waited for with the smoke request on THEN it says how to give one
    result = mlctl("deploy", "wait", "--poll", "0", *platform.target)
    assert result.code == 1
    assert "pass --smoke-body JSON or --no-smoke" in result.err


def test_an_invalid_smoke_body_is_refused_before_waiting(mlctl: Callable[..., Result]) -> None:
    # GIVEN a smoke body with a quoting mistake WHEN waited for THEN exit 2 before any AWS call
    result = mlctl("deploy", "wait", "--smoke-body", "{instance: 1}", "--outputs-file", "/nonexistent.json")
    assert result.code == 2
    assert result.err.startswith("mlctl deploy wait: --smoke-body is not valid JSON")


@pytest.mark.parametrize(
    ("schema", "instance"),
    [
        ({"kind": "text", "max_chars": 5}, {"text": "mlctl"}),
        ({"kind": "tabular", "feature_names": ["a", "b"], "means": [1.5, 2.0], "stds": [1, 1]}, [1.5, 2.0]),
        ({"kind": "image", "height": 2, "width": 2, "channels": 1}, {"b64": "AAAAAA=="}),
    ],
)
def test_sample_instances_pass_the_schema_s_own_validation(schema: dict[str, Any], instance: Any) -> None:
    # GIVEN an input schema
    parsed = parse_input_schema(json.dumps(schema))

    # WHEN a smoke instance is built from it
    sample = deploy_wait.sample_instance(parsed)

    # THEN it is the expected instance, and the API's own validation accepts it
    assert sample == instance
    instance_model_for(parsed).model_validate(sample)


def test_the_prediction_api_s_schema_comes_first(
    platform: Platform, api: ApiServer, mlctl: Callable[..., Result]
) -> None:
    # GIVEN the prediction API Lambda configured for text, and a model version that says tabular
    platform.deploy(register_with_schema(platform, 1))
    role = boto3.client("iam", region_name=REGION).create_role(
        RoleName="mlp-dev-predict-api", AssumeRolePolicyDocument="{}"
    )["Role"]["Arn"]
    boto3.client("lambda", region_name=REGION).create_function(
        FunctionName="mlp-dev-predict-api",
        Runtime="python3.11",
        Role=role,
        Handler="handlers.api.handler.lambda_handler",
        Code={"ZipFile": b"not run in this test"},
        Environment={"Variables": {"MODEL_INPUT_SCHEMA": json.dumps({"kind": "text", "max_chars": 100})}},
    )
    with_api(platform, api)
    outputs = json.loads(platform.outputs_path.read_text())
    set_outputs(platform, **{**outputs, "predictApiFunctionName": "mlp-dev-predict-api"})

    # WHEN waited for
    result = mlctl("deploy", "wait", "--poll", "0", *platform.target)

    # THEN the smoke request follows the schema the API validates with
    assert result.code == 0, result.err
    assert json.loads(api.requests[0]["body"]) == {"instances": [{"text": deploy_wait.SMOKE_TEXT}]}
