"""Deployer: approving a model version rolls it out to the endpoint, and every rollout is verified.

The deployer Lambda (``handlers.deployer.handler``) runs on two EventBridge rules: a model package of this
stack's group turning ``Approved`` (create a new model and endpoint config, update the endpoint
blue/green with the stack's deployment settings), and any state change of this stack's endpoint
(verify it ended ``InService`` on the expected config, then apply the variants' autoscaling; a
rollback is a failed deployment). It is the one owner of the endpoint, its configs and its
autoscaling. ``serving.modelPackageArn`` hands it a first version at ``pulumi up``, as the
approval event it would get from the registry. One deployment at a time (reserved concurrency
1); failures go to the alert topic and raise an alarm. See docs/deployments.md.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_aws as aws

from handlers.common.contracts import DEFAULT_PROMOTION_MARGIN, METRICS_NAMESPACE, SERVING_PREFIX
from handlers.deployer import settings
from handlers.deployer.plan import approval_event, approval_event_pattern, endpoint_event_pattern
from infra.context import StackIdentity
from infra.functions import FunctionBuilder, FunctionSettings
from infra.lambda_package import HANDLER_ENTRYPOINTS
from infra.stack_config import DeploymentConfig, ServingConfig

COMPONENT_TYPE = "mlplatform:index:Deployer"
MEMORY_MB = 256
TIMEOUT_SECONDS = 300
# One rollout at a time: a second approval waits instead of racing the first one's update.
RESERVED_CONCURRENCY = 1
MAX_ASYNC_RETRIES = 2


@dataclass
class DeployerArgs:
    """Inputs of a :class:`Deployer`.

    Parameters
    ----------
    stack, environment: where it runs.
    endpoint_name, model_package_group_name: what it deploys, from where.
    model_role_arn, kms_key_arn, capture_uri: what new models and endpoint configs get.
    serving, deployment: instance settings and the blue/green strategy.
    rollback_alarm_names, rollback_alarm_arns: the alarms an update rolls back on.
    alarm_topic_arn: failed deployments notify this topic.
    artifacts_bucket, artifacts_bucket_arn: where versions' evaluation outputs are and where the
        serving files of a verified version are published (``serving/``).
    functions: the stack's shared Lambda settings (code, layer, logs).
    promotion_margin: the champion gate's margin, for versions approved without the gate.
    serving_image_uris: the image per instance family (cpu, gpu) new models serve with; the
        deployer picks the endpoint's family's (infra/images.py).
    """

    stack: StackIdentity
    environment: str
    endpoint_name: str
    model_package_group_name: str
    model_role_arn: pulumi.Input[str]
    kms_key_arn: pulumi.Input[str]
    capture_uri: pulumi.Input[str]
    serving: ServingConfig
    deployment: DeploymentConfig
    rollback_alarm_names: list[pulumi.Output[str]]
    rollback_alarm_arns: list[pulumi.Output[str]]
    alarm_topic_arn: pulumi.Input[str]
    artifacts_bucket: pulumi.Input[str]
    artifacts_bucket_arn: pulumi.Input[str]
    functions: FunctionSettings
    serving_image_uris: Mapping[str, pulumi.Input[str]]
    promotion_margin: float = DEFAULT_PROMOTION_MARGIN


class Deployer(pulumi.ComponentResource):
    """The deployer function, its two triggers, its scoped role and its failure alarm."""

    function: aws.lambda_.Function

    def __init__(self, name: str, args: DeployerArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__(COMPONENT_TYPE, name, None, opts)
        self._name = name
        self._args = args
        functions = FunctionBuilder(self, name, args.functions)
        self.function = functions.function(
            "deployer",
            handler=HANDLER_ENTRYPOINTS["deployer"],
            description="Rolls approved model versions out to the endpoint and verifies each rollout",
            memory_mb=MEMORY_MB,
            timeout_seconds=TIMEOUT_SECONDS,
            reserved_concurrency=RESERVED_CONCURRENCY,
            environment=self._environment(),
            statements=self._statements(),
        )
        aws.lambda_.FunctionEventInvokeConfig(
            f"{name}-async",
            function_name=self.function.name,
            maximum_retry_attempts=MAX_ASYNC_RETRIES,
            destination_config={"on_failure": {"destination": args.alarm_topic_arn}},
            opts=self._child(),
        )
        triggers = {
            "approved": ("A version was approved", approval_event_pattern(args.model_package_group_name)),
            "endpoint-changed": ("The endpoint changed state", endpoint_event_pattern(args.endpoint_name)),
        }
        for key, (description, pattern) in triggers.items():
            rule_name = f"{args.stack.name_prefix}-deployer-{key}"
            functions.event_trigger(key, rule_name, description, self.function, pattern=json.dumps(pattern))
        self.failure_alarm = self._failure_alarm()
        self.first_deployment = self._first_deployment(functions.triggers)
        self.register_outputs({"functionName": self.function.name, "functionArn": self.function.arn})

    def _child(self, **kwargs: Any) -> pulumi.ResourceOptions:
        return pulumi.ResourceOptions(parent=self, **kwargs)

    def _first_deployment(self, triggers: list[aws.cloudwatch.EventTarget]) -> aws.lambda_.Invocation | None:
        """``serving.modelPackageArn``: the deployer gets that version's approval event once (again
        only when the ARN changes), after its triggers exist, so verification and autoscaling
        follow as for any approval. Later versions roll out through the registry."""
        args = self._args
        arn = args.serving.model_package_arn
        if arn is None:
            return None
        group, version = arn.rsplit("/", 2)[-2:]
        if group != args.model_package_group_name:
            raise ValueError(
                f"ml-platform:serving.modelPackageArn = {arn}: the version must belong to this stack's "
                f"model package group {args.model_package_group_name}"
            )
        event = approval_event(group=group, version=int(version), arn=arn, region=args.stack.region)
        return aws.lambda_.Invocation(
            f"{self._name}-first-deployment",
            function_name=self.function.name,
            input=json.dumps(event),
            opts=self._child(depends_on=[self.function, *triggers]),
        )

    def _environment(self) -> dict[str, pulumi.Input[str]]:
        args = self._args
        deployment = args.deployment
        serving = args.serving
        return {
            "POWERTOOLS_SERVICE_NAME": "deployer",
            "POWERTOOLS_METRICS_NAMESPACE": METRICS_NAMESPACE,
            settings.ENV_STAGE: args.environment,
            settings.ENV_GROUP: args.model_package_group_name,
            settings.ENV_ENDPOINT: args.endpoint_name,
            settings.ENV_ROLE: args.model_role_arn,
            settings.ENV_KMS: args.kms_key_arn,
            settings.ENV_CAPTURE_URI: args.capture_uri,
            settings.ENV_CAPTURE_PERCENT: str(int(args.serving.data_capture_percent)),
            settings.ENV_VARIANTS: json.dumps(
                [{"name": v.name, "weight": v.weight} for v in serving.variants]
            ),
            settings.ENV_INSTANCE_TYPE: serving.instance_type,
            settings.ENV_SERVING_IMAGE_CPU: args.serving_image_uris[settings.CPU],
            settings.ENV_SERVING_IMAGE_GPU: args.serving_image_uris[settings.GPU],
            settings.ENV_PRECISION: serving.precision.value,
            settings.ENV_INSTANCE_COUNT: str(serving.min_instances),
            settings.ENV_MIN_INSTANCES: str(serving.min_instances),
            settings.ENV_MAX_INSTANCES: str(serving.max_instances),
            settings.ENV_TARGET_INVOCATIONS: str(serving.target_invocations_per_instance),
            settings.ENV_SCALE_IN_COOLDOWN: str(serving.scale_in_cooldown_seconds),
            settings.ENV_SCALE_OUT_COOLDOWN: str(serving.scale_out_cooldown_seconds),
            **self._off_hours_environment(),
            settings.ENV_STRATEGY: deployment.strategy.value,
            settings.ENV_CANARY: str(deployment.canary_percent),
            settings.ENV_LINEAR: str(deployment.linear_step_percent),
            settings.ENV_BAKING: str(deployment.baking_seconds),
            settings.ENV_TERMINATION: str(deployment.termination_wait_seconds),
            settings.ENV_ALARMS: pulumi.Output.json_dumps(args.rollback_alarm_names),
            settings.ENV_MARGIN: f"{args.promotion_margin:g}",
            # The API and drift Lambdas read the served version's files here (infra/api.py).
            settings.ENV_SERVING_FILES: pulumi.Output.concat(
                "s3://", args.artifacts_bucket, f"/{SERVING_PREFIX}/"
            ),
        }

    def _off_hours_environment(self) -> dict[str, pulumi.Input[str]]:
        off_hours = self._args.serving.off_hours
        if off_hours is None:
            return {}
        document = {
            "scaleDown": off_hours.scale_down,
            "scaleUp": off_hours.scale_up,
            "timezone": off_hours.timezone,
            "instances": off_hours.instances,
        }
        return {settings.ENV_OFF_HOURS: json.dumps(document)}

    def _statements(self) -> list[dict[str, object]]:
        args = self._args
        group = args.model_package_group_name
        created = [
            self._args.stack.arn("sagemaker", f"model/{group}-*"),
            self._args.stack.arn("sagemaker", f"endpoint-config/{group}-*"),
            self._args.stack.arn("sagemaker", f"endpoint/{args.endpoint_name.lower()}"),
        ]
        return [
            {
                "Sid": "ReadApprovedVersions",
                "Effect": "Allow",
                "Action": "sagemaker:DescribeModelPackage",
                "Resource": self._args.stack.arn("sagemaker", f"model-package/{group}/*"),
            },
            {
                # The champion gate records its comparison on a version approved without it, and
                # rejects a worse one (handlers/deployer/gate.py).
                "Sid": "RecordChampionGateDecisions",
                "Effect": "Allow",
                "Action": "sagemaker:UpdateModelPackage",
                "Resource": self._args.stack.arn("sagemaker", f"model-package/{group}/*"),
            },
            {
                "Sid": "RollOutToThisEndpoint",
                "Effect": "Allow",
                "Action": [
                    "sagemaker:CreateModel",
                    "sagemaker:CreateEndpointConfig",
                    "sagemaker:CreateEndpoint",
                    "sagemaker:UpdateEndpoint",
                    "sagemaker:DescribeEndpoint",
                    "sagemaker:DescribeEndpointConfig",
                    # Application Auto Scaling acts with the caller's rights on the variants.
                    "sagemaker:UpdateEndpointWeightsAndCapacities",
                    "sagemaker:DescribeModel",
                    "sagemaker:AddTags",
                    "sagemaker:ListTags",
                ],
                "Resource": created,
            },
            *self._autoscaling_statements(),
            {
                "Sid": "PassModelRoleToSageMaker",
                "Effect": "Allow",
                "Action": "iam:PassRole",
                "Resource": args.model_role_arn,
                "Condition": {"StringEquals": {"iam:PassedToService": "sagemaker.amazonaws.com"}},
            },
            {
                # New endpoint configs encrypt capture (and volumes where allowed) with the stack key.
                "Sid": "UseStackKeyForEndpoints",
                "Effect": "Allow",
                "Action": ["kms:CreateGrant", "kms:DescribeKey"],
                "Resource": args.kms_key_arn,
            },
            {
                "Sid": "ReadRollbackAlarms",
                "Effect": "Allow",
                "Action": "cloudwatch:DescribeAlarms",
                "Resource": args.rollback_alarm_arns,
            },
            {
                "Sid": "ReportFailedDeployments",
                "Effect": "Allow",
                "Action": "sns:Publish",
                "Resource": args.alarm_topic_arn,
            },
            {
                # A verified version's input schema and baseline sit next to its evaluation report.
                "Sid": "ReadVersionsServingFiles",
                "Effect": "Allow",
                "Action": "s3:GetObject",
                "Resource": pulumi.Output.concat(args.artifacts_bucket_arn, "/evaluation/*"),
            },
            {
                "Sid": "PublishServingFiles",
                "Effect": "Allow",
                "Action": "s3:PutObject",
                "Resource": pulumi.Output.concat(args.artifacts_bucket_arn, f"/{SERVING_PREFIX}/*"),
            },
            {
                # The alert topic and the artifacts bucket are encrypted with the stack key.
                "Sid": "PublishToEncryptedTopic",
                "Effect": "Allow",
                "Action": ["kms:GenerateDataKey", "kms:Decrypt"],
                "Resource": args.kms_key_arn,
            },
        ]

    def _autoscaling_statements(self) -> list[dict[str, object]]:
        """What registering the variants' scaling takes (SageMaker's documented minimum)."""
        stack = self._args.stack
        return [
            {
                # Scalable targets have generated IDs: any target of this account and region.
                "Sid": "ScaleTheEndpointsVariants",
                "Effect": "Allow",
                "Action": [
                    "application-autoscaling:RegisterScalableTarget",
                    "application-autoscaling:DeregisterScalableTarget",
                    "application-autoscaling:PutScalingPolicy",
                    "application-autoscaling:PutScheduledAction",
                ],
                "Resource": stack.arn("application-autoscaling", "scalable-target/*"),
            },
            {
                # Target tracking creates and removes its own alarms.
                "Sid": "TargetTrackingAlarms",
                "Effect": "Allow",
                "Action": [
                    "cloudwatch:PutMetricAlarm",
                    "cloudwatch:DeleteAlarms",
                    "cloudwatch:DescribeAlarms",
                ],
                "Resource": stack.arn("cloudwatch", "alarm:TargetTracking*"),
            },
            {
                "Sid": "CreateScalingServiceLinkedRole",
                "Effect": "Allow",
                "Action": "iam:CreateServiceLinkedRole",
                "Resource": pulumi.Output.concat(
                    "arn:",
                    stack.partition,
                    ":iam::",
                    stack.account_id,
                    ":role/aws-service-role/sagemaker.application-autoscaling.amazonaws.com/",
                    "AWSServiceRoleForApplicationAutoScaling_SageMakerEndpoint",
                ),
                "Condition": {
                    "StringLike": {"iam:AWSServiceName": "sagemaker.application-autoscaling.amazonaws.com"}
                },
            },
        ]

    def _failure_alarm(self) -> aws.cloudwatch.MetricAlarm:
        args = self._args
        return aws.cloudwatch.MetricAlarm(
            f"{self._name}-failed-alarm",
            name=f"{args.stack.name_prefix}-deployment-failed",
            alarm_description=f"A rollout to {args.endpoint_name} failed or was rolled back "
            "(see docs/deployments.md)",
            namespace=METRICS_NAMESPACE,
            metric_name="DeploymentFailed",
            dimensions={"EndpointName": args.endpoint_name},
            statistic="Sum",
            period=300,
            evaluation_periods=1,
            threshold=0,
            comparison_operator="GreaterThanThreshold",
            treat_missing_data="notBreaching",
            alarm_actions=[args.alarm_topic_arn],
            actions_enabled=True,
            opts=self._child(),
        )
