"""Serving: the endpoint, its configs and autoscaling are the deployer's (as the program declares its
settings); Pulumi plans the model role, the rollback alarms and the first version's hand-over."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import pytest

from handlers.common.contracts import TARGET_VARIANT_KEY
from handlers.deployer.plan import (
    MODEL_PACKAGE_EVENT,
    build_deployment_config,
    build_endpoint_config_request,
    build_model_request,
)
from handlers.deployer.scaling import scaling_requests
from handlers.deployer.settings import MODEL_SERVER_PRECISION_ENV, DeploySettings, image_family
from handlers.registry.client import ModelVersion
from infra.offline import Plan, PlannedResource
from infra.stack_config import RollbackAlarm, read_stack_values
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


def deployer_settings(plan: Plan) -> DeploySettings:
    """The deployer's settings as the program declares them (the Lambda runtime adds the region)."""
    function = plan.named("deployer-deployer")
    variables = function.inputs["environment"]["variables"]
    return DeploySettings.from_env({**variables, "AWS_REGION": plan.outputs["region"]})


def version(plan: Plan, number: int = 1, **metadata: str) -> ModelVersion:
    return ModelVersion(
        arn=PACKAGE.format(stack=plan.stack).replace("/1", f"/{number}"),
        group=plan.outputs["modelPackageGroupName"],
        version=number,
        status="Approved",
        package_status="Completed",
        image_uri="123456789012.dkr.ecr.us-east-1.amazonaws.com/pytorch-inference:2.3-cpu-py311",
        artifact_uri=f"s3://{plan.outputs['bucketNames']['artifacts']}/models/{number}/model.tar.gz",
        customer_metadata=dict(metadata),
    )


def endpoint_config(plan: Plan, model: ModelVersion | None = None, live: dict[str, str] | None = None) -> Any:
    """The CreateEndpointConfig the deployer sends for ``model`` under the planned settings."""
    settings = deployer_settings(plan)
    model = model or version(plan)
    return build_endpoint_config_request(settings, f"model-v{model.version}", model, live)


ENDPOINT_TYPES = (
    "aws:sagemaker/endpoint:Endpoint",
    "aws:sagemaker/endpointConfiguration:EndpointConfiguration",
    "aws:sagemaker/model:Model",
    "aws:appautoscaling/target:Target",
    "aws:appautoscaling/policy:Policy",
    "aws:appautoscaling/scheduledAction:ScheduledAction",
)


def test_pulumi_never_creates_the_endpoint_or_its_scaling_the_deployer_owns_them(stack_plan: Plan) -> None:
    # GIVEN the shipped stacks, and the same stacks with a first version chosen
    for plan in (stack_plan, with_model(stack_plan.stack)):
        # THEN no endpoint, config, model or scaling resource is planned: one owner, no name clash
        for type_ in ENDPOINT_TYPES:
            assert plan.of_type(type_) == [], (plan.stack, type_)
        # AND the model role and the rollback alarms exist already (the deployer needs them)
        assert plan.named("serving-model-role")
        assert len(plan.of_type("aws:cloudwatch/metricAlarm:MetricAlarm")) >= 2
    assert stack_plan.of_type("aws:lambda/invocation:Invocation") == []


def test_a_chosen_first_version_is_handed_to_the_deployer_as_its_approval_event(served: Plan) -> None:
    invocation = one(served, "aws:lambda/invocation:Invocation")
    assert invocation.inputs["functionName"] == served.named("deployer-deployer").outputs["name"]
    event = json.loads(invocation.inputs["input"])
    assert event["detail-type"] == MODEL_PACKAGE_EVENT and event["source"] == "aws.sagemaker"
    assert event["detail"] == {
        "ModelPackageGroupName": served.outputs["modelPackageGroupName"],
        "ModelPackageVersion": 1,
        "ModelPackageArn": PACKAGE.format(stack=served.stack),
        "ModelApprovalStatus": "Approved",
        "ModelPackageStatus": "Completed",
    }
    # AND the deployer's own rule would have matched it: the same path as a registry approval
    pattern = json.loads(served.named("deployer-approved").inputs["eventPattern"])
    assert event["detail"]["ModelPackageGroupName"] in pattern["detail"]["ModelPackageGroupName"]


