"""Errors of the model registry client; ``code`` keeps SageMaker's error code where there is one."""

from __future__ import annotations

from handlers.common.errors import HandlerError


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
