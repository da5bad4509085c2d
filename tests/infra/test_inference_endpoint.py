"""The InferenceEndpoint component: model, config, blue/green endpoint, autoscaling, rollback alarms."""

from __future__ import annotations

import json
from typing import Any

import pytest

from infra.offline import Plan, PlannedResource
from infra.serving import deployment_config
from infra.stack_config import DeploymentConfig, DeploymentStrategy, RollbackAlarm, read_stack_values
from tests.infra.conftest import as_list, cached_plan, policy_document

PACKAGE = "arn:aws:sagemaker:us-east-1:123456789012:model-package/mlp-{stack}-models/1"
UNSCOPABLE_ACTIONS = {"ecr:GetAuthorizationToken", "cloudwatch:PutMetricData"}


def with_model(stack: str, **serving: Any) -> Plan:
    """The stack with its first approved version chosen (and any serving settings replaced)."""
    values = read_stack_values(stack)
    settings = {**values["ml-platform:serving"], "modelPackageArn": PACKAGE.format(stack=stack), **serving}
    return cached_plan(stack, {"ml-platform:serving": settings})


@pytest.fixture(params=["dev", "prod"], scope="module")
def served(request: pytest.FixtureRequest) -> Plan:
    return with_model(request.param)


def one(plan: Plan, type_: str) -> PlannedResource:
    (resource,) = plan.of_type(type_)
    return resource


def endpoint(plan: Plan) -> PlannedResource:
    return one(plan, "aws:sagemaker/endpoint:Endpoint")


def endpoint_config(plan: Plan) -> PlannedResource:
    return one(plan, "aws:sagemaker/endpointConfiguration:EndpointConfiguration")


def test_without_a_chosen_version_there_is_no_endpoint_yet(stack_plan: Plan) -> None:
    # GIVEN the shipped stacks, which name no approved version yet
    for type_ in ("endpoint:Endpoint", "endpointConfiguration:EndpointConfiguration", "model:Model"):
        assert stack_plan.of_type(f"aws:sagemaker/{type_}") == []
    assert stack_plan.of_type("aws:appautoscaling/target:Target") == []
    # THEN the model role and the rollback alarms exist already (the deployer needs them)
    assert stack_plan.named("serving-model-role")
    assert len(stack_plan.of_type("aws:cloudwatch/metricAlarm:MetricAlarm")) >= 2


def test_the_model_is_the_approved_package_and_runs_network_isolated(served: Plan) -> None:
    model = one(served, "aws:sagemaker/model:Model")
    assert model.inputs["primaryContainer"] == {"modelPackageName": PACKAGE.format(stack=served.stack)}
    assert model.inputs["enableNetworkIsolation"] is True
    assert model.inputs["executionRoleArn"] == served.named("serving-model-role").outputs["arn"]


def test_the_config_uses_the_configured_instances(served: Plan) -> None:
    config = endpoint_config(served).inputs
    (variant,) = config["productionVariants"]
    expected = {"dev": ("ml.m5.large", 1), "prod": ("ml.g4dn.xlarge", 2)}[served.stack]
    assert (variant["instanceType"], variant["initialInstanceCount"]) == expected
    assert variant["variantName"] == "primary"


@pytest.mark.parametrize(("instance_type", "volume_key"), [("ml.m5.large", True), ("ml.g4dn.xlarge", False)])
def test_volumes_use_the_stack_key_unless_the_instance_has_local_nvme_storage(
    instance_type: str, volume_key: bool
) -> None:
    # SageMaker refuses a volume key for g4dn/g5/... (their instance store is hardware-encrypted)
    plan = with_model("dev", instanceType=instance_type)
    config = endpoint_config(plan).inputs
    assert (config.get("kmsKeyArn") == plan.outputs["kmsKeyArn"]) is volume_key
    assert config["dataCaptureConfig"]["kmsKeyId"] == plan.outputs["kmsKeyArn"]


def test_prod_serves_on_at_least_two_gpu_instances(prod_plan: Plan) -> None:
    config = endpoint_config(with_model("prod")).inputs
    assert all(v["initialInstanceCount"] >= 2 for v in config["productionVariants"])
    assert all(v["instanceType"].startswith("ml.g") for v in config["productionVariants"])


