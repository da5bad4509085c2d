"""Domain errors of the drift monitor, under the handlers' one base class."""

from __future__ import annotations

from handlers.common.errors import ConfigurationError, HandlerError


class DriftConfigurationError(ConfigurationError):
    """A required setting is missing or malformed (an environment variable, the baseline document)."""


class BaselineNotFoundError(DriftConfigurationError):
    """The baseline the monitor compares with is not where ``BASELINE_S3_URI`` says."""


class DriftActionError(HandlerError):
    """Drift was found but the reaction failed (starting the retraining pipeline, the alert)."""

    def __init__(self, message: str, code: str | None = None) -> None:
        super().__init__(message)
        self.code = code
