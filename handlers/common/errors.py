"""The one base class of the handlers' domain errors, and the errors every package shares.

Each package adds its own subclasses in its ``errors`` module. The classes say what went wrong,
not how to answer it: ``handlers.api.error_responses`` turns them into HTTP statuses.
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


# --- our own configuration -------------------------------------------------------------------------


class ConfigurationError(HandlerError):
    """The function is deployed with bad settings (input schema, limits); a 500 for callers."""