def test_inputs_and_outputs_are_captured_encrypted_into_the_data_lake(served: Plan) -> None:
    capture = endpoint_config(served).inputs["dataCaptureConfig"]
    assert capture["enableCapture"] is True
    assert capture["initialSamplingPercentage"] == {"dev": 100, "prod": 20}[served.stack]
    raw = served.outputs["bucketNames"]["raw"]
    assert capture["destinationS3Uri"] == f"s3://{raw}/capture/mlp-{served.stack}-endpoint"
    assert capture["kmsKeyId"] == served.outputs["kmsKeyArn"]
    assert sorted(o["captureMode"] for o in capture["captureOptions"]) == ["Input", "Output"]


def test_prod_deploys_canary_with_rollback_on_both_alarms(served: Plan) -> None:
    config = endpoint(served).inputs["deploymentConfig"]
    policy = config["blueGreenUpdatePolicy"]
    routing = policy["trafficRoutingConfiguration"]
    if served.stack == "prod":
        assert routing["type"] == "CANARY"
        assert routing["canarySize"] == {"type": "CAPACITY_PERCENT", "value": 10}
        assert routing["waitIntervalInSeconds"] == 600
        assert policy["terminationWaitInSeconds"] == 300
    else:
        assert routing["type"] == "ALL_AT_ONCE"
    waits = 2 * routing["waitIntervalInSeconds"] + policy["terminationWaitInSeconds"]
    assert policy["maximumExecutionTimeoutInSeconds"] > waits
    alarms = [a["alarmName"] for a in config["autoRollbackConfiguration"]["alarms"]]
    assert alarms == served.outputs["rollbackAlarmNames"]
    assert {f"mlp-{served.stack}-endpoint-5xx-rate", f"mlp-{served.stack}-endpoint-model-latency-p99"} <= set(
        alarms
    )


def test_the_endpoint_keeps_its_name_and_config(served: Plan) -> None:
    assert endpoint(served).inputs["name"] == served.outputs["endpointName"]
    assert endpoint(served).inputs["endpointConfigName"] == endpoint_config(served).outputs["name"]


def test_autoscaling_tracks_invocations_per_instance_within_the_bounds(served: Plan) -> None:
    target = one(served, "aws:appautoscaling/target:Target").inputs
    bounds = {"dev": (1, 2), "prod": (2, 8)}[served.stack]
    assert (target["minCapacity"], target["maxCapacity"]) == bounds
    assert target["resourceId"] == f"endpoint/mlp-{served.stack}-endpoint/variant/primary"
    assert target["scalableDimension"] == "sagemaker:variant:DesiredInstanceCount"
    policy = one(served, "aws:appautoscaling/policy:Policy").inputs
    tracking = policy["targetTrackingScalingPolicyConfiguration"]
    assert policy["policyType"] == "TargetTrackingScaling"
    assert (
        tracking["predefinedMetricSpecification"]["predefinedMetricType"]
        == "SageMakerVariantInvocationsPerInstance"
    )
    assert tracking["targetValue"] == {"dev": 200, "prod": 100}[served.stack]
    assert (tracking["scaleInCooldown"], tracking["scaleOutCooldown"]) == (300, 60)


def test_non_prod_endpoints_scale_down_off_hours_and_back_by_day(served: Plan) -> None:
    actions = {a.name: a.inputs for a in served.of_type("aws:appautoscaling/scheduledAction:ScheduledAction")}
    if served.stack == "prod":
        assert actions == {}  # prod keeps its capacity around the clock (config validation)
        return
    target = one(served, "aws:appautoscaling/target:Target").inputs
    down, up = actions["serving-primary-off-hours-down"], actions["serving-primary-off-hours-up"]
    for action in (down, up):
        assert action["resourceId"] == target["resourceId"]
        assert action["scalableDimension"] == target["scalableDimension"]
        assert action["timezone"] == "Europe/London"
    assert down["schedule"] == "cron(0 20 ? * MON-FRI *)"
    assert down["scalableTargetAction"] == {"minCapacity": 1, "maxCapacity": 1}
    assert up["schedule"] == "cron(0 7 ? * MON-FRI *)"
    assert up["scalableTargetAction"] == {"minCapacity": 1, "maxCapacity": 2}  # the configured range


def test_ab_variants_get_their_weights_and_their_own_scaling() -> None:
    plan = with_model("dev", variants=[{"name": "blue", "weight": 3}, {"name": "green", "weight": 1}])
    variants = endpoint_config(plan).inputs["productionVariants"]
    assert [(v["variantName"], v["initialVariantWeight"]) for v in variants] == [("blue", 3), ("green", 1)]
    targets = sorted(t.inputs["resourceId"] for t in plan.of_type("aws:appautoscaling/target:Target"))
    assert targets == ["endpoint/mlp-dev-endpoint/variant/blue", "endpoint/mlp-dev-endpoint/variant/green"]


