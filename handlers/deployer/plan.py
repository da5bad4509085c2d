"""What a deployment creates: the SageMaker requests, as pure functions of the settings and the version.

Nothing here calls AWS, so ``mlctl`` and local mode build exactly the requests the deployer Lambda
sends. See docs/deployments.md.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from handlers.common.contracts import ENDPOINT_NAME_ENV, TARGET_VARIANT_KEY, VARIANT_NAME_ENV
from handlers.common.errors import ConfigurationError
from handlers.common.instance_types import has_instance_storage
from handlers.deployer.settings import (
    CANARY,
    LINEAR,
    MODEL_SERVER_PRECISION_ENV,
    ROUTING_TYPES,
    DeploymentPolicy,
    DeploySettings,
    max_execution_timeout,
)
from handlers.registry.client import ModelVersion

if TYPE_CHECKING:
    from mypy_boto3_sagemaker.type_defs import TagTypeDef

MODEL_VERSION_ENV = "MODEL_VERSION"  # in the model container's environment: the registry version

# The serving container's contract (handlers/serving/inference.py inside the model archive's code/).
INFERENCE_PROGRAM = "inference.py"
SUBMIT_DIRECTORY = "/opt/ml/model/code"
CAPTURE_CONTENT_TYPES = ("application/json",)

# Tags the deployer writes.
TAG_EXPECTED_CONFIG = "ml-platform:expected-config"
TAG_VERIFIED = "ml-platform:verified"
TAG_MODEL_PACKAGE = "ml-platform:model-package"
TAG_MODEL_VERSION = "ml-platform:model-version"
TAG_DATASET_VERSION = "ml-platform:dataset-version"

NAME_MAX_CHARS = 63  # model and endpoint-config names

# The EventBridge events the deployer runs on.
MODEL_PACKAGE_EVENT = "SageMaker Model Package State Change"
ENDPOINT_EVENT = "SageMaker Endpoint State Change"


# --- the blue/green deployment config ---------------------------------------------------------------


def build_deployment_config(policy: DeploymentPolicy) -> dict[str, Any]:
    """UpdateEndpoint's ``DeploymentConfig``: blue/green traffic routing plus alarm rollback."""
    if policy.strategy not in ROUTING_TYPES:
        raise ConfigurationError(f"unknown deployment strategy {policy.strategy!r}")
    routing: dict[str, Any] = {
        "Type": ROUTING_TYPES[policy.strategy],
        "WaitIntervalInSeconds": policy.baking_seconds,
    }
    if policy.strategy == CANARY:
        routing["CanarySize"] = {"Type": "CAPACITY_PERCENT", "Value": policy.canary_percent}
    elif policy.strategy == LINEAR:
        routing["LinearStepSize"] = {"Type": "CAPACITY_PERCENT", "Value": policy.linear_step_percent}
    config: dict[str, Any] = {
        "BlueGreenUpdatePolicy": {
            "TrafficRoutingConfiguration": routing,
            "TerminationWaitInSeconds": policy.termination_wait_seconds,
            "MaximumExecutionTimeoutInSeconds": max_execution_timeout(policy),
        }
    }
    if policy.rollback_alarms:
        config["AutoRollbackConfiguration"] = {
            "Alarms": [{"AlarmName": name} for name in policy.rollback_alarms]
        }
    return config


# --- the model and the endpoint config --------------------------------------------------------------


def generated_name(group: str, version: int, content: Mapping[str, Any]) -> str:
    """``<group>-v<version>-<hash of content>``, at most 63 characters.

    The same content gives the same name, so a retried event reuses what the first try created,
    and any change (new version, instance type, capture setting) gives a new name: a config in
    use is never modified or replaced in place.
    """
    digest = hashlib.sha256(json.dumps(content, sort_keys=True, default=str).encode()).hexdigest()[:8]
    suffix = f"-v{version}-{digest}"
    base = re.sub(r"[^a-zA-Z0-9-]", "-", group)[: NAME_MAX_CHARS - len(suffix)].strip("-") or "model"
    return f"{base}{suffix}"


def serving_image(settings: DeploySettings, model: ModelVersion) -> str | None:
    """The image ``model`` serves with on this endpoint: the stack's image for the endpoint's
    instance family, whatever family the version was registered for (a version registered while
    the stack served on GPU must not bring the CUDA image to a CPU endpoint); without configured
    images, the version's own."""
    if settings.serving_images is not None:
        return settings.serving_images.for_instance_type(settings.instance_type)
    return model.image_uri


