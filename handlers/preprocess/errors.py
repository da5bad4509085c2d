"""Errors of batch preprocessing."""

from __future__ import annotations

from handlers.common.errors import HandlerError


class SourceObjectError(HandlerError):
    """A raw object cannot be processed as a whole (unknown format, too large, unreadable)."""


class UnsupportedEventError(HandlerError):
    """The batch handler received an event shape it does not know."""
