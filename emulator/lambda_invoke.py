"""Lambda's Invoke API on the emulator: the function's handler runs in the local Lambda runtime
(:mod:`emulator.lambdas`), with its declared environment, as AWS would run it. moto can only run
functions in Docker; here ``aws lambda invoke`` and boto3's ``invoke`` against the emulator get the
handler's real answer (``RequestResponse``), or queue it (``Event``), so ``mlctl models rollback
--local`` takes the path it takes in AWS.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any
from urllib.parse import unquote

from botocore.exceptions import ClientError

from emulator.lambdas import LocalLambdaRuntime

Answer = tuple[int, dict[str, str], str | bytes]


def extend_moto(runtime: LocalLambdaRuntime) -> Callable[[], None]:
    """Patch moto's Invoke in this process; returns the undo (tests need it)."""
    from moto.awslambda.responses import LambdaResponse  # noqa: PLC0415 - moto is local-only

    original = LambdaResponse.invoke

    def invoke(self: Any) -> Answer:
        function = unquote(self.path.rsplit("/", 2)[-2])
        kind = self.headers.get("X-Amz-Invocation-Type") or "RequestResponse"
        return invoke_function(runtime, function, kind, self.body)

    LambdaResponse.invoke = invoke  # type: ignore[method-assign]

    def undo() -> None:
        LambdaResponse.invoke = original  # type: ignore[method-assign]

    return undo


def invoke_function(
    runtime: LocalLambdaRuntime, function: str, kind: str, body: str | bytes | None
) -> Answer:
    """One Invoke request, answered as Lambda answers it."""
    try:
        event = json.loads(body or b"{}")
    except ValueError:
        return _error(400, "InvalidRequestContentException", "Could not parse request body into json")
    # moto's server takes the status from the headers too.
    if kind == "DryRun":
        return 204, {"status": "204"}, b""
    if kind == "Event":
        runtime.invoke_async(function, event)
        return 202, {"status": "202"}, b""
    try:
        outcome = runtime.invoke_sync(function, event)
    except ClientError as exc:
        error = exc.response.get("Error", {})
        return _error(404, str(error.get("Code", "ResourceNotFoundException")), str(error.get("Message")))
    headers = {"content-type": "application/json", "x-amz-executed-version": "$LATEST"}
    if outcome.error is not None:
        headers["x-amz-function-error"] = "Unhandled"
        return 200, headers, json.dumps(outcome.error)
    return 200, headers, json.dumps(outcome.result)


def _error(status: int, code: str, message: str) -> Answer:
    return (
        status,
        {"x-amzn-ErrorType": code, "content-type": "application/json", "status": str(status)},
        json.dumps({"Type": "User", "message": message}),
    )
