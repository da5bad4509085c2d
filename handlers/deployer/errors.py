"""Errors of the deployer: a rollout refused, failed, rolled back or not settled in time."""

from __future__ import annotations

from handlers.common.errors import HandlerError


class DeploymentError(HandlerError):
    """Base of the deployer's own errors."""


class DeploymentConflictError(DeploymentError):
    """The endpoint cannot take this deployment now (another update is in progress, it failed)."""


class ChampionGateRefusedError(DeploymentError):
    """A version approved without the champion gate is worse than the served one: it was rejected."""

    def __init__(self, message: str, arn: str) -> None:
        super().__init__(message)
        self.arn = arn


class DeploymentFailedError(DeploymentError):
    """The endpoint did not end ``InService`` on the expected config: failed, or rolled back."""

    def __init__(
        self,
        message: str,
        *,
        endpoint: str,
        expected_config: str,
        status: str,
        actual_config: str | None,
        reason: str | None,
    ) -> None:
        super().__init__(message)
        self.endpoint = endpoint
        self.expected_config = expected_config
        self.status = status
        self.actual_config = actual_config
        self.reason = reason


class DeploymentTimeoutError(DeploymentError):
    """The endpoint was still changing when the verification deadline passed (outcome unknown)."""
