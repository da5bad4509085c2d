"""The Lambda runtime's bootstrap inside one invocation's process (started by :mod:`emulator.lambdas`).

``python -m emulator.lambda_bootstrap HANDLER REQUEST_ID FUNCTION_ARN DEADLINE_MS RESULT_FILE``
reads the event (JSON) on stdin, imports ``HANDLER`` (``package.module.function``) as Lambda's
Python runtime does, calls it with the event and a context object, and writes
``{"result": ...}`` or ``{"error": {"errorType", "errorMessage", "stackTrace"}}`` (Lambda's error
shape) to ``RESULT_FILE``. Everything the handler prints goes to stdout/stderr: the function's log.
Only the standard library is imported here, so the handler's own imports are its cold start.
"""

from __future__ import annotations

import importlib
import io
import json
import os
import sys
import time
import traceback
from pathlib import Path
from typing import Any

EXIT_HANDLER_ERROR = 1
EXIT_USAGE = 2


class LambdaContext:
    """The context object of Lambda's Python runtime: the function's settings come from the
    environment the runtime set, the invocation's from the arguments."""

    def __init__(self, request_id: str, function_arn: str, deadline_ms: int) -> None:
        self.function_name = os.environ.get("AWS_LAMBDA_FUNCTION_NAME")
        self.function_version = os.environ.get("AWS_LAMBDA_FUNCTION_VERSION")
        self.invoked_function_arn = function_arn
        self.memory_limit_in_mb = os.environ.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE")
        self.aws_request_id = request_id
        self.log_group_name = os.environ.get("AWS_LAMBDA_LOG_GROUP_NAME")
        self.log_stream_name = os.environ.get("AWS_LAMBDA_LOG_STREAM_NAME")
        self.identity = None
        self.client_context = None
        self._deadline_ms = deadline_ms

    def get_remaining_time_in_millis(self) -> int:
        return max(0, self._deadline_ms - int(time.time() * 1000))


def error_document(exc: BaseException, error_type: str | None = None) -> dict[str, Any]:
    """An exception as Lambda reports an unhandled error."""
    return {
        "errorType": error_type or type(exc).__name__,
        "errorMessage": str(exc),
        "stackTrace": traceback.format_tb(exc.__traceback__),
    }


def load_handler(spec: str) -> Any:
    module_name, _, function_name = spec.rpartition(".")
    return getattr(importlib.import_module(module_name), function_name)


def invoke(spec: str, event: Any, context: LambdaContext) -> dict[str, Any]:
    """Import the handler and call it once; the outcome as the result file holds it."""
    try:
        handler = load_handler(spec)
    except Exception as exc:  # Lambda reports a handler that cannot load as an init error
        return {"error": error_document(exc, f"Runtime.ImportModuleError: {type(exc).__name__}")}
    try:
        return {"result": handler(event, context)}
    except Exception as exc:  # the handler's own failure: reported, as Lambda reports it
        return {"error": error_document(exc)}


def main(argv: list[str]) -> int:
    if len(argv) != 5:
        print(
            "usage: python -m emulator.lambda_bootstrap HANDLER REQUEST_ID ARN DEADLINE_MS RESULT",
            file=sys.stderr,
        )
        return EXIT_USAGE
    spec, request_id, function_arn, deadline_ms, result_file = argv
    if isinstance(sys.stdout, io.TextIOWrapper):
        sys.stdout.reconfigure(line_buffering=True)  # lines reach the function's log as printed
    context = LambdaContext(request_id, function_arn, int(deadline_ms))
    outcome = invoke(spec, json.load(sys.stdin), context)
    try:
        document = json.dumps(outcome)
    except (TypeError, ValueError) as exc:  # Lambda answers a result it cannot serialise so
        outcome = {"error": error_document(exc, "Runtime.MarshalError")}
        document = json.dumps(outcome)
    error = outcome.get("error")
    if error is not None:
        print(f"[ERROR] {error['errorType']}: {error['errorMessage']}", file=sys.stderr)
        print("".join(error["stackTrace"]), file=sys.stderr, end="")
    Path(result_file).write_text(document)
    return EXIT_HANDLER_ERROR if error is not None else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
