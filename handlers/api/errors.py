"""Errors of the prediction API: the caller's mistakes and the endpoint's trouble."""

from __future__ import annotations

from handlers.common.errors import ClientInputError, HandlerError


class RouteNotFoundError(ClientInputError):
    """No route has this path."""


class MethodNotAllowedError(ClientInputError):
    """The path exists, but not for this HTTP method."""

    def __init__(self, message: str, allowed: list[str]) -> None:
        super().__init__(message)
        self.allowed = sorted(allowed)


class PayloadTooLargeError(ClientInputError):
    """The body is over the configured limit (checked before anything parses it)."""


class UnsupportedMediaTypeError(ClientInputError):
    """The Content-Type is not ``application/json`` (with a UTF-8 charset, if one is named)."""


class ModelRejectedInputError(ClientInputError):
    """The model container answered 4xx: it refused this input, so retrying it unchanged cannot help."""


# --- the model endpoint's trouble ------------------------------------------------------------------


class EndpointError(HandlerError):
    """The model endpoint did not give a usable answer."""


class ModelInvocationError(EndpointError):
    """The model container raised (SageMaker ``ModelError``)."""


class ModelResponseError(EndpointError):
    """The endpoint's answer cannot be passed on: not JSON, or numbers JSON cannot hold (NaN, Infinity)."""


class EndpointThrottledError(EndpointError):
    """The endpoint is throttling or not ready; ``retry_after_seconds`` tells callers when to retry."""

    def __init__(self, message: str, retry_after_seconds: int = 1) -> None:
        super().__init__(message)
        self.retry_after_seconds = retry_after_seconds


class EndpointTimeoutError(EndpointError):
    """Connecting to or reading from the endpoint took longer than the timeout chain allows."""
