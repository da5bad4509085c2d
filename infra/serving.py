"""InferenceEndpoint: what the endpoint needs before any model serves: its role and its alarms.

The endpoint itself, its models, configs and autoscaling have one owner, the deployer
(``infra/deployer.py``, ``handlers/deployer``): approving a version in the registry deploys it,
and the first deployment creates the endpoint. A scalable target cannot exist before its
endpoint, and Pulumi cannot know when a version is approved, so nothing here creates them; a
``pulumi up`` never competes with a rollout (docs/deployments.md).

Created here: the model execution role and the two rollback alarms (5xx rate and model latency
p99) the deployer hands to UpdateEndpoint.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_aws as aws

from infra.context import StackIdentity
from infra.iam import (
    container_statements,
    policy_document,
    service_assume_role_policy,
    volume_key_grant_statement,
)
from infra.stack_config import (
    AlarmsConfig,
    DeploymentConfig,
    RollbackAlarm,
    ServingConfig,
)

COMPONENT_TYPE = "mlplatform:index:InferenceEndpoint"
CAPTURE_PREFIX = "capture/"
NAMESPACE = "AWS/SageMaker"
# SageMaker reports ModelLatency in microseconds.
MICROSECONDS_PER_MS = 1000
ALARM_PERIOD_SECONDS = 60
ALARM_EVALUATION_PERIODS = 3


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
    image_repository_arns: the repositories of the images models serve with (infra/images.py).
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
    image_repository_arns: Sequence[pulumi.Input[str]]


class InferenceEndpoint(pulumi.ComponentResource):
    """The model role the deployer passes to SageMaker, and the rollback alarms."""

    role: aws.iam.Role
    rollback_alarms: dict[RollbackAlarm, aws.cloudwatch.MetricAlarm]

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
                *container_statements(pulumi.Output.all(*args.image_repository_arns), metrics_namespaces),
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
