"""The model registry: SageMaker model package groups, read and written as typed model versions.

Pure logic over an injected SageMaker client, so the deployer Lambda, ``mlctl`` and local mode
share it. Only an ``Approved`` version whose package is ``Completed`` may be deployed. Where a
version records its artifact, metrics, lineage and approval: docs/artifacts.md.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from handlers.common.contracts import (
    CODE_VERSION_KEY,
    DATASET_VERSION_KEY,
    HIGHER,
    HYPERPARAMETER_PREFIX,
    LOWER,
    METRIC_DIRECTION_PREFIX,
    METRIC_PREFIX,
    TRAINING_JOB_KEY,
    TRIGGER_DATASET_VERSION_KEY,
)
from handlers.registry.errors import (
    ModelGroupNotFoundError,
    ModelNotApprovedError,
    ModelVersionNotFoundError,
    RegistryError,
    RegistryInputError,
)

if TYPE_CHECKING:
    from mypy_boto3_sagemaker import SageMakerClient

APPROVED = "Approved"
REJECTED = "Rejected"
PENDING = "PendingManualApproval"
APPROVAL_STATUSES = (APPROVED, REJECTED, PENDING)

# SageMaker's limits on CustomerMetadataProperties.
MAX_METADATA_ENTRIES = 50
MAX_METADATA_KEY_CHARS = 128
MAX_METADATA_VALUE_CHARS = 256
REPORT_CONTENT_TYPE = "application/json"
_NOT_FOUND_HINTS = ("not found", "does not exist", "could not find")


@dataclass(frozen=True)
class ModelVersion:
    """One model package version, as the registry describes it."""

    arn: str
    group: str
    version: int
    status: str  # the approval status: Approved / Rejected / PendingManualApproval
    package_status: str | None  # Completed / InProgress / Failed / ...
    image_uri: str | None
    artifact_uri: str | None
    created: datetime | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    evaluation_report_uri: str | None = None
    dataset_version: str | None = None
    code_version: str | None = None
    training_job: str | None = None
    hyperparameters: dict[str, str] = field(default_factory=dict)
    approval_description: str | None = None
    description: str | None = None
    environment: dict[str, str] = field(default_factory=dict)
    customer_metadata: dict[str, str] = field(default_factory=dict)

    @property
    def approved(self) -> bool:
        return self.status == APPROVED

    @property
    def label(self) -> str:
        """``group/version``, for messages."""
        return f"{self.group}/{self.version}"


@dataclass(frozen=True)
class Lineage:
    """Where a model version came from: data, code, training job, artifact."""

    arn: str
    group: str
    version: int
    dataset_version: str | None
    code_version: str | None
    training_job: str | None
    artifact_uri: str | None
    image_uri: str | None
    evaluation_report_uri: str | None


class ModelRegistry:
    """Register, list, approve and reject model versions of SageMaker model package groups.

    Parameters
    ----------
    client:
        A SageMaker client; every ``ClientError`` becomes a :class:`RegistryError` subclass.
    """

    def __init__(self, client: SageMakerClient) -> None:
        self._client = client

    # --- writing ---------------------------------------------------------------------------------

    def register(
        self,
        group: str,
        artifact_uri: str,
        image_uri: str,
        *,
        dataset_version: str | None = None,
        code_version: str | None = None,
        metrics: Mapping[str, float] | None = None,
        directions: Mapping[str, str] | None = None,
        evaluation_report_uri: str | None = None,
        hyperparameters: Mapping[str, Any] | None = None,
        training_job: str | None = None,
        model_name: str | None = None,
        task: str | None = None,
        description: str | None = None,
        approval_status: str = PENDING,
        environment: Mapping[str, str] | None = None,
        content_types: tuple[str, ...] = ("application/json",),
        instance_types: tuple[str, ...] = (),
    ) -> ModelVersion:
        """Register a new version in ``group`` (``PendingManualApproval`` unless told otherwise).

        ``metrics`` are recorded as ``metric.<name>``, and ``directions`` (``higher`` or ``lower``
        per metric, as evaluation.json states them) as ``direction.<name>``, which the champion
        gate reads. Returns the version as described after registration.
        """
        if approval_status not in APPROVAL_STATUSES:
            raise RegistryInputError(f"approval_status must be one of {APPROVAL_STATUSES}")
        properties = _customer_metadata(
            metrics=metrics or {},
            directions=directions or {},
            hyperparameters=hyperparameters or {},
            dataset_version=dataset_version,
            code_version=code_version,
            training_job=training_job,
            model_name=model_name,
            task=task,
        )
        container: dict[str, Any] = {"Image": image_uri, "ModelDataUrl": artifact_uri}
        if environment:
            container["Environment"] = dict(environment)
        inference: dict[str, Any] = {
            "Containers": [container],
            "SupportedContentTypes": list(content_types),
            "SupportedResponseMIMETypes": list(content_types),
        }
        if instance_types:
            inference["SupportedRealtimeInferenceInstanceTypes"] = list(instance_types)
        request: dict[str, Any] = {
            "ModelPackageGroupName": group,
            "InferenceSpecification": inference,
            "ModelApprovalStatus": approval_status,
        }
        if properties:
            request["CustomerMetadataProperties"] = properties
        if description:
            request["ModelPackageDescription"] = description
        if evaluation_report_uri:
            request["ModelMetrics"] = {
                "ModelQuality": {
                    "Statistics": {"ContentType": REPORT_CONTENT_TYPE, "S3Uri": evaluation_report_uri}
                }
            }
        lineage_properties = {}
        if code_version:
            lineage_properties["CommitId"] = code_version
        if training_job and training_job.startswith("arn:"):
            lineage_properties["GeneratedBy"] = training_job
        if lineage_properties:
            request["MetadataProperties"] = lineage_properties
        try:
            arn = self._client.create_model_package(**request)["ModelPackageArn"]
        except ClientError as exc:
            raise _registry_error(exc, f"model package group {group!r}", group_scope=True) from exc
        return self.describe(arn)

    def approve(
        self, arn: str, reason: str | None = None, metadata: Mapping[str, str] | None = None
    ) -> ModelVersion:
        """Mark a version ``Approved``; ``reason`` is stored as its ``ApprovalDescription``, and
        ``metadata`` is added to its CustomerMetadataProperties in the same request (the approval
        event then finds it, e.g. the target variant)."""
        return self._set_status(arn, APPROVED, reason, metadata)

    def reject(self, arn: str, reason: str) -> ModelVersion:
        """Mark a version ``Rejected``; a non-blank ``reason`` is required and stored."""
        if not reason or not reason.strip():
            raise RegistryInputError("rejecting a model version needs a reason")
        return self._set_status(arn, REJECTED, reason)

    def _set_status(
        self, arn: str, status: str, reason: str | None, metadata: Mapping[str, str] | None = None
    ) -> ModelVersion:
        current = self.describe(arn)
        request: dict[str, Any] = {"ModelPackageArn": current.arn, "ModelApprovalStatus": status}
        if reason:
            request["ApprovalDescription"] = reason.strip()
        properties = {**current.customer_metadata, **(metadata or {})}
        if properties:
            # Sent back whole: some implementations (moto) replace the map on every update.
            request["CustomerMetadataProperties"] = properties
        try:
            self._client.update_model_package(**request)
        except ClientError as exc:
            raise _registry_error(exc, f"model version {arn!r}") from exc
        return self.describe(current.arn)

    # --- reading ---------------------------------------------------------------------------------

    def describe(self, ref: str, version: int | None = None) -> ModelVersion:
        """One version, by ARN (``describe(arn)``) or by group and number (``describe(group, 3)``)."""
        arn = ref if version is None else self.version_arn(ref, version)
        try:
            response = self._client.describe_model_package(ModelPackageName=arn)
        except ClientError as exc:
            raise _registry_error(exc, f"model version {arn!r}") from exc
        return model_version_from(response)

    def version_arn(self, group: str, version: int) -> str:
        """The ARN of ``group``'s version ``version`` (derived from the group's own ARN)."""
        try:
            group_arn = self._client.describe_model_package_group(ModelPackageGroupName=group)[
                "ModelPackageGroupArn"
            ]
        except ClientError as exc:
            raise _registry_error(exc, f"model package group {group!r}", group_scope=True) from exc
        prefix, _, name = group_arn.rpartition(":model-package-group/")
        return f"{prefix}:model-package/{name}/{int(version)}"

    def list_versions(self, group: str, *, status: str | None = None, limit: int = 50) -> list[ModelVersion]:
        """The newest ``limit`` versions of ``group`` (optionally one approval status), newest first."""
        arns = self._list_arns(group, status=status, limit=limit)
        versions = [self.describe(arn) for arn in arns]
        return sorted(versions, key=lambda v: v.version, reverse=True)

    def latest_approved(self, group: str) -> ModelVersion | None:
        """The approved version with the highest number, or ``None`` when none is approved."""
        arns = self._list_arns(group, status=APPROVED, limit=100)
        if not arns:
            return None
        newest = max(arns, key=_version_from_arn)
        return self.describe(newest)

    def lineage(self, version: ModelVersion | str) -> Lineage:
        """Dataset version, code version, training job and artifact of a version (or its ARN)."""
        model = self.describe(version) if isinstance(version, str) else version
        return Lineage(
            arn=model.arn,
            group=model.group,
            version=model.version,
            dataset_version=model.dataset_version,
            code_version=model.code_version,
            training_job=model.training_job,
            artifact_uri=model.artifact_uri,
            image_uri=model.image_uri,
            evaluation_report_uri=model.evaluation_report_uri,
        )

    def require_approved(self, version: ModelVersion | str) -> ModelVersion:
        """The version, freshly described, if it may be deployed; else :class:`ModelNotApprovedError`.

        Always re-reads the registry: an event or a cached copy may be older than a rejection.
        """
        arn = version.arn if isinstance(version, ModelVersion) else version
        model = self.describe(arn)
        if not model.approved:
            why = f" ({model.approval_description})" if model.approval_description else ""
            raise ModelNotApprovedError(
                f"model version {model.label} is {model.status}{why}; only Approved versions are deployed",
                arn=model.arn,
                status=model.status,
            )
        if model.package_status not in (None, "Completed"):
            raise ModelNotApprovedError(
                f"model version {model.label} is approved but its package is {model.package_status}",
                arn=model.arn,
                status=model.package_status,
            )
        return model

    def _list_arns(self, group: str, *, status: str | None, limit: int) -> list[str]:
        request: dict[str, Any] = {
            "ModelPackageGroupName": group,
            "SortBy": "CreationTime",
            "SortOrder": "Descending",
            "MaxResults": min(max(limit, 1), 100),
        }
        if status is not None:
            request["ModelApprovalStatus"] = status
        arns: list[str] = []
        try:
            while len(arns) < limit:
                page = self._client.list_model_packages(**request)
                arns.extend(item["ModelPackageArn"] for item in page.get("ModelPackageSummaryList", []))
                token = page.get("NextToken")
                if not token:
                    break
                request["NextToken"] = token
        except ClientError as exc:
            raise _registry_error(exc, f"model package group {group!r}", group_scope=True) from exc
        if not arns:
            self._check_group_exists(group)
        return arns[:limit]

    def _check_group_exists(self, group: str) -> None:
        # An empty listing of a misspelled group must not read as "no versions yet".
        try:
            self._client.describe_model_package_group(ModelPackageGroupName=group)
        except ClientError as exc:
            raise _registry_error(exc, f"model package group {group!r}", group_scope=True) from exc


def model_version_from(response: Mapping[str, Any]) -> ModelVersion:
    """A :class:`ModelVersion` from a DescribeModelPackage response (or an event's ``detail``)."""
    containers = response.get("InferenceSpecification", {}).get("Containers") or [{}]
    container = containers[0]
    properties = {str(k): str(v) for k, v in (response.get("CustomerMetadataProperties") or {}).items()}
    lineage = response.get("MetadataProperties") or {}
    report = response.get("ModelMetrics", {}).get("ModelQuality", {}).get("Statistics", {}).get("S3Uri")
    generated_by = lineage.get("GeneratedBy") or ""
    arn = str(response["ModelPackageArn"])
    created = response.get("CreationTime")
    return ModelVersion(
        arn=arn,
        group=str(response.get("ModelPackageGroupName") or _group_from_arn(arn)),
        version=int(response.get("ModelPackageVersion") or _version_from_arn(arn)),
        status=str(response.get("ModelApprovalStatus") or PENDING),
        package_status=response.get("ModelPackageStatus"),
        image_uri=container.get("Image"),
        artifact_uri=container.get("ModelDataUrl"),
        created=created if isinstance(created, datetime) else None,
        metrics=_prefixed_floats(properties, METRIC_PREFIX),
        evaluation_report_uri=report,
        dataset_version=properties.get(DATASET_VERSION_KEY) or properties.get(TRIGGER_DATASET_VERSION_KEY),
        code_version=properties.get(CODE_VERSION_KEY) or lineage.get("CommitId"),
        training_job=properties.get(TRAINING_JOB_KEY)
        or (generated_by if ":training-job/" in generated_by else None),
        hyperparameters={
            k.removeprefix(HYPERPARAMETER_PREFIX): v
            for k, v in properties.items()
            if k.startswith(HYPERPARAMETER_PREFIX)
        },
        approval_description=response.get("ApprovalDescription"),
        description=response.get("ModelPackageDescription"),
        environment={str(k): str(v) for k, v in (container.get("Environment") or {}).items()},
        customer_metadata=properties,
    )


def _customer_metadata(
    *,
    metrics: Mapping[str, float],
    directions: Mapping[str, str],
    hyperparameters: Mapping[str, Any],
    dataset_version: str | None,
    code_version: str | None,
    training_job: str | None,
    model_name: str | None,
    task: str | None,
) -> dict[str, str]:
    properties: dict[str, str] = {}
    for key, value in (
        ("model", model_name),
        ("task", task),
        (DATASET_VERSION_KEY, dataset_version),
        (CODE_VERSION_KEY, code_version),
        (TRAINING_JOB_KEY, training_job),
    ):
        if value:
            properties[key] = str(value)
    for name, metric in metrics.items():
        number = float(metric)
        if not math.isfinite(number):
            raise RegistryInputError(f"metric {name!r} is {metric!r}; metrics must be finite numbers")
        properties[f"{METRIC_PREFIX}{name}"] = repr(number)
    for name, direction in directions.items():
        if direction not in (HIGHER, LOWER):
            raise RegistryInputError(
                f"metric {name!r} has direction {direction!r}; use {HIGHER!r} or {LOWER!r}"
            )
        properties[f"{METRIC_DIRECTION_PREFIX}{name}"] = direction
    for name, value in hyperparameters.items():
        properties[f"{HYPERPARAMETER_PREFIX}{name}"] = str(value)
    if len(properties) > MAX_METADATA_ENTRIES:
        raise RegistryInputError(
            f"{len(properties)} metadata entries (metrics, hyperparameters, lineage); "
            f"SageMaker keeps at most {MAX_METADATA_ENTRIES}"
        )
    for key, value in properties.items():
        if len(key) > MAX_METADATA_KEY_CHARS or not value or len(value) > MAX_METADATA_VALUE_CHARS:
            raise RegistryInputError(
                f"metadata {key!r}: keys hold at most {MAX_METADATA_KEY_CHARS} characters and values "
                f"1 to {MAX_METADATA_VALUE_CHARS}"
            )
    return properties


def _prefixed_floats(properties: Mapping[str, str], prefix: str) -> dict[str, float]:
    values: dict[str, float] = {}
    for key, raw in properties.items():
        if key.startswith(prefix):
            try:
                values[key.removeprefix(prefix)] = float(raw)
            except ValueError:
                continue  # written by someone else; a listing must not fail on it
    return values


def _version_from_arn(arn: str) -> int:
    tail = arn.rsplit("/", 1)[-1]
    return int(tail) if tail.isdigit() else 0


def _group_from_arn(arn: str) -> str:
    parts = arn.split(":model-package/", 1)[-1].split("/")
    return parts[0]


def _registry_error(exc: ClientError, what: str, *, group_scope: bool = False) -> RegistryError:
    error = exc.response.get("Error", {})
    code = str(error.get("Code", "Unknown"))
    message = str(error.get("Message", ""))
    if code == "ResourceNotFound" or (
        code == "ValidationException" and any(hint in message.lower() for hint in _NOT_FOUND_HINTS)
    ):
        missing = ModelGroupNotFoundError if group_scope else ModelVersionNotFoundError
        return missing(f"{what} does not exist ({message})", code=code)
    if code in ("ValidationException", "ResourceLimitExceeded", "ConflictException"):
        return RegistryInputError(f"{what}: {message}", code=code)
    return RegistryError(f"{what}: {code}: {message}", code=code)