def test_a_first_version_of_another_group_is_refused_naming_the_key() -> None:
    other = "arn:aws:sagemaker:us-east-1:123456789012:model-package/someone-elses-models/4"
    values = read_stack_values("dev")
    with pytest.raises(Exception, match=r"serving\.modelPackageArn.*mlp-dev-models"):
        cached_plan(
            "dev", {"ml-platform:serving": {**values["ml-platform:serving"], "modelPackageArn": other}}
        )


def test_the_deployers_model_is_the_version_and_runs_network_isolated(served: Plan) -> None:
    settings = deployer_settings(served)
    request = build_model_request(settings, version(served))
    assert request["PrimaryContainer"]["ModelDataUrl"] == version(served).artifact_uri
    assert request["EnableNetworkIsolation"] is True
    assert request["ExecutionRoleArn"] == served.named("serving-model-role").outputs["arn"]


@pytest.mark.parametrize("registered", ["cpu", "gpu"])
def test_the_deployers_model_serves_with_the_image_of_the_endpoints_family(
    served: Plan, registered: str
) -> None:
    # GIVEN the deployer's settings as the program declares them, and a version registered with
    # either family's image (e.g. while the stack still served on the other family)
    settings = deployer_settings(served)
    images = served.outputs["servingImages"]
    model = replace(version(served), image_uri=images[registered])
    # WHEN the deployer builds its CreateModel
    container = build_model_request(settings, model)["PrimaryContainer"]
    # THEN the image is the platform's for the endpoint's family (dev: CPU, prod: GPU), never the
    # other one, and the server runs in the stack's precision
    expected = {"dev": "cpu", "prod": "gpu"}[served.stack]
    assert image_family(settings.instance_type) == expected
    assert container["Image"] == images[expected]
    assert f"/mlp-{served.stack}/serving-{expected}:" in container["Image"]
    assert container["Environment"][MODEL_SERVER_PRECISION_ENV] == "float32"


def test_a_configured_precision_reaches_the_model_container(plan_with: Callable[..., Plan]) -> None:
    # GIVEN the dev stack serving in bfloat16
    serving = read_stack_values("dev")["ml-platform:serving"]
    plan = plan_with(**{"ml-platform:serving": {**serving, "precision": "bfloat16"}})
    # WHEN the deployer builds a model under the planned settings
    container = build_model_request(deployer_settings(plan), version(plan))["PrimaryContainer"]
    # THEN the model server gets it
    assert container["Environment"][MODEL_SERVER_PRECISION_ENV] == "bfloat16"


def test_with_the_dlc_the_deployer_serves_with_sagemakers_image_of_the_endpoints_family(
    plan_with: Callable[..., Plan],
) -> None:
    # GIVEN the dev stack (CPU endpoint) serving with SageMaker's PyTorch image, and a version
    # registered with the GPU one
    serving = read_stack_values("dev")["ml-platform:serving"]
    plan = plan_with(**{"ml-platform:serving": {**serving, "container": "sagemaker-dlc"}})
    gpu_image = plan.outputs["servingImages"]["gpu"]
    model = replace(version(plan), image_uri=gpu_image)
    # WHEN the deployer builds its CreateModel
    image = build_model_request(deployer_settings(plan), model)["PrimaryContainer"]["Image"]
    # THEN it is the DLC's CPU image
    assert "/pytorch-inference:" in image and "-cpu-" in image
    assert "-gpu-" in gpu_image


def test_the_config_uses_the_configured_instances(served: Plan) -> None:
    (variant,) = endpoint_config(served)["ProductionVariants"]
    expected = {"dev": ("ml.m5.large", 1), "prod": ("ml.g4dn.xlarge", 2)}[served.stack]
    assert (variant["InstanceType"], variant["InitialInstanceCount"]) == expected
    assert variant["VariantName"] == "primary"


@pytest.mark.parametrize(("instance_type", "volume_key"), [("ml.m5.large", True), ("ml.g4dn.xlarge", False)])
def test_volumes_use_the_stack_key_unless_the_instance_has_local_nvme_storage(
    instance_type: str, volume_key: bool
) -> None:
    # SageMaker refuses a volume key for g4dn/g5/... (their instance store is hardware-encrypted)
    plan = with_model("dev", instanceType=instance_type, gpu=instance_type.startswith("ml.g"))
    config = endpoint_config(plan)
    assert (config.get("KmsKeyId") == plan.outputs["kmsKeyArn"]) is volume_key
    assert config["DataCaptureConfig"]["KmsKeyId"] == plan.outputs["kmsKeyArn"]


