"""TrainingPipeline: the SageMaker pipeline prepare -> train (GPU) -> evaluate -> gate -> register.

Also the execution role it runs as (scoped to this stack's buckets, key and model package group),
the training code uploaded under a content-addressed key, and the two triggers that start it: a
schedule and new data landing in the raw bucket, both passing the dataset version.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any

import pulumi
import pulumi_aws as aws

from infra.context import StackIdentity
from infra.data_lake import RAW_PREFIX, raw_data_created_pattern
from infra.iam import (
    container_statements,
    policy_document,
    service_assume_role_policy,
    volume_key_grant_statement,
)
from infra.pipeline_definition import PipelineDefinitionSpec, pipeline_definition
from infra.source_bundle import SourceBundle, build_folder_bundle, build_source_bundle
from infra.stack_config import TrainingConfig, project_root
from training_jobs.tasks import TASKS

COMPONENT_TYPE = "mlplatform:index:TrainingPipeline"
# SageMaker names the jobs a pipeline starts "pipelines-<execution>-<step>-<hash>".
PIPELINE_JOB_PREFIX = "pipelines-"
SCHEDULED_DATASET_VERSION = "latest"
# EventBridge replaces a value that is a JSON path with that field of the event, at run time.
EVENT_DATASET_VERSION = "$.detail.object.version-id"


@dataclass
class TrainingPipelineArgs:
    """Inputs of a :class:`TrainingPipeline`.

    Parameters
    ----------
    stack: where the pipeline lives.
    bucket_names, bucket_arns: the data lake's buckets, by purpose (raw, processed, artifacts...).
    kms_key_arn: the stack key; every job output and volume is encrypted with it.
    model_package_group_name: where a model that passes the evaluation gate is registered.
    training: the stack's training settings.
    serving_instance_type: what the endpoint serves on: registered versions name it as their
        supported instance type.
    serving_image_uri: the image registered versions serve with: the stack's for that
        instance type's family (infra/images.py); None: SageMaker's PyTorch inference image.
    serving_environment: the serving container's environment registered with each version.
    metric_definitions: SageMaker metric regexes matching what the training script prints.
    """

    stack: StackIdentity
    bucket_names: dict[str, pulumi.Output[str]]
    bucket_arns: dict[str, pulumi.Output[str]]
    kms_key_arn: pulumi.Input[str]
    model_package_group_name: pulumi.Input[str]
    training: TrainingConfig
    serving_instance_type: str
    serving_image_uri: pulumi.Input[str] | None = None
    serving_environment: Mapping[str, str] = field(default_factory=dict)
    metric_definitions: Sequence[dict[str, str]] = field(default_factory=list)


class TrainingPipeline(pulumi.ComponentResource):
    """The training pipeline, its execution role, its code and its triggers."""

    role: aws.iam.Role
    pipeline: aws.sagemaker.Pipeline

    def __init__(
        self, name: str, args: TrainingPipelineArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__(COMPONENT_TYPE, name, None, opts)
        self._name = name
        self._args = args
        self.pipeline_name = f"{args.stack.name_prefix}-training"
        self.role = aws.iam.Role(
            f"{name}-execution-role",
            name=f"{args.stack.name_prefix}-sagemaker-training",
            description="Runs the training pipeline's processing and training jobs",
            assume_role_policy=service_assume_role_policy("sagemaker.amazonaws.com", args.stack.account_id),
            max_session_duration=12 * 3600,
            opts=self._child(),
        )
        self.code = self._upload_code()
        self.source_code = self._upload_source_code()
        self.definition = self._definition()
        self.role_policy = aws.iam.RolePolicy(
            f"{name}-execution-policy",
            role=self.role.id,
            policy=self._execution_policy(),
            opts=self._child(),
        )
        self.pipeline = aws.sagemaker.Pipeline(
            f"{name}-pipeline",
            pipeline_name=self.pipeline_name,
            pipeline_display_name=self.pipeline_name,
            pipeline_description="prepare -> train -> evaluate -> gate -> register (PendingManualApproval)",
            role_arn=self.role.arn,
            pipeline_definition=self.definition,
            # The jobs need the code and the role's permissions from their first run on.
            opts=self._child(depends_on=[self.code, *self.source_code, self.role_policy]),
        )
        self._triggers()
        self.register_outputs(
            {"pipelineName": self.pipeline_name, "pipelineArn": self.pipeline.arn, "roleArn": self.role.arn}
        )

    def _child(self, **kwargs: Any) -> pulumi.ResourceOptions:
        return pulumi.ResourceOptions(parent=self, **kwargs)

    # --- code and definition -------------------------------------------------------------------------

    def _upload_code(self) -> aws.s3.BucketObjectv2:
        """The platform's bundle: its generic preparer and evaluator, and the built-in tasks."""
        bundle = build_source_bundle()
        self.code_uri = self._bundle_uri(bundle)
        return self._bundle_object("code", bundle)

    def _upload_source_code(self) -> list[aws.s3.BucketObjectv2]:
        """The team's source folder (``training.source``) as its own content-addressed bundle."""
        source = self._args.training.source
        self.source_code_uri: pulumi.Output[str] | None = None
        if source is None:
            return []
        bundle = build_folder_bundle(project_root() / source.dir)
        self.source_code_uri = self._bundle_uri(bundle)
        return [self._bundle_object("source-code", bundle)]

    def _bundle_uri(self, bundle: SourceBundle) -> pulumi.Output[str]:
        return pulumi.Output.concat("s3://", self._args.bucket_names["artifacts"], "/", bundle.s3_key)

    def _bundle_object(self, suffix: str, bundle: SourceBundle) -> aws.s3.BucketObjectv2:
        return aws.s3.BucketObjectv2(
            f"{self._name}-{suffix}",
            bucket=self._args.bucket_names["artifacts"],
            key=bundle.s3_key,
            source=pulumi.FileAsset(str(bundle.path)),
            server_side_encryption="aws:kms",
            kms_key_id=self._args.kms_key_arn,
            opts=self._child(),
        )

    def _definition(self) -> pulumi.Output[str]:
        """The pipeline JSON, built with the SageMaker SDK once the names it embeds are known."""
        args = self._args
        training = args.training
        names = args.bucket_names
        return pulumi.Output.all(
            role_arn=self.role.arn,
            raw=names["raw"],
            processed=names["processed"],
            artifacts=names["artifacts"],
            key=args.kms_key_arn,
            code_uri=self.code_uri,
            source_code_uri=self.source_code_uri,
            group=args.model_package_group_name,
            serving_image=args.serving_image_uri,
        ).apply(
            lambda known: pipeline_definition(
                PipelineDefinitionSpec(
                    pipeline_name=self.pipeline_name,
                    region=args.stack.region,
                    role_arn=known["role_arn"],
                    raw_bucket=known["raw"],
                    processed_bucket=known["processed"],
                    artifacts_bucket=known["artifacts"],
                    kms_key_arn=known["key"],
                    code_uri=known["code_uri"],
                    source_code_uri=known["source_code_uri"],
                    model_package_group_name=known["group"],
                    training=training,
                    metric_definitions=list(args.metric_definitions),
                    model_name=model_name(training),
                    inference_instance_type=args.serving_instance_type,
                    serving_image_uri=known["serving_image"],
                    serving_environment=dict(args.serving_environment),
                )
            )
        )

    # --- permissions -----------------------------------------------------------------------------------

    def _execution_policy(self) -> pulumi.Output[str]:
        """What the pipeline's jobs may do: this stack's data, key, logs, images and registry only."""
        args = self._args
        arns = args.bucket_arns
        arn = args.stack.arn
        return pulumi.Output.all(definition=self.definition, role_arn=self.role.arn).apply(
            lambda known: policy_document(
                {
                    "Sid": "ReadRawData",
                    "Effect": "Allow",
                    "Action": ["s3:GetObject", "s3:GetObjectVersion"],
                    "Resource": pulumi.Output.concat(arns["raw"], "/", RAW_PREFIX, "*"),
                },
                {
                    "Sid": "ReadWriteDerivedDataAndArtifacts",
                    "Effect": "Allow",
                    "Action": ["s3:GetObject", "s3:PutObject", "s3:AbortMultipartUpload"],
                    "Resource": [
                        pulumi.Output.concat(arns[p], "/*") for p in ("processed", "features", "artifacts")
                    ],
                },
                {
                    # Checkpoint sync removes checkpoints the training script has rotated out.
                    "Sid": "RotateCheckpoints",
                    "Effect": "Allow",
                    "Action": "s3:DeleteObject",
                    "Resource": pulumi.Output.concat(arns["artifacts"], "/checkpoints/*"),
                },
                {
                    "Sid": "ListOwnBuckets",
                    "Effect": "Allow",
                    "Action": ["s3:ListBucket", "s3:GetBucketLocation"],
                    "Resource": [arns[p] for p in ("raw", "processed", "features", "artifacts")],
                },
                {
                    "Sid": "UseStackKey",
                    "Effect": "Allow",
                    "Action": ["kms:Decrypt", "kms:Encrypt", "kms:GenerateDataKey", "kms:DescribeKey"],
                    "Resource": args.kms_key_arn,
                },
                volume_key_grant_statement(args.kms_key_arn),
                {
                    "Sid": "WriteJobLogs",
                    "Effect": "Allow",
                    "Action": [
                        "logs:CreateLogGroup",
                        "logs:CreateLogStream",
                        "logs:PutLogEvents",
                        "logs:DescribeLogStreams",
                    ],
                    "Resource": arn("logs", "log-group:/aws/sagemaker/*"),
                },
                *container_statements(
                    image_repository_arns(known["definition"]), ["/aws/sagemaker/*", "ml-platform/*"]
                ),
                {
                    "Sid": "RunPipelineJobs",
                    "Effect": "Allow",
                    "Action": [
                        "sagemaker:CreateProcessingJob",
                        "sagemaker:DescribeProcessingJob",
                        "sagemaker:StopProcessingJob",
                        "sagemaker:CreateTrainingJob",
                        "sagemaker:DescribeTrainingJob",
                        "sagemaker:StopTrainingJob",
                        "sagemaker:AddTags",
                    ],
                    "Resource": [
                        arn("sagemaker", f"processing-job/{PIPELINE_JOB_PREFIX}*"),
                        arn("sagemaker", f"training-job/{PIPELINE_JOB_PREFIX}*"),
                    ],
                },
                {
                    "Sid": "RegisterModels",
                    "Effect": "Allow",
                    "Action": [
                        "sagemaker:CreateModelPackage",
                        "sagemaker:DescribeModelPackage",
                        "sagemaker:DescribeModelPackageGroup",
                        "sagemaker:AddTags",
                    ],
                    "Resource": [
                        arn(
                            "sagemaker",
                            pulumi.Output.concat("model-package-group/", args.model_package_group_name),
                        ),
                        arn(
                            "sagemaker",
                            pulumi.Output.concat("model-package/", args.model_package_group_name, "/*"),
                        ),
                    ],
                },
                {
                    "Sid": "PassOwnRoleToJobs",
                    "Effect": "Allow",
                    "Action": "iam:PassRole",
                    "Resource": known["role_arn"],
                    "Condition": {"StringEquals": {"iam:PassedToService": "sagemaker.amazonaws.com"}},
                },
            )
        )

    # --- triggers --------------------------------------------------------------------------------------

    def _triggers(self) -> None:
        args = self._args
        trigger_role = aws.iam.Role(
            f"{self._name}-trigger-role",
            name=f"{args.stack.name_prefix}-training-trigger",
            description="Lets EventBridge start the training pipeline",
            assume_role_policy=service_assume_role_policy("events.amazonaws.com", args.stack.account_id),
            opts=self._child(),
        )
        aws.iam.RolePolicy(
            f"{self._name}-trigger-policy",
            role=trigger_role.id,
            policy=policy_document(
                {
                    "Sid": "StartTrainingPipeline",
                    "Effect": "Allow",
                    "Action": "sagemaker:StartPipelineExecution",
                    "Resource": self.pipeline.arn,
                }
            ),
            opts=self._child(),
        )
        schedule = aws.cloudwatch.EventRule(
            f"{self._name}-schedule",
            name=f"{args.stack.name_prefix}-training-schedule",
            description="Retrains on the configured schedule with the latest data",
            schedule_expression=args.training.schedule,
            opts=self._child(),
        )
        new_data = aws.cloudwatch.EventRule(
            f"{self._name}-new-data",
            name=f"{args.stack.name_prefix}-training-new-data",
            description="Retrains when new data lands under raw/",
            event_pattern=raw_data_created_pattern(args.bucket_names["raw"]),
            opts=self._child(),
        )
        targets = (
            ("schedule", schedule, SCHEDULED_DATASET_VERSION),
            ("new-data", new_data, EVENT_DATASET_VERSION),
        )
        for trigger, rule, dataset_version in targets:
            aws.cloudwatch.EventTarget(
                f"{self._name}-{trigger}-target",
                rule=rule.name,
                arn=self.pipeline.arn,
                role_arn=trigger_role.arn,
                sagemaker_pipeline_target={
                    "pipeline_parameter_lists": [{"name": "DatasetVersion", "value": dataset_version}]
                },
                retry_policy={"maximum_retry_attempts": 3, "maximum_event_age_in_seconds": 3600},
                opts=self._child(),
            )


