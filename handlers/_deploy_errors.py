"""Domain errors of the model registry client and the deployer, under ``HandlerError``.

``handlers.exceptions`` holds the one base class of the handlers' errors; these subclasses live
here so the registry and the deployer stay one import away from each other and from ``mlctl``.
"""

from __future__ import annotations

from handlers.exceptions import HandlerError


class RegistryError(HandlerError):
    """The model registry refused or failed a request; ``code`` is SageMaker's error code."""

    def __init__(self, message: str, code: str | None = None) -> None:
        super().__init__(message)
        self.code = code


class ModelGroupNotFoundError(RegistryError):
    """No model package group has this name."""


class ModelVersionNotFoundError(RegistryError):
    """No model package (version) has this ARN, or this group has no such version."""


class RegistryInputError(RegistryError):
    """The caller's request is wrong (a reject without a reason, too much metadata, NaN metrics)."""


class ModelNotApprovedError(RegistryError):
    """The version is not ``Approved`` (or its package is not ``Completed``): it can never be deployed."""

    def __init__(self, message: str, arn: str, status: str) -> None:
        super().__init__(message, code=None)
        self.arn = arn
        self.status = status


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


# The short names the brief and the docs use.
DeploymentFailed = DeploymentFailedError
