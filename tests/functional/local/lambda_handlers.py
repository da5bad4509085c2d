"""Lambda handlers for the local Lambda runtime's tests; each runs in its own process, as in Lambda."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any


def report(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """The environment the process was started with (before Python touched it) and the context."""
    environ = Path("/proc/self/environ").read_bytes().split(b"\0")
    variables = dict(entry.decode().split("=", 1) for entry in environ if entry)
    return {
        "event_id": event["id"],
        "environment": variables,
        "context": {
            "function_name": context.function_name,
            "memory_limit_in_mb": context.memory_limit_in_mb,
            "invoked_function_arn": context.invoked_function_arn,
            "aws_request_id": context.aws_request_id,
            "remaining_ms": context.get_remaining_time_in_millis(),
        },
    }


def fail(event: dict[str, Any], context: Any) -> None:
    raise RuntimeError(f"cannot handle event {event['id']}")


def hang(event: dict[str, Any], context: Any) -> None:
    time.sleep(600)  # far past the function's timeout
