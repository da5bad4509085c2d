"""Create the offline plan's resources in the emulator, under the names the Pulumi program declares,
for local mode and tests; types local mode does not need are skipped and reported
(docs/local-platform.md).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from infra.offline import Plan, PlannedResource

ENCRYPTION_TYPE = "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration"


@dataclass
class AppliedStack:
    """What was created, what was skipped, and how planned identifiers map to the emulator's."""

    created: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    # Settings the emulator cannot honour, kept in the plan (and its tests) but not handed over.
    emulator_gaps: list[str] = field(default_factory=list)
    identifiers: dict[str, str] = field(default_factory=dict)

    def resolve(self, value: Any) -> Any:
        """``value`` with every planned identifier replaced by the emulator's."""
        if isinstance(value, str):
            return self.identifiers.get(value, value)
        if isinstance(value, Mapping):
            return {key: self.resolve(item) for key, item in value.items()}
        if isinstance(value, list):
            return [self.resolve(item) for item in value]
        return value


class LocalApplier:
    """Applies a :class:`Plan` through boto3 clients (``s3``, ``kms``, ``sagemaker``, ``sns``) pointed
    at the emulator."""

    def __init__(self, clients: Mapping[str, Any], region: str) -> None:
        self._s3 = clients["s3"]
        self._kms = clients["kms"]
        self._sagemaker = clients["sagemaker"]
        self._sns = clients["sns"]
        self._region = region
        self._handlers: dict[str, Callable[[Mapping[str, Any], AppliedStack, PlannedResource], None]] = {
            "aws:kms/key:Key": self._key,
            "aws:kms/alias:Alias": self._alias,
            "aws:s3/bucket:Bucket": self._bucket,
            "aws:s3/bucketVersioning:BucketVersioning": self._versioning,
            "aws:s3/bucketOwnershipControls:BucketOwnershipControls": self._ownership,
            "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock": self._public_access_block,
            ENCRYPTION_TYPE: self._encryption,
            "aws:s3/bucketPolicy:BucketPolicy": self._policy,
            "aws:s3/bucketLogging:BucketLogging": self._logging,
            "aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration": self._lifecycle,
            "aws:s3/bucketNotification:BucketNotification": self._notification,
            "aws:s3/bucketObjectv2:BucketObjectv2": self._object,
            "aws:sagemaker/modelPackageGroup:ModelPackageGroup": self._model_package_group,
            "aws:sagemaker/pipeline:Pipeline": self._pipeline,
            "aws:sns/topic:Topic": self._topic,
        }

    def apply(self, plan: Plan) -> AppliedStack:
        applied = AppliedStack()
        for resource in plan.in_dependency_order():
            handler = self._handlers.get(resource.type)
            if not resource.custom or resource.type.startswith("pulumi:providers:"):
                continue
            if handler is None:
                applied.skipped.append(f"{resource.type} {resource.name}")
                continue
            handler(applied.resolve(dict(resource.inputs)), applied, resource)
            applied.created.append(f"{resource.type} {resource.name}")
        return applied

    # --- KMS ------------------------------------------------------------------------------------------

    def _key(self, inputs: Mapping[str, Any], applied: AppliedStack, planned: PlannedResource) -> None:
        metadata = self._kms.create_key(
            Description=inputs.get("description", planned.name), Policy=inputs["policy"]
        )["KeyMetadata"]
        if inputs.get("enableKeyRotation"):
            self._kms.enable_key_rotation(KeyId=metadata["KeyId"])
        applied.identifiers[planned.outputs["arn"]] = metadata["Arn"]
        applied.identifiers[planned.id] = metadata["KeyId"]

    def _alias(self, inputs: Mapping[str, Any], applied: AppliedStack, planned: PlannedResource) -> None:
        self._kms.create_alias(AliasName=inputs["name"], TargetKeyId=inputs["targetKeyId"])

    # --- S3 -------------------------------------------------------------------------------------------

    def _bucket(self, inputs: Mapping[str, Any], applied: AppliedStack, planned: PlannedResource) -> None:
        location = (
            {}
            if self._region == "us-east-1"
            else {"CreateBucketConfiguration": {"LocationConstraint": self._region}}
        )
        self._s3.create_bucket(Bucket=inputs["bucket"], **location)

    def _versioning(self, inputs: Mapping[str, Any], applied: AppliedStack, planned: PlannedResource) -> None:
        status = inputs["versioningConfiguration"]["status"]
        self._s3.put_bucket_versioning(Bucket=inputs["bucket"], VersioningConfiguration={"Status": status})

    def _ownership(self, inputs: Mapping[str, Any], applied: AppliedStack, planned: PlannedResource) -> None:
        rule = {"ObjectOwnership": inputs["rule"]["objectOwnership"]}
        self._s3.put_bucket_ownership_controls(Bucket=inputs["bucket"], OwnershipControls={"Rules": [rule]})

    def _public_access_block(
        self, inputs: Mapping[str, Any], applied: AppliedStack, planned: PlannedResource
    ) -> None:
        flags = ("blockPublicAcls", "blockPublicPolicy", "ignorePublicAcls", "restrictPublicBuckets")
        configuration = {flag[0].upper() + flag[1:]: bool(inputs.get(flag, False)) for flag in flags}
        self._s3.put_public_access_block(
            Bucket=inputs["bucket"], PublicAccessBlockConfiguration=configuration
        )

    def _encryption(self, inputs: Mapping[str, Any], applied: AppliedStack, planned: PlannedResource) -> None:
        rules = []
        for rule in inputs["rules"]:
            default = rule["applyServerSideEncryptionByDefault"]
            by_default = {"SSEAlgorithm": default["sseAlgorithm"]}
            if default.get("kmsMasterKeyId"):
                by_default["KMSMasterKeyID"] = default["kmsMasterKeyId"]
            rules.append(
                {
                    "ApplyServerSideEncryptionByDefault": by_default,
                    "BucketKeyEnabled": bool(rule.get("bucketKeyEnabled")),
                }
            )
        self._s3.put_bucket_encryption(
            Bucket=inputs["bucket"], ServerSideEncryptionConfiguration={"Rules": rules}
        )

    def _policy(self, inputs: Mapping[str, Any], applied: AppliedStack, planned: PlannedResource) -> None:
        document = inputs["policy"]
        policy = json.loads(document) if isinstance(document, str) else dict(document)
        # moto evaluates bucket policies without their conditions, so a conditional Deny (TLS-only)
        # would deny every request, TLS or not. Those statements stay in AWS, not in the emulator.
        kept = []
        for statement in policy["Statement"]:
            if statement["Effect"] == "Deny" and "Condition" in statement:
                applied.emulator_gaps.append(
                    f"{inputs['bucket']}: {statement.get('Sid', 'Deny')} (conditional deny)"
                )
            else:
                kept.append(statement)
        if kept:
            self._s3.put_bucket_policy(
                Bucket=inputs["bucket"], Policy=json.dumps({**policy, "Statement": kept})
            )

    def _logging(self, inputs: Mapping[str, Any], applied: AppliedStack, planned: PlannedResource) -> None:
        enabled = {"TargetBucket": inputs["targetBucket"], "TargetPrefix": inputs.get("targetPrefix", "")}
        self._s3.put_bucket_logging(Bucket=inputs["bucket"], BucketLoggingStatus={"LoggingEnabled": enabled})

    def _lifecycle(self, inputs: Mapping[str, Any], applied: AppliedStack, planned: PlannedResource) -> None:
        rules = [_lifecycle_rule(rule) for rule in inputs["rules"]]
        self._s3.put_bucket_lifecycle_configuration(
            Bucket=inputs["bucket"], LifecycleConfiguration={"Rules": rules}
        )

    def _notification(
        self, inputs: Mapping[str, Any], applied: AppliedStack, planned: PlannedResource
    ) -> None:
        configuration: dict[str, Any] = {"EventBridgeConfiguration": {}} if inputs.get("eventbridge") else {}
        self._s3.put_bucket_notification_configuration(
            Bucket=inputs["bucket"], NotificationConfiguration=configuration
        )

    def _object(self, inputs: Mapping[str, Any], applied: AppliedStack, planned: PlannedResource) -> None:
        source = inputs["source"]  # a FileAsset: the training code bundle
        with Path(source.path).open("rb") as body:
            self._s3.put_object(Bucket=inputs["bucket"], Key=inputs["key"], Body=body)

    # --- SageMaker and SNS ----------------------------------------------------------------------------

    def _model_package_group(
        self, inputs: Mapping[str, Any], applied: AppliedStack, planned: PlannedResource
    ) -> None:
        self._sagemaker.create_model_package_group(
            ModelPackageGroupName=inputs["modelPackageGroupName"],
            ModelPackageGroupDescription=inputs.get("modelPackageGroupDescription", ""),
        )

    def _pipeline(self, inputs: Mapping[str, Any], applied: AppliedStack, planned: PlannedResource) -> None:
        # The definition holds planned identifiers (the key's ARN) inside its JSON text.
        definition = json.dumps(applied.resolve(json.loads(inputs["pipelineDefinition"])), sort_keys=True)
        self._sagemaker.create_pipeline(
            PipelineName=inputs["pipelineName"],
            PipelineDisplayName=inputs.get("pipelineDisplayName", inputs["pipelineName"]),
            PipelineDefinition=definition,
            PipelineDescription=inputs.get("pipelineDescription", ""),
            RoleArn=inputs["roleArn"],
        )

    def _topic(self, inputs: Mapping[str, Any], applied: AppliedStack, planned: PlannedResource) -> None:
        self._sns.create_topic(Name=inputs["name"])


def _lifecycle_rule(rule: Mapping[str, Any]) -> dict[str, Any]:
    """A provider lifecycle rule (camelCase, floats from the mock runtime) as the S3 API takes it."""
    translated: dict[str, Any] = {
        "ID": rule["id"],
        "Status": rule["status"],
        "Filter": {"Prefix": rule["filter"]["prefix"]},
    }
    if "abortIncompleteMultipartUpload" in rule:
        days = int(rule["abortIncompleteMultipartUpload"]["daysAfterInitiation"])
        translated["AbortIncompleteMultipartUpload"] = {"DaysAfterInitiation": days}
    if "expiration" in rule:
        translated["Expiration"] = {"Days": int(rule["expiration"]["days"])}
    if "noncurrentVersionExpiration" in rule:
        days = int(rule["noncurrentVersionExpiration"]["noncurrentDays"])
        translated["NoncurrentVersionExpiration"] = {"NoncurrentDays": days}
    return translated