def alarm_dimensions(alarm: PlannedResource) -> list[dict[str, str]]:
    if alarm.inputs.get("dimensions"):
        return [alarm.inputs["dimensions"]]
    return [q["metric"]["dimensions"] for q in alarm.inputs.get("metricQueries", []) if "metric" in q]


def test_every_alarm_has_dimensions_and_notifies_the_alert_topic(stack_plan: Plan) -> None:
    topic = stack_plan.outputs["alertTopicArn"]
    alarms = stack_plan.of_type("aws:cloudwatch/metricAlarm:MetricAlarm")
    assert alarms
    for alarm in alarms:
        dimensions = alarm_dimensions(alarm)
        assert dimensions and all(dimensions), alarm.name
        assert topic in alarm.inputs["alarmActions"], alarm.name
        assert alarm.inputs["actionsEnabled"] is True


def test_rollback_alarm_thresholds_come_from_config(prod_plan: Plan) -> None:
    latency = prod_plan.named(f"serving-{RollbackAlarm.MODEL_LATENCY_P99.value}-alarm").inputs
    assert latency["extendedStatistic"] == "p99" and latency["metricName"] == "ModelLatency"
    assert latency["threshold"] == 300 * 1000  # 300 ms in SageMaker's microseconds
    rate = prod_plan.named(f"serving-{RollbackAlarm.ERROR_RATE_5XX.value}-alarm").inputs
    assert rate["threshold"] == 0.5
    metrics = {q["id"]: q for q in rate["metricQueries"]}
    assert metrics["errors"]["metric"]["metricName"] == "Invocation5XXErrors"
    assert metrics["errors"]["metric"]["dimensions"] == {
        "EndpointName": "mlp-prod-endpoint",
        "VariantName": "primary",
    }
    assert metrics["rate"]["returnData"] is True


def test_the_model_role_reaches_only_this_stacks_artifacts_capture_key_and_image(stack_plan: Plan) -> None:
    statements = policy_document(stack_plan.named("serving-model-policy"))["Statement"]
    by_sid = {s["Sid"]: s for s in statements}
    arns = stack_plan.outputs["bucketArns"]
    assert by_sid["ReadModelArtifacts"]["Resource"] == f"{arns['artifacts']}/*"
    assert by_sid["WriteDataCapture"]["Resource"] == f"{arns['raw']}/capture/*"
    assert by_sid["UseStackKey"]["Resource"] == stack_plan.outputs["kmsKeyArn"]
    assert ":repository/pytorch-inference" in by_sid["PullImages"]["Resource"]
    for statement in statements:
        actions = as_list(statement["Action"])
        assert "*" not in actions and not any(a.endswith(":*") for a in actions)
        if "*" in as_list(statement["Resource"]):
            assert set(actions) <= UNSCOPABLE_ACTIONS, statement["Sid"]


def test_the_alert_topic_is_encrypted_and_only_this_account_publishes(stack_plan: Plan) -> None:
    topic = stack_plan.named("alerts-topic")
    assert topic.inputs["kmsMasterKeyId"] == stack_plan.outputs["kmsKeyArn"]
    statements = json.loads(stack_plan.named("alerts-topic-policy").inputs["policy"])["Statement"]
    (allow,) = [s for s in statements if s["Effect"] == "Allow"]
    assert allow["Condition"] == {"StringEquals": {"aws:SourceAccount": "123456789012"}}


@pytest.mark.parametrize(
    ("strategy", "step", "expected_waits"),
    [
        (DeploymentStrategy.ALL_AT_ONCE, 10, 1),
        (DeploymentStrategy.CANARY, 10, 2),
        (DeploymentStrategy.LINEAR, 25, 4),
    ],
)
def test_the_deployment_timeout_covers_every_wait(
    strategy: DeploymentStrategy, step: int, expected_waits: int
) -> None:
    deployment = DeploymentConfig(
        strategy=strategy, linear_step_percent=step, baking_seconds=600, termination_wait_seconds=120
    )
    policy = deployment_config(deployment, [])["blue_green_update_policy"]
    assert policy["maximum_execution_timeout_in_seconds"] > expected_waits * 600 + 120
    assert policy["maximum_execution_timeout_in_seconds"] <= 8 * 3600
