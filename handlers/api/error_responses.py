"""The one place where errors become HTTP answers.

Body: ``{"error": {"code", "message", "request_id", "details": [{"field", "problem"}]}}``.
Anything not listed below is a 500 whose message is generic: the traceback goes to the log under
the request id, never to the caller.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from handlers.api.errors import (
    EndpointThrottledError,
    EndpointTimeoutError,
    MethodNotAllowedError,
    ModelInvocationError,
    ModelResponseError,
    PayloadTooLargeError,
    RouteNotFoundError,
    UnsupportedMediaTypeError,
)
from handlers.common.errors import ClientInputError, ConfigurationError, InvalidRequestError

# Most specific first: the first class the error is an instance of decides.
HTTP_ERRORS: tuple[tuple[type[Exception], int, str], ...] = (
    (InvalidRequestError, 400, "invalid_request"),
    (RouteNotFoundError, 404, "not_found"),
    (MethodNotAllowedError, 405, "method_not_allowed"),
    (PayloadTooLargeError, 413, "payload_too_large"),
    (UnsupportedMediaTypeError, 415, "unsupported_media_type"),
    (ClientInputError, 400, "invalid_request"),
    (ModelInvocationError, 502, "model_error"),
    (ModelResponseError, 502, "bad_model_response"),
    (EndpointThrottledError, 503, "endpoint_busy"),
    (EndpointTimeoutError, 504, "endpoint_timeout"),
    (ConfigurationError, 500, "internal_error"),
)
INTERNAL = (500, "internal_error")
MAX_DETAILS = 20  # a 10 000-item batch of wrong types must not produce a megabyte of errors


def status_and_code(exc: Exception) -> tuple[int, str]:
    for error_class, status, code in HTTP_ERRORS:
        if isinstance(exc, error_class):
            return status, code
    return INTERNAL


def error_response(exc: Exception, request_id: str) -> tuple[int, dict[str, Any], dict[str, str]]:
    """(status, JSON body, extra headers) for ``exc``."""
    status, code = status_and_code(exc)
    message = getattr(exc, "message", "") if status < 500 or code != "internal_error" else ""
    details = [asdict(d) for d in getattr(exc, "details", [])][:MAX_DETAILS] if status < 500 else []
    body = {
        "error": {
            "code": code,
            "message": message or "internal error; quote the request id when reporting it",
            "request_id": request_id,
            "details": details,
        }
    }
    headers: dict[str, str] = {}
    if isinstance(exc, EndpointThrottledError):
        headers["Retry-After"] = str(exc.retry_after_seconds)
    if isinstance(exc, MethodNotAllowedError):
        headers["Allow"] = ", ".join(exc.allowed)
    return status, body, headers