def image_repository_arns(definition_json: str) -> list[str]:
    """ECR repository ARNs of every container image the pipeline definition names."""
    images: set[str] = set()
    _collect_images(json.loads(definition_json), images)
    return sorted(image_repository_arn(image) for image in images)


def _collect_images(node: Any, images: set[str]) -> None:
    if isinstance(node, dict):
        for key, value in node.items():
            if (
                key in {"ImageUri", "TrainingImage", "Image"}
                and isinstance(value, str)
                and ".dkr.ecr." in value
            ):
                images.add(value)
            else:
                _collect_images(value, images)
    elif isinstance(node, list):
        for item in node:
            _collect_images(item, images)


def image_repository_arn(image_uri: str) -> str:
    """``<account>.dkr.ecr.<region>.amazonaws.com[.cn]/<repo>:<tag>`` -> the repository's ARN."""
    registry, _, repository = image_uri.partition("/")
    account, _, _, region, *_ = registry.split(".")
    partition = "aws-cn" if registry.endswith(".cn") else "aws"
    return f"arn:{partition}:ecr:{region}:{account}:repository/{repository.split(':')[0].split('@')[0]}"


def model_name(training: TrainingConfig) -> str:
    """What a registered version records as its model: the built-in task's architecture, or the
    team's source folder (or image repository) name."""
    if training.source is not None:
        return PurePosixPath(training.source.dir).name
    if training.image is not None:
        return training.image.split("/", 1)[1].split(":")[0].split("@")[0].replace("/", "-")
    return TASKS[training.task].model_name
