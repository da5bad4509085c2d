"""One emulated AWS endpoint: every client pointed at the emulator reaches real local behaviour.

moto's server answers SageMaker Runtime's ``InvokeEndpoint`` with a canned body for any endpoint
name, even one that does not exist. In front of it, this WSGI middleware sends the runtime's REST
paths (``POST /endpoints/{name}/invocations``) to the local SageMaker Runtime
(:mod:`emulator.runtime`: the endpoint's model server, data capture, SageMaker's errors, so an
unknown endpoint is a ValidationError), answers the asynchronous and streaming invocations with a
clear "not supported here", and leaves everything else (SageMaker's control plane is ``POST /``
with ``X-Amz-Target``) to moto. So ``AWS_ENDPOINT_URL`` alone points boto3 or the AWS CLI at the
whole local platform.
"""

from __future__ import annotations

import json
import re
import threading
import uuid
from collections.abc import Callable, Iterable
from typing import Any

import urllib3

from emulator.runtime import ERROR_TYPE_SUFFIX

_RUNTIME_PATH = re.compile(
    r"/endpoints/(?P<name>[^/]+)/(?P<action>invocations|async-invocations|invocations-response-stream)"
)
_NOT_SUPPORTED = {
    "async-invocations": "InvokeEndpointAsync",
    "invocations-response-stream": "InvokeEndpointWithResponseStream",
}
_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "host"}
PROXY_TIMEOUT_S = 70.0  # above InvokeEndpoint's own 60 s

StartResponse = Callable[..., Any]


class RuntimeDispatch:
    """WSGI: SageMaker Runtime's paths to the local runtime at ``runtime_url`` (set once it
    listens), everything else to moto's ``app``."""

    def __init__(self, app: Callable[..., Iterable[bytes]]) -> None:
        self.app = app
        self.runtime_url: str | None = None
        self._pool = urllib3.PoolManager(maxsize=32, block=False)

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        match = _RUNTIME_PATH.fullmatch(environ.get("PATH_INFO", ""))
        if match is None or environ.get("REQUEST_METHOD") != "POST":
            return self.app(environ, start_response)
        operation = _NOT_SUPPORTED.get(match["action"])
        if operation is not None:
            return _validation_error(
                start_response,
                f"{operation} is not supported by the local emulator: call InvokeEndpoint "
                "(the platform's endpoints are real-time)",
            )
        if self.runtime_url is None:
            return _validation_error(start_response, "the local SageMaker Runtime is not running yet")
        return self._forward(environ, start_response)

    def _forward(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length) if length else b""
        headers = {
            key[5:].replace("_", "-").title(): value
            for key, value in environ.items()
            if key.startswith("HTTP_") and key[5:].replace("_", "-").lower() not in _HOP_BY_HOP
        }
        if environ.get("CONTENT_TYPE"):
            headers["Content-Type"] = environ["CONTENT_TYPE"]
        query = f"?{environ['QUERY_STRING']}" if environ.get("QUERY_STRING") else ""
        answer = self._pool.request(
            "POST",
            f"{self.runtime_url}{environ['PATH_INFO']}{query}",
            body=body,
            headers=headers,
            timeout=urllib3.Timeout(connect=5.0, read=PROXY_TIMEOUT_S),
            retries=False,
        )
        out = [(k, v) for k, v in answer.headers.items() if k.lower() not in _HOP_BY_HOP]
        start_response(f"{answer.status} {answer.reason or ''}".strip(), out)
        return [answer.data]


def _validation_error(start_response: StartResponse, message: str) -> Iterable[bytes]:
    body = json.dumps({"message": message}).encode()
    start_response(
        "400 Bad Request",
        [
            ("Content-Type", "application/json"),
            ("x-amzn-ErrorType", f"ValidationError{ERROR_TYPE_SUFFIX}"),
            ("x-amzn-RequestId", str(uuid.uuid4())),
            ("Content-Length", str(len(body))),
        ],
    )
    return [body]


class EmulatedAws:
    """moto's server behind :class:`RuntimeDispatch`, on ``host:port`` (0: a free port), in a thread."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        from moto.moto_server.threaded_moto_server import MotoRequestHandler  # noqa: PLC0415 - local only
        from moto.moto_server.werkzeug_app import (  # noqa: PLC0415
            DomainDispatcherApplication,
            create_backend_app,
        )
        from werkzeug.serving import make_server  # noqa: PLC0415

        self.dispatch = RuntimeDispatch(DomainDispatcherApplication(create_backend_app))
        self._server = make_server(host, port, self.dispatch, True, request_handler=MotoRequestHandler)
        self._thread = threading.Thread(target=self._server.serve_forever, name="emulated-aws", daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._thread.join()
