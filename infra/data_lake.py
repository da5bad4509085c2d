"""DataLake: the encrypted, versioned, TLS-only S3 storage every other component reads and writes.

Buckets: raw (landing zone, never expires by default, emits EventBridge events that start retraining),
processed, features, artifacts (models; never expire, the registry points at them), and
an access-log bucket that receives the server access logs of the other four.
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from infra.context import StackIdentity
from infra.iam import account_root_arn, tls_only_statements
from infra.stack_config import DataConfig

COMPONENT_TYPE = "mlplatform:index:DataLake"
DATA_BUCKETS = ("raw", "processed", "features", "artifacts")
ACCESS_LOG_BUCKET = "access-logs"
# Buckets whose superseded versions are derived data, rebuilt by the pipeline's Prepare step: they may expire.
DERIVED_BUCKETS = ("processed", "features")
# Where new raw data lands; the training pipeline's new-data rule reacts to objects created under it.
RAW_PREFIX = "raw/"
# An explicit filter on every rule: an absent filter is read differently by the provider versions.
WHOLE_BUCKET: aws.s3.BucketLifecycleConfigurationRuleFilterArgsDict = {"prefix": ""}
LifecycleRule = aws.s3.BucketLifecycleConfigurationRuleArgsDict


@dataclass
class DataLakeArgs:
    """Inputs of a :class:`DataLake`.

    Parameters
    ----------
    stack: where the buckets live; bucket names are ``<prefix>-<purpose>-<account>-<region>``,
        globally unique.
    data: retention settings from the stack configuration.
    """

    stack: StackIdentity
    data: DataConfig


class DataLake(pulumi.ComponentResource):
    """A KMS key and the platform's buckets, each locked down the same way."""

    key: aws.kms.Key
    buckets: dict[str, aws.s3.Bucket]
    access_log_bucket: aws.s3.Bucket

    def __init__(self, name: str, args: DataLakeArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__(COMPONENT_TYPE, name, None, opts)
        self._name = name
        self._args = args
        self.key = self._kms_key()
        self.access_log_bucket, self._access_log_policy = self._access_log_bucket()
        self.buckets = {purpose: self._data_bucket(purpose) for purpose in DATA_BUCKETS}
        # S3 events on raw go to EventBridge, where the training pipeline's new-data rule subscribes.
        aws.s3.BucketNotification(
            f"{name}-raw-events",
            bucket=self.buckets["raw"].id,
            eventbridge=True,
            opts=self._child(),
        )
        self.register_outputs(
            {
                "bucketNames": self.bucket_names,
                "bucketArns": self.bucket_arns,
                "kmsKeyArn": self.key.arn,
            }
        )

    @property
    def bucket_names(self) -> dict[str, pulumi.Output[str]]:
        names = {purpose: bucket.bucket for purpose, bucket in self.buckets.items()}
        return {**names, ACCESS_LOG_BUCKET: self.access_log_bucket.bucket}

    @property
    def bucket_arns(self) -> dict[str, pulumi.Output[str]]:
        arns = {purpose: bucket.arn for purpose, bucket in self.buckets.items()}
        return {**arns, ACCESS_LOG_BUCKET: self.access_log_bucket.arn}

    # --- resources ---------------------------------------------------------------------------------

    def _child(self, **kwargs: object) -> pulumi.ResourceOptions:
        return pulumi.ResourceOptions(parent=self, **kwargs)  # type: ignore[arg-type]

    def _bucket_name(self, purpose: str) -> pulumi.Output[str]:
        return pulumi.Output.concat(
            self._args.stack.name_prefix,
            "-",
            purpose,
            "-",
            self._args.stack.account_id,
            "-",
            self._args.stack.region,
        )

    def _kms_key(self) -> aws.kms.Key:
        args = self._args
        policy = pulumi.Output.json_dumps(
            {
                "Version": "2012-10-17",
                "Statement": [
                    {
                        # Delegates use of the key to IAM policies of this account (no wildcard principal).
                        "Sid": "AccountAdministersKey",
                        "Effect": "Allow",
                        "Principal": {"AWS": account_root_arn(args.stack.partition, args.stack.account_id)},
                        "Action": "kms:*",
                        "Resource": "*",
                    },
                    {
                        # Alarms, EventBridge rules and budgets publish to the encrypted alert topic.
                        "Sid": "AlarmsPublishToEncryptedTopics",
                        "Effect": "Allow",
                        "Principal": {
                            "Service": [
                                "cloudwatch.amazonaws.com",
                                "events.amazonaws.com",
                                "budgets.amazonaws.com",
                            ]
                        },
                        "Action": ["kms:Decrypt", "kms:GenerateDataKey*"],
                        "Resource": "*",
                        "Condition": {"StringEquals": {"aws:SourceAccount": args.stack.account_id}},
                    },
                    {
                        # CloudWatch Logs encrypts this stack's log groups with the key.
                        "Sid": "CloudWatchLogsEncryptLogGroups",
                        "Effect": "Allow",
                        "Principal": {"Service": f"logs.{args.stack.region}.amazonaws.com"},
                        "Action": [
                            "kms:Encrypt*",
                            "kms:Decrypt*",
                            "kms:ReEncrypt*",
                            "kms:GenerateDataKey*",
                            "kms:Describe*",
                        ],
                        "Resource": "*",
                        "Condition": {
                            "ArnLike": {"kms:EncryptionContext:aws:logs:arn": args.stack.arn("logs", "*")}
                        },
                    },
                ],
            }
        )
        key = aws.kms.Key(
            f"{self._name}-key",
            description=f"{args.stack.name_prefix}: data lake, model artifacts, logs and endpoint storage",
            enable_key_rotation=True,
            deletion_window_in_days=30,
            policy=policy,
            opts=self._child(),
        )
        aws.kms.Alias(
            f"{self._name}-key-alias",
            name=f"alias/{args.stack.name_prefix}-data",
            target_key_id=key.key_id,
            opts=self._child(),
        )
        return key

    def _bucket(self, purpose: str) -> aws.s3.Bucket:
        """A bucket with the settings every bucket shares: versioning, no ACLs, no public access."""
        bucket = aws.s3.Bucket(
            f"{self._name}-{purpose}",
            bucket=self._bucket_name(purpose),
            # Buckets with data are never deleted by an update or a destroy by accident.
            force_destroy=False,
            opts=self._child(),
        )
        aws.s3.BucketVersioning(
            f"{self._name}-{purpose}-versioning",
            bucket=bucket.id,
            versioning_configuration={"status": "Enabled"},
            opts=self._child(),
        )
        aws.s3.BucketOwnershipControls(
            f"{self._name}-{purpose}-ownership",
            bucket=bucket.id,
            rule={"object_ownership": "BucketOwnerEnforced"},
            opts=self._child(),
        )
        aws.s3.BucketPublicAccessBlock(
            f"{self._name}-{purpose}-public-access",
            bucket=bucket.id,
            block_public_acls=True,
            block_public_policy=True,
            ignore_public_acls=True,
            restrict_public_buckets=True,
            opts=self._child(),
        )
        return bucket

    def _data_bucket(self, purpose: str) -> aws.s3.Bucket:
        bucket = self._bucket(purpose)
        aws.s3.BucketServerSideEncryptionConfiguration(
            f"{self._name}-{purpose}-encryption",
            bucket=bucket.id,
            rules=[
                {
                    "apply_server_side_encryption_by_default": {
                        "sse_algorithm": "aws:kms",
                        "kms_master_key_id": self.key.arn,
                    },
                    # The bucket key cuts KMS requests (and cost) by orders of magnitude.
                    "bucket_key_enabled": True,
                }
            ],
            opts=self._child(),
        )
        self._tls_only_policy(purpose, bucket)
        aws.s3.BucketLogging(
            f"{self._name}-{purpose}-logging",
            bucket=bucket.id,
            target_bucket=self.access_log_bucket.id,
            target_prefix=f"{purpose}/",
            target_object_key_format={"partitioned_prefix": {"partition_date_source": "EventTime"}},
            # S3 checks the log bucket's policy when logging is switched on: the policy must exist first.
            opts=self._child(depends_on=[self._access_log_policy]),
        )
        aws.s3.BucketLifecycleConfiguration(
            f"{self._name}-{purpose}-lifecycle",
            bucket=bucket.id,
            rules=self._lifecycle_rules(purpose),
            opts=self._child(),
        )
        return bucket

    def _access_log_bucket(self) -> tuple[aws.s3.Bucket, aws.s3.BucketPolicy]:
        bucket = self._bucket(ACCESS_LOG_BUCKET)
        aws.s3.BucketServerSideEncryptionConfiguration(
            f"{self._name}-{ACCESS_LOG_BUCKET}-encryption",
            bucket=bucket.id,
            # S3 server access logging cannot deliver to an SSE-KMS bucket: SSE-S3 is the only option.
            rules=[{"apply_server_side_encryption_by_default": {"sse_algorithm": "AES256"}}],
            opts=self._child(),
        )
        source_arns = [
            pulumi.Output.concat("arn:", self._args.stack.partition, ":s3:::", self._bucket_name(purpose))
            for purpose in DATA_BUCKETS
        ]
        policy = self._tls_only_policy(
            ACCESS_LOG_BUCKET,
            bucket,
            extra_statements=[
                {
                    # With ACLs disabled, log delivery writes through this policy, for our buckets only.
                    "Sid": "S3ServerAccessLogsFromThisStack",
                    "Effect": "Allow",
                    "Principal": {"Service": "logging.s3.amazonaws.com"},
                    "Action": "s3:PutObject",
                    "Resource": pulumi.Output.concat(bucket.arn, "/*"),
                    "Condition": {
                        "ArnLike": {"aws:SourceArn": source_arns},
                        "StringEquals": {"aws:SourceAccount": self._args.stack.account_id},
                    },
                }
            ],
        )
        aws.s3.BucketLifecycleConfiguration(
            f"{self._name}-{ACCESS_LOG_BUCKET}-lifecycle",
            bucket=bucket.id,
            rules=self._lifecycle_rules(ACCESS_LOG_BUCKET),
            opts=self._child(),
        )
        return bucket, policy

    def _tls_only_policy(
        self, purpose: str, bucket: aws.s3.Bucket, extra_statements: list[dict[str, object]] | None = None
    ) -> aws.s3.BucketPolicy:
        return aws.s3.BucketPolicy(
            f"{self._name}-{purpose}-policy",
            bucket=bucket.id,
            policy=pulumi.Output.json_dumps(
                {
                    "Version": "2012-10-17",
                    "Statement": [*tls_only_statements(bucket.arn), *(extra_statements or [])],
                }
            ),
            opts=self._child(),
        )

    def _lifecycle_rules(self, purpose: str) -> list[LifecycleRule]:
        """Rules with explicit whole-bucket filters; only derived data and logs ever expire."""
        data = self._args.data
        rules = [
            LifecycleRule(
                id="abort-incomplete-multipart-uploads",
                status="Enabled",
                filter=WHOLE_BUCKET,
                abort_incomplete_multipart_upload={
                    "days_after_initiation": data.abort_incomplete_upload_days
                },
            )
        ]
        if purpose in DERIVED_BUCKETS:
            rules.append(
                LifecycleRule(
                    id="expire-noncurrent-versions",
                    status="Enabled",
                    filter=WHOLE_BUCKET,
                    noncurrent_version_expiration={"noncurrent_days": data.processed_noncurrent_days},
                )
            )
        elif purpose == ACCESS_LOG_BUCKET:
            rules.append(_expiry("expire-access-logs", data.access_log_retention_days))
        elif purpose == "raw" and data.raw_retention_days is not None:
            rules.append(_expiry("expire-raw-data", data.raw_retention_days))
        return rules


def _expiry(rule_id: str, days: int) -> LifecycleRule:
    """Current versions expire after ``days``, and the versions they leave behind as long after."""
    return LifecycleRule(
        id=rule_id,
        status="Enabled",
        filter=WHOLE_BUCKET,
        expiration={"days": days},
        noncurrent_version_expiration={"noncurrent_days": days},
    )


def raw_data_created_pattern(raw_bucket_name: pulumi.Input[str]) -> pulumi.Output[str]:
    """EventBridge pattern: an object created under ``raw/`` in this stack's raw bucket."""
    return pulumi.Output.json_dumps(
        {
            "source": ["aws.s3"],
            "detail-type": ["Object Created"],
            "detail": {"bucket": {"name": [raw_bucket_name]}, "object": {"key": [{"prefix": RAW_PREFIX}]}},
        }
    )