def test_prod_serves_on_at_least_two_gpu_instances(prod_plan: Plan) -> None:
    variants = endpoint_config(prod_plan)["ProductionVariants"]
    assert all(v["InitialInstanceCount"] >= 2 for v in variants)
    assert all(v["InstanceType"].startswith("ml.g") for v in variants)
    assert deployer_settings(prod_plan).scaling.min_instances >= 2


def test_inputs_and_outputs_are_captured_encrypted_into_the_data_lake(served: Plan) -> None:
    capture = endpoint_config(served)["DataCaptureConfig"]
    assert capture["EnableCapture"] is True
    assert capture["InitialSamplingPercentage"] == {"dev": 100, "prod": 20}[served.stack]
    raw = served.outputs["bucketNames"]["raw"]
    assert capture["DestinationS3Uri"] == f"s3://{raw}/capture/mlp-{served.stack}-endpoint"
    assert capture["KmsKeyId"] == served.outputs["kmsKeyArn"]
    assert sorted(o["CaptureMode"] for o in capture["CaptureOptions"]) == ["Input", "Output"]


def test_prod_deploys_canary_with_rollback_on_both_alarms(served: Plan) -> None:
    config = build_deployment_config(deployer_settings(served).policy)
    policy = config["BlueGreenUpdatePolicy"]
    routing = policy["TrafficRoutingConfiguration"]
    if served.stack == "prod":
        assert routing["Type"] == "CANARY"
        assert routing["CanarySize"] == {"Type": "CAPACITY_PERCENT", "Value": 10}
        assert routing["WaitIntervalInSeconds"] == 600
        assert policy["TerminationWaitInSeconds"] == 300
    else:
        assert routing["Type"] == "ALL_AT_ONCE"
    waits = 2 * routing["WaitIntervalInSeconds"] + policy["TerminationWaitInSeconds"]
    assert policy["MaximumExecutionTimeoutInSeconds"] > waits
    alarms = [a["AlarmName"] for a in config["AutoRollbackConfiguration"]["Alarms"]]
    assert alarms == served.outputs["rollbackAlarmNames"]
    assert {f"mlp-{served.stack}-endpoint-5xx-rate", f"mlp-{served.stack}-endpoint-model-latency-p99"} <= set(
        alarms
    )


def test_autoscaling_tracks_invocations_per_instance_within_the_bounds(served: Plan) -> None:
    requests = scaling_requests(deployer_settings(served), "primary")
    bounds = {"dev": (1, 2), "prod": (2, 8)}[served.stack]
    assert (requests.target["MinCapacity"], requests.target["MaxCapacity"]) == bounds
    assert requests.target["ResourceId"] == f"endpoint/mlp-{served.stack}-endpoint/variant/primary"
    assert requests.target["ScalableDimension"] == "sagemaker:variant:DesiredInstanceCount"
    tracking = requests.policy["TargetTrackingScalingPolicyConfiguration"]
    assert requests.policy["PolicyType"] == "TargetTrackingScaling"
    assert tracking["PredefinedMetricSpecification"]["PredefinedMetricType"] == (
        "SageMakerVariantInvocationsPerInstance"
    )
    assert tracking["TargetValue"] == {"dev": 200, "prod": 100}[served.stack]
    assert (tracking["ScaleInCooldown"], tracking["ScaleOutCooldown"]) == (300, 60)


def test_non_prod_endpoints_scale_down_off_hours_and_back_by_day(served: Plan) -> None:
    requests = scaling_requests(deployer_settings(served), "primary")
    actions = {a["ScheduledActionName"]: a for a in requests.scheduled_actions}
    if served.stack == "prod":
        assert actions == {}  # prod keeps its capacity around the clock (config validation)
        return
    down = actions[f"mlp-{served.stack}-endpoint-primary-off-hours-down"]
    up = actions[f"mlp-{served.stack}-endpoint-primary-off-hours-up"]
    for action in (down, up):
        assert action["ResourceId"] == requests.target["ResourceId"]
        assert action["ScalableDimension"] == requests.target["ScalableDimension"]
        assert action["Timezone"] == "Europe/London"
    assert down["Schedule"] == "cron(0 20 ? * MON-FRI *)"
    assert down["ScalableTargetAction"] == {"MinCapacity": 1, "MaxCapacity": 1}
    assert up["Schedule"] == "cron(0 7 ? * MON-FRI *)"
    assert up["ScalableTargetAction"] == {"MinCapacity": 1, "MaxCapacity": 2}  # the configured range


