"""The Deployer component: approval and endpoint-state rules, a scoped role, one rollout at a time."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from infra.offline import Plan
from infra.stack_config import read_stack_values
from tests.infra.conftest import policy_document


def statements(plan: Plan) -> dict[str, dict[str, Any]]:
    return {s["Sid"]: s for s in policy_document(plan.named("deployer-deployer-policy"))["Statement"]}


def test_an_approved_version_of_this_stacks_group_starts_the_deployer(stack_plan: Plan) -> None:
    pattern = json.loads(stack_plan.named("deployer-approved").inputs["eventPattern"])
    assert pattern["detail-type"] == ["SageMaker Model Package State Change"]
    assert pattern["detail"] == {
        "ModelPackageGroupName": [stack_plan.outputs["modelPackageGroupName"]],
        "ModelApprovalStatus": ["Approved"],
    }
    target = stack_plan.named("deployer-approved-target").inputs
    assert target["arn"] == stack_plan.named("deployer-deployer").outputs["arn"]


def test_every_state_change_of_the_endpoint_is_verified(stack_plan: Plan) -> None:
    pattern = json.loads(stack_plan.named("deployer-endpoint-changed").inputs["eventPattern"])
    assert pattern["detail"] == {"EndpointName": [stack_plan.outputs["endpointName"]]}


def test_only_the_rules_may_invoke_the_deployer(stack_plan: Plan) -> None:
    for key in ("approved", "endpoint-changed"):
        permission = stack_plan.named(f"deployer-{key}-permission").inputs
        assert permission["principal"] == "events.amazonaws.com"
        assert permission["sourceArn"] == stack_plan.named(f"deployer-{key}").outputs["arn"]


def test_one_rollout_at_a_time_and_failures_reach_the_alert_topic(stack_plan: Plan) -> None:
    function = stack_plan.named("deployer-deployer").inputs
    assert function["reservedConcurrentExecutions"] == 1
    assert function["tracingConfig"] == {"mode": "Active"}
    invoke = stack_plan.named("deployer-async").inputs
    assert invoke["destinationConfig"]["onFailure"]["destination"] == stack_plan.outputs["alertTopicArn"]
    alarm = stack_plan.named("deployer-failed-alarm").inputs
    assert alarm["metricName"] == "DeploymentFailed"
    assert alarm["dimensions"] == {"EndpointName": stack_plan.outputs["endpointName"]}
    assert alarm["alarmActions"] == [stack_plan.outputs["alertTopicArn"]]


def test_the_deployer_gets_the_stacks_deployment_settings(stack_plan: Plan) -> None:
    env = stack_plan.named("deployer-deployer").inputs["environment"]["variables"]
    assert env["ENDPOINT_NAME"] == stack_plan.outputs["endpointName"]
    assert env["MODEL_PACKAGE_GROUP"] == stack_plan.outputs["modelPackageGroupName"]
    assert env["SAGEMAKER_EXECUTION_ROLE_ARN"] == stack_plan.outputs["modelRoleArn"]
    assert env["DATA_CAPTURE_S3_URI"] == stack_plan.outputs["dataCaptureUri"]
    assert json.loads(env["ROLLBACK_ALARM_NAMES"]) == stack_plan.outputs["rollbackAlarmNames"]
    expected = {"dev": ("all-at-once", "1"), "prod": ("canary", "2")}[stack_plan.stack]
    assert (env["DEPLOYMENT_STRATEGY"], env["INITIAL_INSTANCE_COUNT"]) == expected


def test_the_role_may_only_roll_out_to_this_endpoint_and_pass_only_the_model_role(stack_plan: Plan) -> None:
    by_sid = statements(stack_plan)
    prefix = "arn:aws:sagemaker:us-east-1:123456789012:"
    group, endpoint = stack_plan.outputs["modelPackageGroupName"], stack_plan.outputs["endpointName"]
    assert sorted(by_sid["RollOutToThisEndpoint"]["Resource"]) == sorted(
        [f"{prefix}model/{group}-*", f"{prefix}endpoint-config/{group}-*", f"{prefix}endpoint/{endpoint}"]
    )
    assert "sagemaker:DeleteEndpointConfig" not in by_sid["RollOutToThisEndpoint"]["Action"]
    assert by_sid["PassModelRoleToSageMaker"]["Resource"] == stack_plan.outputs["modelRoleArn"]
    for statement in by_sid.values():
        actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        assert not any(action == "*" or action.endswith(":*") for action in actions)


def test_a_verified_version_publishes_its_serving_files_where_the_lambdas_read_them(stack_plan: Plan) -> None:
    env = stack_plan.named("deployer-deployer").inputs["environment"]["variables"]
    artifacts = stack_plan.outputs["bucketNames"]["artifacts"]
    # The API reads the schema there and the drift monitor the baseline: one folder for both.
    api_env = stack_plan.named("api-predict-api").inputs["environment"]["variables"]
    drift_env = stack_plan.named("monitoring-drift-monitor").inputs["environment"]["variables"]
    assert env["SERVING_FILES_S3_URI"] == f"s3://{artifacts}/serving/"
    assert api_env["MODEL_INPUT_SCHEMA_URI"] == f"s3://{artifacts}/serving/input-schema.json"
    assert drift_env["BASELINE_S3_URI"] == f"s3://{artifacts}/serving/baseline.json"
    # AND the role reads only evaluation outputs and writes only that folder
    by_sid = statements(stack_plan)
    arn = stack_plan.outputs["bucketArns"]["artifacts"]
    assert (by_sid["ReadVersionsServingFiles"]["Action"], by_sid["ReadVersionsServingFiles"]["Resource"]) == (
        "s3:GetObject",
        f"{arn}/evaluation/*",
    )
    assert (by_sid["PublishServingFiles"]["Action"], by_sid["PublishServingFiles"]["Resource"]) == (
        "s3:PutObject",
        f"{arn}/serving/*",
    )


def test_versions_approved_without_the_gate_are_compared_with_the_stacks_margin(stack_plan: Plan) -> None:
    env = stack_plan.named("deployer-deployer").inputs["environment"]["variables"]
    assert float(env["PROMOTION_MARGIN"]) == 0.02  # training.promotionMargin's default
    # AND the role may record the comparison (and reject) on this group's versions only
    by_sid = statements(stack_plan)
    group = stack_plan.outputs["modelPackageGroupName"]
    gate = by_sid["RecordChampionGateDecisions"]
    assert gate["Action"] == "sagemaker:UpdateModelPackage"
    assert gate["Resource"] == f"arn:aws:sagemaker:us-east-1:123456789012:model-package/{group}/*"


def test_a_configured_promotion_margin_reaches_the_deployer(plan_with: Callable[..., Plan]) -> None:
    training = read_stack_values("dev")["ml-platform:training"]
    plan = plan_with(**{"ml-platform:training": {**training, "promotionMargin": 0.05}})
    env = plan.named("deployer-deployer").inputs["environment"]["variables"]
    assert float(env["PROMOTION_MARGIN"]) == 0.05


def test_the_deployer_knows_the_serving_image_of_each_family_and_the_precision(stack_plan: Plan) -> None:
    # GIVEN the deployer's environment as the program declares it
    env = stack_plan.named("deployer-deployer").inputs["environment"]["variables"]
    images = stack_plan.outputs["servingImages"]
    # THEN it has the platform's image for both families (it picks the endpoint's at CreateModel)
    # and the stack's precision
    assert env["SERVING_IMAGE_CPU"] == images["cpu"] and "/serving-cpu:" in images["cpu"]
    assert env["SERVING_IMAGE_GPU"] == images["gpu"] and "/serving-gpu:" in images["gpu"]
    assert env["SERVING_PRECISION"] == "float32"
