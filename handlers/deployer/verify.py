"""Did a deployment land? Read the endpoint until it settles; only InService on the expected config counts.

The trap this guards against: a blue/green update whose alarms fire is rolled back by SageMaker,
and the endpoint ends ``InService`` on the OLD config. A tool that only waits for ``InService``
reports success. Here that is a failed deployment, as are ``RollingBack``,
``UpdateRollbackFailed``, ``Failed`` and ``OutOfService``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from handlers.deployer.errors import DeploymentFailedError, DeploymentTimeoutError

if TYPE_CHECKING:
    from mypy_boto3_sagemaker import SageMakerClient

IN_SERVICE = "InService"
# Still moving: poll again. SystemUpdating is SageMaker's own maintenance, not ours.
CHANGING = frozenset({"Creating", "Updating", "SystemUpdating"})
# A rollback has begun (or ended badly): whatever happens next, this deployment did not land.
FAILED = frozenset({"RollingBack", "UpdateRollbackFailed", "Failed", "OutOfService", "Deleting"})
NOT_FOUND = "NotFound"
_STATUSES = {status.lower(): status for status in (IN_SERVICE, *CHANGING, *FAILED)}


def normalize_status(raw: str) -> str:
    """DescribeEndpoint's ``InService`` or an event's ``IN_SERVICE`` -> ``InService``."""
    key = raw.replace("_", "").replace(" ", "").lower()
    return _STATUSES.get(key, raw)


@dataclass(frozen=True)
class EndpointState:
    """What DescribeEndpoint says, reduced to what a verification needs."""

    endpoint: str
    status: str
    config_name: str | None
    pending_config: str | None = None
    failure_reason: str | None = None
    arn: str | None = None
    variant_names: tuple[str, ...] = ()

    @classmethod
    def from_describe(cls, response: Mapping[str, Any]) -> EndpointState:
        pending = response.get("PendingDeploymentSummary") or {}
        return cls(
            endpoint=str(response["EndpointName"]),
            status=normalize_status(str(response.get("EndpointStatus", ""))),
            config_name=response.get("EndpointConfigName"),
            pending_config=pending.get("EndpointConfigName"),
            failure_reason=response.get("FailureReason") or None,
            arn=response.get("EndpointArn"),
            variant_names=tuple(v["VariantName"] for v in response.get("ProductionVariants") or []),
        )


@dataclass(frozen=True)
class DeploymentVerified:
    """The endpoint serves the expected config."""

    endpoint: str
    config_name: str
    status: str
    checks: int = 1


def evaluate_endpoint(state: EndpointState, expected_config: str) -> DeploymentVerified | None:
    """One look at the endpoint: verified, ``None`` while it is still changing, or DeploymentFailed."""
    if state.status in CHANGING:
        return None
    if state.status == IN_SERVICE and state.config_name == expected_config:
        return DeploymentVerified(state.endpoint, expected_config, state.status)
    if state.status == IN_SERVICE:
        why = f": {state.failure_reason}" if state.failure_reason else ""
        message = (
            f"endpoint {state.endpoint} is InService on {state.config_name}, not the deployed "
            f"{expected_config}: SageMaker rolled the deployment back{why}"
        )
    else:
        why = f": {state.failure_reason}" if state.failure_reason else ""
        message = f"endpoint {state.endpoint} is {state.status} while deploying {expected_config}{why}"
    raise DeploymentFailedError(
        message,
        endpoint=state.endpoint,
        expected_config=expected_config,
        status=state.status,
        actual_config=state.config_name,
        reason=state.failure_reason,
    )


def describe_endpoint_state(client: SageMakerClient, endpoint: str) -> EndpointState | None:
    """The endpoint's state, or ``None`` if it does not exist."""
    try:
        return EndpointState.from_describe(client.describe_endpoint(EndpointName=endpoint))
    except ClientError as exc:
        if is_missing_endpoint(exc):
            return None
        raise


def is_missing_endpoint(exc: ClientError) -> bool:
    error = exc.response.get("Error", {})
    return (
        error.get("Code") in ("ValidationException", "ResourceNotFound")
        and "could not find" in str(error.get("Message", "")).lower()
    )


def verify_deployment(
    client: SageMakerClient,
    endpoint: str,
    expected_config: str,
    *,
    interval_seconds: float = 30.0,
    timeout_seconds: float = 3600.0,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> DeploymentVerified:
    """Poll DescribeEndpoint until the endpoint leaves Creating/Updating/SystemUpdating.

    Returns
    -------
    DeploymentVerified
        when it is ``InService`` on ``expected_config``.

    Raises
    ------
    DeploymentFailedError
        rolled back (``InService`` on another config), ``RollingBack``, ``UpdateRollbackFailed``,
        ``Failed``, ``OutOfService``, or the endpoint is gone; ``reason`` holds SageMaker's
        ``FailureReason`` when it gave one.
    DeploymentTimeoutError
        still changing after ``timeout_seconds`` (the outcome is unknown, not a failure).
    """
    deadline = clock() + timeout_seconds
    checks = 0
    while True:
        checks += 1
        state = describe_endpoint_state(client, endpoint)
        if state is None:
            raise DeploymentFailedError(
                f"endpoint {endpoint} does not exist while deploying {expected_config}",
                endpoint=endpoint,
                expected_config=expected_config,
                status=NOT_FOUND,
                actual_config=None,
                reason=None,
            )
        verified = evaluate_endpoint(state, expected_config)
        if verified is not None:
            return DeploymentVerified(verified.endpoint, verified.config_name, verified.status, checks)
        remaining = deadline - clock()
        if remaining <= 0:
            raise DeploymentTimeoutError(
                f"endpoint {endpoint} is still {state.status} after {timeout_seconds:.0f} s "
                f"({checks} checks); the deployment of {expected_config} has not finished"
            )
        sleep(min(interval_seconds, remaining))
