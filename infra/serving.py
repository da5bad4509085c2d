"""InferenceEndpoint: the autoscaled SageMaker endpoint, its safe-deployment settings and alarms.

The endpoint is created from the approved model version in ``serving.modelPackageArn`` (the first
deployment). Later versions roll out through the registry: approving a version triggers the
deployer, which creates a new model and endpoint config and updates the endpoint blue/green. So
Pulumi ignores changes of the endpoint's config name (``ignore_changes``): a ``pulumi up`` never
rolls the endpoint back to the bootstrap version, and never deletes the config in use.

Always created, model or not: the model execution role and the two rollback alarms (5xx rate and
model latency p99) the deployer hands to UpdateEndpoint.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_aws as aws

from handlers.common.instance_types import has_instance_storage
from infra.context import StackIdentity
from infra.iam import (
    container_statements,
    policy_document,
    service_assume_role_policy,
    volume_key_grant_statement,
)
from infra.pipeline_definition import inference_image_uri
from infra.stack_config import (
    PROVISIONING_ALLOWANCE_SECONDS,
    AlarmsConfig,
    DeploymentConfig,
    DeploymentStrategy,
    RollbackAlarm,
    ServingConfig,
    deployment_wait_seconds,
)
from infra.training import image_repository_arn

COMPONENT_TYPE = "mlplatform:index:InferenceEndpoint"
CAPTURE_PREFIX = "capture/"
NAMESPACE = "AWS/SageMaker"
# SageMaker reports ModelLatency in microseconds.
MICROSECONDS_PER_MS = 1000
ALARM_PERIOD_SECONDS = 60
ALARM_EVALUATION_PERIODS = 3
SCALABLE_DIMENSION = "sagemaker:variant:DesiredInstanceCount"
TrafficRouting = (
    aws.sagemaker.EndpointDeploymentConfigBlueGreenUpdatePolicyTrafficRoutingConfigurationArgsDict
)


@dataclass
class InferenceEndpointArgs:
    """Inputs of an :class:`InferenceEndpoint`.

    Parameters
    ----------
    stack: where the endpoint lives.
    endpoint_name: the endpoint's fixed name (the API and the deployer refer to it).
    kms_key_arn: encrypts the instances' storage and the captured data.
    bucket_names, bucket_arns: the data lake; models are read from artifacts, capture goes to raw.
    model_package_group_name: the registry group the served versions come from.
    serving, deployment, alarms: the stack's settings.
    alarm_topic_arn: where every alarm notifies.
    """

    stack: StackIdentity
    endpoint_name: str
    kms_key_arn: pulumi.Input[str]
    bucket_names: dict[str, pulumi.Output[str]]
    bucket_arns: dict[str, pulumi.Output[str]]
    model_package_group_name: pulumi.Input[str]
    serving: ServingConfig
    deployment: DeploymentConfig
    alarms: AlarmsConfig
    alarm_topic_arn: pulumi.Input[str]


class InferenceEndpoint(pulumi.ComponentResource):
    """Model role, rollback alarms, and (once a version is chosen) model, config, endpoint, scaling."""

    role: aws.iam.Role
    rollback_alarms: dict[RollbackAlarm, aws.cloudwatch.MetricAlarm]
    endpoint: aws.sagemaker.Endpoint | None

    def __init__(
        self, name: str, args: InferenceEndpointArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__(COMPONENT_TYPE, name, None, opts)
        self._name = name
        self._args = args
        self.capture_uri = pulumi.Output.concat(
            "s3://", args.bucket_names["raw"], "/", CAPTURE_PREFIX, args.endpoint_name
        )
        self.role = self._model_role()
        self.rollback_alarms = {kind: self._alarm(kind) for kind in args.deployment.rollback_alarms}
        self.endpoint = None
        if args.serving.model_package_arn is not None:
            self.endpoint = self._endpoint(args.serving.model_package_arn)
            self._autoscaling(self.endpoint)
        self.register_outputs(
            {
                "endpointName": args.endpoint_name,
                "modelRoleArn": self.role.arn,
                "captureUri": self.capture_uri,
                "rollbackAlarmNames": [alarm.name for alarm in self.rollback_alarms.values()],
            }
        )

    def _child(self, **kwargs: Any) -> pulumi.ResourceOptions:
        return pulumi.ResourceOptions(parent=self, **kwargs)

    # --- permissions -----------------------------------------------------------------------------------

    def _model_role(self) -> aws.iam.Role:
        args = self._args
        role = aws.iam.Role(
            f"{self._name}-model-role",
            name=f"{args.stack.name_prefix}-sagemaker-model",
            description="Runs the endpoint's model containers and writes their data capture",
            assume_role_policy=service_assume_role_policy("sagemaker.amazonaws.com", args.stack.account_id),
            opts=self._child(),
        )
        image_repository = image_repository_arn(
            inference_image_uri(args.stack.region, args.serving.instance_type)
        )
        metrics_namespaces = ["/aws/sagemaker/*", NAMESPACE]
        log_groups = args.stack.arn("logs", "log-group:/aws/sagemaker/*")
        aws.iam.RolePolicy(
            f"{self._name}-model-policy",
            role=role.id,
            policy=policy_document(
                {
                    "Sid": "ReadModelArtifacts",
                    "Effect": "Allow",
                    "Action": "s3:GetObject",
                    "Resource": pulumi.Output.concat(args.bucket_arns["artifacts"], "/*"),
                },
                {
                    "Sid": "WriteDataCapture",
                    "Effect": "Allow",
                    "Action": "s3:PutObject",
                    "Resource": pulumi.Output.concat(args.bucket_arns["raw"], "/", CAPTURE_PREFIX, "*"),
                },
                {
                    "Sid": "UseStackKey",
                    "Effect": "Allow",
                    "Action": ["kms:Decrypt", "kms:GenerateDataKey", "kms:DescribeKey"],
                    "Resource": args.kms_key_arn,
                },
                volume_key_grant_statement(args.kms_key_arn),
                {
                    "Sid": "ReadModelPackages",
                    "Effect": "Allow",
                    "Action": "sagemaker:DescribeModelPackage",
                    "Resource": args.stack.arn(
                        "sagemaker",
                        pulumi.Output.concat("model-package/", args.model_package_group_name, "/*"),
                    ),
                },
                {
                    "Sid": "WriteContainerLogs",
                    "Effect": "Allow",
                    "Action": ["logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents"],
                    "Resource": log_groups,
                },
                *container_statements(image_repository, metrics_namespaces),
            ),
            opts=self._child(),
        )
        return role

    # --- alarms ----------------------------------------------------------------------------------------

    def _alarm(self, kind: RollbackAlarm) -> aws.cloudwatch.MetricAlarm:
        """A rollback alarm on the whole endpoint (every variant), which also notifies the topic."""
        args = self._args
        common: dict[str, Any] = {
            "comparison_operator": "GreaterThanThreshold",
            "evaluation_periods": ALARM_EVALUATION_PERIODS,
            "datapoints_to_alarm": ALARM_EVALUATION_PERIODS - 1,
            # No traffic is not a failure: a quiet endpoint must not roll a deployment back.
            "treat_missing_data": "notBreaching",
            "alarm_actions": [args.alarm_topic_arn],
            "ok_actions": [args.alarm_topic_arn],
            "actions_enabled": True,
        }
        name = f"{args.stack.name_prefix}-endpoint-{kind.value}"
        if kind is RollbackAlarm.MODEL_LATENCY_P99:
            return aws.cloudwatch.MetricAlarm(
                f"{self._name}-{kind.value}-alarm",
                name=name,
                alarm_description=f"p99 model latency of {args.endpoint_name} above "
                f"{args.alarms.model_latency_p99_ms} ms: deployments roll back",
                namespace=NAMESPACE,
                metric_name="ModelLatency",
                dimensions=self._variant_dimensions(),
                extended_statistic="p99",
                period=ALARM_PERIOD_SECONDS,
                threshold=args.alarms.model_latency_p99_ms * MICROSECONDS_PER_MS,
                opts=self._child(),
                **common,
            )
        errors = "Invocation5XXErrors" if kind is RollbackAlarm.ERROR_RATE_5XX else "Invocation4XXErrors"
        return aws.cloudwatch.MetricAlarm(
            f"{self._name}-{kind.value}-alarm",
            name=name,
            alarm_description=f"{errors} as a percentage of invocations of {args.endpoint_name} above "
            f"{args.alarms.error_rate_5xx_percent}%: deployments roll back",
            threshold=args.alarms.error_rate_5xx_percent,
            metric_queries=[
                self._metric_query("errors", errors),
                self._metric_query("invocations", "Invocations"),
                {
                    "id": "rate",
                    "expression": "IF(invocations > 0, 100 * errors / invocations, 0)",
                    "label": f"{errors} rate (%)",
                    "return_data": True,
                },
            ],
            opts=self._child(),
            **common,
        )

    def _variant_dimensions(self) -> dict[str, str]:
        # The variant names are stable across deployments, so the alarms follow every new version.
        return {"EndpointName": self._args.endpoint_name, "VariantName": self._args.serving.variants[0].name}

    def _metric_query(self, query_id: str, metric: str) -> aws.cloudwatch.MetricAlarmMetricQueryArgsDict:
        return {
            "id": query_id,
            "metric": {
                "namespace": NAMESPACE,
                "metric_name": metric,
                "dimensions": self._variant_dimensions(),
                "period": ALARM_PERIOD_SECONDS,
                "stat": "Sum",
            },
            "return_data": False,
        }

    # --- model, config, endpoint ---------------------------------------------------------------------

    def _endpoint(self, model_package_arn: str) -> aws.sagemaker.Endpoint:
        args = self._args
        model = aws.sagemaker.Model(
            f"{self._name}-bootstrap-model",
            execution_role_arn=self.role.arn,
            primary_container={"model_package_name": model_package_arn},
            # The container needs no network: artifacts and images come through SageMaker.
            enable_network_isolation=True,
            opts=self._child(),
        )
        config = aws.sagemaker.EndpointConfiguration(
            f"{self._name}-bootstrap-config",
            # SageMaker refuses a volume key for instances with local NVMe storage (g4dn, g5, ...):
            # their instance store is encrypted by the hardware. Captured data is always KMS-encrypted.
            kms_key_arn=None if has_instance_storage(args.serving.instance_type) else args.kms_key_arn,
            production_variants=[
                {
                    "variant_name": variant.name,
                    "model_name": model.name,
                    "instance_type": args.serving.instance_type,
                    "initial_instance_count": args.serving.min_instances,
                    "initial_variant_weight": variant.weight,
                }
                for variant in args.serving.variants
            ],
            data_capture_config={
                "enable_capture": True,
                "initial_sampling_percentage": int(args.serving.data_capture_percent),
                "destination_s3_uri": self.capture_uri,
                "kms_key_id": args.kms_key_arn,
                "capture_options": [{"capture_mode": "Input"}, {"capture_mode": "Output"}],
                "capture_content_type_header": {"json_content_types": ["application/json"]},
            },
            # A changed config is created before the old one is deleted, so the endpoint always has one.
            opts=self._child(),
        )
        return aws.sagemaker.Endpoint(
            f"{self._name}-endpoint",
            name=args.endpoint_name,
            endpoint_config_name=config.name,
            deployment_config=deployment_config(
                args.deployment, [alarm.name for alarm in self.rollback_alarms.values()]
            ),
            # Versions after the first are rolled out by the deployer, not by `pulumi up`.
            opts=self._child(ignore_changes=["endpointConfigName"]),
        )

    def _autoscaling(self, endpoint: aws.sagemaker.Endpoint) -> None:
        serving = self._args.serving
        for variant in serving.variants:
            target = aws.appautoscaling.Target(
                f"{self._name}-{variant.name}-scaling-target",
                service_namespace="sagemaker",
                resource_id=pulumi.Output.concat("endpoint/", endpoint.name, "/variant/", variant.name),
                scalable_dimension=SCALABLE_DIMENSION,
                min_capacity=serving.min_instances,
                max_capacity=serving.max_instances,
                opts=self._child(),
            )
            aws.appautoscaling.Policy(
                f"{self._name}-{variant.name}-invocations-scaling",
                name=f"{self._args.stack.name_prefix}-{variant.name}-invocations-per-instance",
                policy_type="TargetTrackingScaling",
                service_namespace=target.service_namespace,
                resource_id=target.resource_id,
                scalable_dimension=target.scalable_dimension,
                target_tracking_scaling_policy_configuration={
                    "predefined_metric_specification": {
                        "predefined_metric_type": "SageMakerVariantInvocationsPerInstance"
                    },
                    "target_value": serving.target_invocations_per_instance,
                    "scale_in_cooldown": serving.scale_in_cooldown_seconds,
                    "scale_out_cooldown": serving.scale_out_cooldown_seconds,
                },
                opts=self._child(),
            )
            if serving.off_hours is not None:
                self._off_hours(variant.name, target)

    def _off_hours(self, variant: str, target: aws.appautoscaling.Target) -> None:
        """Non-prod: pin the variant to ``offHours.instances`` at night, restore the range by day."""
        serving = self._args.serving
        off_hours = serving.off_hours
        assert off_hours is not None  # noqa: S101 - only called when set
        for when, schedule, low, high in (
            ("down", off_hours.scale_down, off_hours.instances, off_hours.instances),
            ("up", off_hours.scale_up, serving.min_instances, serving.max_instances),
        ):
            aws.appautoscaling.ScheduledAction(
                f"{self._name}-{variant}-off-hours-{when}",
                name=f"{self._args.stack.name_prefix}-{variant}-off-hours-{when}",
                service_namespace=target.service_namespace,
                resource_id=target.resource_id,
                scalable_dimension=target.scalable_dimension,
                schedule=schedule,
                timezone=off_hours.timezone,
                scalable_target_action={"min_capacity": low, "max_capacity": high},
                opts=self._child(),
            )


def deployment_config(
    deployment: DeploymentConfig, alarm_names: list[pulumi.Output[str]]
) -> aws.sagemaker.EndpointDeploymentConfigArgsDict:
    """Blue/green traffic shifting with auto-rollback; the timeout exceeds the sum of the waits."""
    routing: TrafficRouting = {"type": "ALL_AT_ONCE", "wait_interval_in_seconds": deployment.baking_seconds}
    if deployment.strategy is DeploymentStrategy.CANARY:
        routing = {
            "type": "CANARY",
            "canary_size": {"type": "CAPACITY_PERCENT", "value": deployment.canary_percent},
            "wait_interval_in_seconds": deployment.baking_seconds,
        }
    elif deployment.strategy is DeploymentStrategy.LINEAR:
        routing = {
            "type": "LINEAR",
            "linear_step_size": {"type": "CAPACITY_PERCENT", "value": deployment.linear_step_percent},
            "wait_interval_in_seconds": deployment.baking_seconds,
        }
    return {
        "blue_green_update_policy": {
            "traffic_routing_configuration": routing,
            "termination_wait_in_seconds": deployment.termination_wait_seconds,
            "maximum_execution_timeout_in_seconds": deployment_wait_seconds(deployment)
            + PROVISIONING_ALLOWANCE_SECONDS,
        },
        "auto_rollback_configuration": {"alarms": [{"alarm_name": name} for name in alarm_names]},
    }