def test_ab_variants_get_their_weights_and_a_rollout_replaces_only_its_target_variant() -> None:
    plan = with_model("dev", variants=[{"name": "blue", "weight": 3}, {"name": "green", "weight": 1}])
    # WHEN the first version is deployed: both variants serve it, with their weights
    first = endpoint_config(plan)["ProductionVariants"]
    assert [(v["VariantName"], v["ModelName"], v["InitialVariantWeight"]) for v in first] == [
        ("blue", "model-v1", 3),
        ("green", "model-v1", 1),
    ]
    # WHEN version 2 names green at approval, while blue serves v1 and green serves v1
    live = {"blue": "model-v1", "green": "model-v1"}
    second = endpoint_config(plan, version(plan, 2, **{TARGET_VARIANT_KEY: "green"}), live)
    assert [(v["VariantName"], v["ModelName"]) for v in second["ProductionVariants"]] == [
        ("blue", "model-v1"),
        ("green", "model-v2"),
    ]
    # AND version 3, naming no variant, replaces the first one only
    live = {"blue": "model-v1", "green": "model-v2"}
    third = endpoint_config(plan, version(plan, 3), live)
    assert [(v["VariantName"], v["ModelName"]) for v in third["ProductionVariants"]] == [
        ("blue", "model-v3"),
        ("green", "model-v2"),
    ]
    # AND each variant gets its own scaling
    settings = deployer_settings(plan)
    targets = [scaling_requests(settings, name).target["ResourceId"] for name in settings.variant_names]
    assert targets == ["endpoint/mlp-dev-endpoint/variant/blue", "endpoint/mlp-dev-endpoint/variant/green"]


def test_the_deployer_may_scale_the_endpoint_and_nothing_else_it_need_not(stack_plan: Plan) -> None:
    statements = {
        s["Sid"]: s for s in policy_document(stack_plan.named("deployer-deployer-policy"))["Statement"]
    }
    scaling = statements["ScaleTheEndpointsVariants"]
    assert all(action.startswith("application-autoscaling:") for action in as_list(scaling["Action"]))
    alarms = statements["TargetTrackingAlarms"]
    assert as_list(alarms["Resource"]) == ["arn:aws:cloudwatch:us-east-1:123456789012:alarm:TargetTracking*"]
    linked = statements["CreateScalingServiceLinkedRole"]
    assert linked["Condition"] == {
        "StringLike": {"iam:AWSServiceName": "sagemaker.application-autoscaling.amazonaws.com"}
    }


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


def test_with_the_dlc_the_model_role_pulls_sagemakers_pytorch_image(plan_with: Callable[..., Plan]) -> None:
    # GIVEN the dev stack serving with SageMaker's PyTorch image
    serving = read_stack_values("dev")["ml-platform:serving"]
    plan = plan_with(**{"ml-platform:serving": {**serving, "container": "sagemaker-dlc"}})
    statements = policy_document(plan.named("serving-model-policy"))["Statement"]
    pull = next(s for s in statements if s["Sid"] == "PullImages")
    # THEN the model role pulls from the DLC repository only
    (repository,) = as_list(pull["Resource"])
    assert repository.endswith(":repository/pytorch-inference")


def test_the_model_role_reaches_only_this_stacks_artifacts_capture_key_and_image(stack_plan: Plan) -> None:
    statements = policy_document(stack_plan.named("serving-model-policy"))["Statement"]
    by_sid = {s["Sid"]: s for s in statements}
    arns = stack_plan.outputs["bucketArns"]
    assert by_sid["ReadModelArtifacts"]["Resource"] == f"{arns['artifacts']}/*"
    assert by_sid["WriteDataCapture"]["Resource"] == f"{arns['raw']}/capture/*"
    assert by_sid["UseStackKey"]["Resource"] == stack_plan.outputs["kmsKeyArn"]
    # The images models serve with: the platform's two repositories (serving.container: platform)
    repositories = [r.outputs["arn"] for r in stack_plan.of_type("aws:ecr/repository:Repository")]
    assert sorted(as_list(by_sid["PullImages"]["Resource"])) == sorted(repositories)
    assert {arn.rsplit("/", 1)[-1] for arn in repositories} == {"serving-cpu", "serving-gpu"}
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