def build_model_request(settings: DeploySettings, model: ModelVersion) -> dict[str, Any]:
    """CreateModel for ``model``: the endpoint family's image, its artifact, the serving contract
    (with the stack's precision), network isolation."""
    image = serving_image(settings, model)
    if not image or not model.artifact_uri:
        raise ConfigurationError(f"model version {model.label} has no container image or model artifact")
    environment = {
        **model.environment,
        "SAGEMAKER_PROGRAM": INFERENCE_PROGRAM,
        "SAGEMAKER_SUBMIT_DIRECTORY": SUBMIT_DIRECTORY,
        "SAGEMAKER_REGION": settings.region,
        # The stack's setting wins over what the version was registered with.
        MODEL_SERVER_PRECISION_ENV: settings.precision,
        # The serving handler answers with it, so callers see which version served them (canaries).
        MODEL_VERSION_ENV: str(model.version),
        # The model server's CloudWatch metrics carry them as dimensions (handlers/serving/metrics.py).
        ENDPOINT_NAME_ENV: settings.endpoint_name,
        VARIANT_NAME_ENV: target_variant(settings, model),
    }
    content: dict[str, Any] = {
        "ExecutionRoleArn": settings.execution_role_arn,
        "PrimaryContainer": {
            "Image": image,
            "ModelDataUrl": model.artifact_uri,
            "Environment": environment,
        },
        # The container needs no network: the artifact and code come from S3 through SageMaker.
        "EnableNetworkIsolation": True,
    }
    return {
        "ModelName": generated_name(model.group, model.version, {**content, "Package": model.arn}),
        **content,
        "Tags": model_tags(model),
    }


def target_variant(settings: DeploySettings, model: ModelVersion) -> str:
    """The variant ``model`` replaces: the one it names at approval, else the first one."""
    named = model.customer_metadata.get(TARGET_VARIANT_KEY)
    if named is None:
        return settings.default_variant
    if named not in settings.variant_names:
        raise ConfigurationError(
            f"model version {model.label} names variant {named!r}; this endpoint's variants are "
            + ", ".join(settings.variant_names)
        )
    return named


def build_endpoint_config_request(
    settings: DeploySettings,
    model_name: str,
    model: ModelVersion,
    live_models: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """CreateEndpointConfig: every configured variant, KMS, and data capture to the data lake.

    The target variant (:func:`target_variant`) serves ``model_name``; every other variant keeps
    the model it serves now (``live_models``: variant name -> model name, from the live config), so
    an A/B test survives a rollout. A variant with nothing live yet (the first deployment, a newly
    configured variant) serves the new model too.
    """
    target = target_variant(settings, model)
    live = dict(live_models or {})
    variants = [
        {
            "VariantName": variant.name,  # stable across updates: alarms and autoscaling name it
            "ModelName": model_name if variant.name == target else live.get(variant.name, model_name),
            "InstanceType": settings.instance_type,
            "InitialInstanceCount": settings.initial_instance_count,
            "InitialVariantWeight": variant.weight,
        }
        for variant in settings.variants
    ]
    content: dict[str, Any] = {"ProductionVariants": variants}
    if not has_instance_storage(settings.instance_type):
        content["KmsKeyId"] = settings.kms_key_arn
    if settings.data_capture_percent > 0 and settings.data_capture_uri:
        content["DataCaptureConfig"] = {
            "EnableCapture": True,
            "InitialSamplingPercentage": settings.data_capture_percent,
            "DestinationS3Uri": settings.data_capture_uri,
            "KmsKeyId": settings.kms_key_arn,
            "CaptureOptions": [{"CaptureMode": "Input"}, {"CaptureMode": "Output"}],
            "CaptureContentTypeHeader": {"JsonContentTypes": list(CAPTURE_CONTENT_TYPES)},
        }
    return {
        "EndpointConfigName": generated_name(model.group, model.version, content),
        **content,
        "Tags": model_tags(model),
    }


def model_tags(model: ModelVersion) -> list[TagTypeDef]:
    """Tags on everything a deployment creates: which registry version it serves."""
    tags: list[TagTypeDef] = [
        {"Key": TAG_MODEL_PACKAGE, "Value": model.arn},
        {"Key": TAG_MODEL_VERSION, "Value": str(model.version)},
    ]
    if model.dataset_version:
        tags.append({"Key": TAG_DATASET_VERSION, "Value": model.dataset_version[:256]})
    return tags


# --- the EventBridge rules that invoke the deployer -------------------------------------------------


def approval_event(
    *, group: str, version: int, arn: str, region: str, status: str = "Approved", time: str = ""
) -> dict[str, Any]:
    """The EventBridge event SageMaker sends when a version's approval changes (what the deployer
    accepts); ``mlctl models rollback`` and the program's first deployment send it themselves."""
    account = arn.split(":")[4] if arn.count(":") >= 5 else ""
    return {
        "version": "0",
        "id": hashlib.sha256(f"{arn}:{status}:{time}".encode()).hexdigest()[:32],
        "detail-type": MODEL_PACKAGE_EVENT,
        "source": "aws.sagemaker",
        "account": account,
        "time": time,
        "region": region,
        "resources": [arn],
        "detail": {
            "ModelPackageGroupName": group,
            "ModelPackageVersion": version,
            "ModelPackageArn": arn,
            "ModelApprovalStatus": status,
            "ModelPackageStatus": "Completed",
        },
    }


def approval_event_pattern(group: str) -> dict[str, Any]:
    """Approved versions of this stack's group only (the handler checks again)."""
    return {
        "source": ["aws.sagemaker"],
        "detail-type": [MODEL_PACKAGE_EVENT],
        "detail": {"ModelPackageGroupName": [group], "ModelApprovalStatus": ["Approved"]},
    }


def endpoint_event_pattern(endpoint_name: str) -> dict[str, Any]:
    """State changes of this stack's endpoint: each one re-runs the verification once."""
    return {
        "source": ["aws.sagemaker"],
        "detail-type": [ENDPOINT_EVENT],
        "detail": {"EndpointName": [endpoint_name]},
    }
