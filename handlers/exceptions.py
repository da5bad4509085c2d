"""Domain errors of the Lambda handlers, under one base class.

The classes say what went wrong, not how to answer it: ``handlers.api_errors`` is the one place
that turns them into HTTP statuses, and the batch handler turns them into quarantine reasons or
failed batch items.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class FieldProblem:
    """One field-level complaint: ``field`` is a path such as ``instances[0].text``."""

    field: str
    problem: str


class HandlerError(Exception):
    """Base of every error the handlers raise on purpose."""

    def __init__(self, message: str, details: list[FieldProblem] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details or []


# --- the caller's mistakes -------------------------------------------------------------------------


class ClientInputError(HandlerError):
    """The request is wrong; retrying it unchanged can never succeed."""


class InvalidRequestError(ClientInputError):
    """Malformed JSON, wrong types, missing or extra fields, values out of range."""


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


# --- the model endpoint's trouble ------------------------------------------------------------------


class EndpointError(HandlerError):
    """The model endpoint did not give a usable answer."""


class ModelInvocationError(EndpointError):
    """The model container raised (SageMaker ``ModelError``)."""


class ModelResponseError(EndpointError):
    """The endpoint answered, but not with the inference container's contract."""


class EndpointThrottledError(EndpointError):
    """The endpoint is throttling or not ready; ``retry_after_seconds`` tells callers when to retry."""

    def __init__(self, message: str, retry_after_seconds: int = 1) -> None:
        super().__init__(message)
        self.retry_after_seconds = retry_after_seconds


class EndpointTimeoutError(EndpointError):
    """Connecting to or reading from the endpoint took longer than the timeout chain allows."""


# --- our own configuration -------------------------------------------------------------------------


class ConfigurationError(HandlerError):
    """The function is deployed with bad settings (input schema, limits); a 500 for callers."""


# --- batch preprocessing ---------------------------------------------------------------------------


class SourceObjectError(HandlerError):
    """A raw object cannot be processed as a whole (unknown format, too large, unreadable)."""


class UnsupportedEventError(HandlerError):
    """The batch handler received an event shape it does not know."""
