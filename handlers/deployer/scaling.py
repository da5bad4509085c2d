"""Application Auto Scaling of the endpoint's variants, owned by the deployer with the endpoint.

The deployer creates the endpoint, so it also registers its scaling: a scalable target is
refused until the variant exists, and Pulumi cannot know when that is. After every verified
deployment each variant gets its target (bounds), its target-tracking policy on invocations per
instance and, off prod, its off-hours scheduled actions; all three calls are idempotent (same
names), so re-applying after each rollout is the point: autoscaling holds whatever the rollout
changed. Before an update that changes a variant's instance type, that variant's target is
deregistered, because SageMaker refuses such an update while the variant is a scalable target.
See docs/deployments.md.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError

from handlers.deployer.errors import DeploymentError
from handlers.deployer.settings import DeploySettings

SERVICE_NAMESPACE = "sagemaker"
SCALABLE_DIMENSION = "sagemaker:variant:DesiredInstanceCount"
INVOCATIONS_METRIC = "SageMakerVariantInvocationsPerInstance"


@dataclass(frozen=True)
class ScalingRequests:
    """Everything one variant's autoscaling takes, as Application Auto Scaling requests."""

    target: dict[str, Any]
    policy: dict[str, Any]
    scheduled_actions: tuple[dict[str, Any], ...] = ()


def resource_id(endpoint: str, variant: str) -> str:
    return f"endpoint/{endpoint}/variant/{variant}"


def scaling_requests(settings: DeploySettings, variant: str) -> ScalingRequests:
    """RegisterScalableTarget, PutScalingPolicy and PutScheduledAction for one variant."""
    scaling = settings.scaling
    scope = {
        "ServiceNamespace": SERVICE_NAMESPACE,
        "ResourceId": resource_id(settings.endpoint_name, variant),
        "ScalableDimension": SCALABLE_DIMENSION,
    }
    target = {**scope, "MinCapacity": scaling.min_instances, "MaxCapacity": scaling.max_instances}
    policy = {
        **scope,
        "PolicyName": f"{settings.endpoint_name}-{variant}-invocations-per-instance",
        "PolicyType": "TargetTrackingScaling",
        "TargetTrackingScalingPolicyConfiguration": {
            "TargetValue": float(scaling.target_invocations),
            "PredefinedMetricSpecification": {"PredefinedMetricType": INVOCATIONS_METRIC},
            "ScaleInCooldown": scaling.scale_in_cooldown_seconds,
            "ScaleOutCooldown": scaling.scale_out_cooldown_seconds,
        },
    }
    off_hours = scaling.off_hours
    actions: tuple[dict[str, Any], ...] = ()
    if off_hours is not None:
        actions = tuple(
            {
                **scope,
                "ScheduledActionName": f"{settings.endpoint_name}-{variant}-off-hours-{when}",
                "Schedule": schedule,
                "Timezone": off_hours.timezone,
                "ScalableTargetAction": {"MinCapacity": low, "MaxCapacity": high},
            }
            for when, schedule, low, high in (
                ("down", off_hours.scale_down, off_hours.instances, off_hours.instances),
                ("up", off_hours.scale_up, scaling.min_instances, scaling.max_instances),
            )
        )
    return ScalingRequests(target, policy, actions)


def apply_autoscaling(client: Any, settings: DeploySettings, variants: Iterable[str]) -> list[str]:
    """Register (or re-register) every variant's scaling; returns their resource IDs.

    Raises :class:`DeploymentError` naming the variant and the refused call.
    """
    applied = []
    for variant in variants:
        requests = scaling_requests(settings, variant)
        _call(client.register_scalable_target, requests.target, variant)
        _call(client.put_scaling_policy, requests.policy, variant)
        for action in requests.scheduled_actions:
            _call(client.put_scheduled_action, action, variant)
        applied.append(str(requests.target["ResourceId"]))
    return applied


def release_autoscaling(client: Any, endpoint: str, variants: Iterable[str]) -> list[str]:
    """Deregister the variants' scalable targets (their policies and actions go with them);
    a variant that has none is skipped. Returns the resource IDs released."""
    released = []
    for variant in variants:
        request = {
            "ServiceNamespace": SERVICE_NAMESPACE,
            "ResourceId": resource_id(endpoint, variant),
            "ScalableDimension": SCALABLE_DIMENSION,
        }
        try:
            client.deregister_scalable_target(**request)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "ObjectNotFoundException":
                continue
            raise _error(exc, "DeregisterScalableTarget", variant) from exc
        released.append(request["ResourceId"])
    return released


def _call(method: Any, request: dict[str, Any], variant: str) -> None:
    try:
        method(**request)
    except ClientError as exc:
        raise _error(exc, method.__name__, variant) from exc


def _error(exc: ClientError, call: str, variant: str) -> DeploymentError:
    error = exc.response.get("Error", {})
    return DeploymentError(
        f"autoscaling of variant {variant}: {call} failed: {error.get('Code')}: {error.get('Message')}"
    )
