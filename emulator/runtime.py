"""A local SageMaker Runtime: ``InvokeEndpoint`` over HTTP in botocore's wire format, routed to
the model-server processes of an endpoint's production variants (by weight, or the one a request
targets), blue/green, with SageMaker's errors and data capture (docs/local-platform.md).
"""

from __future__ import annotations

import json
import logging
import random
import re
import socket
import threading
import uuid
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol
from urllib.parse import unquote, urlsplit

import urllib3
from urllib3.exceptions import HTTPError, ProtocolError, ReadTimeoutError

from emulator.capture import CaptureWriter, Invocation

logger = logging.getLogger(__name__)

DEFAULT_ACCOUNT_ID = "123456789012"
DEFAULT_REGION = "us-east-1"
MAX_PAYLOAD_BYTES = 6 * 1024 * 1024  # SageMaker real-time endpoints' request limit
CONTAINER_TIMEOUT_S = 60.0  # SageMaker gives a container 60 s to answer
CONNECT_TIMEOUT_S = 2.0
IDLE_KEEP_ALIVE_S = 60.0  # an idle client connection is closed after this
DRAIN_BODY_LIMIT = 64 * 1024 * 1024  # a larger refused body is not read: the connection is closed
FORWARDED_HEADERS = (
    "Content-Type",
    "Accept",
    "X-Amzn-SageMaker-Custom-Attributes",
    "X-Amzn-SageMaker-Target-Model",
    "X-Amzn-SageMaker-Inference-Id",
)
TARGET_VARIANT_HEADER = "X-Amzn-SageMaker-Target-Variant"  # InvokeEndpoint's TargetVariant
_INVOCATIONS = re.compile(r"/endpoints/(?P<name>[^/]+)/invocations")
ERROR_TYPE_SUFFIX = ":http://internal.amazon.com/coral/com.amazon.sagemaker.runtime/"


# --- the HTTP plumbing both local gateways share ----------------------------------------------------------


@dataclass(frozen=True)
class HttpRequest:
    """One request as a gateway sees it: the raw target (path and query), headers in order."""

    method: str
    target: str
    headers: list[tuple[str, str]]
    body: bytes
    client_ip: str

    def header(self, name: str) -> str | None:
        """The last value of header ``name`` (case-insensitive), or None."""
        wanted = name.lower()
        values = [value for key, value in self.headers if key.lower() == wanted]
        return values[-1] if values else None


@dataclass
class HttpResponse:
    status: int
    body: bytes = b""
    headers: list[tuple[str, str]] = field(default_factory=list)


def json_response(status: int, document: Any, headers: list[tuple[str, str]] | None = None) -> HttpResponse:
    body = json.dumps(document).encode()
    return HttpResponse(status, body, [("Content-Type", "application/json"), *(headers or [])])


class HttpApp(Protocol):
    """What :class:`BackgroundHttpServer` serves: a blocking ``handle`` per request."""

    max_body_bytes: int

    def handle(self, request: HttpRequest) -> HttpResponse: ...

    def too_large(self, request: HttpRequest) -> HttpResponse: ...


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128  # many clients connecting at once must not be refused

    def __init__(self, address: tuple[str, int], app: HttpApp) -> None:
        self.app = app
        self.connections: set[socket.socket] = set()
        self.connections_lock = threading.Lock()
        super().__init__(address, _Handler)


class _Handler(BaseHTTPRequestHandler):
    """HTTP/1.1 with keep-alive: one thread per client connection (stdlib ``http.server``)."""

    protocol_version = "HTTP/1.1"
    timeout = IDLE_KEEP_ALIVE_S
    server: _Server

    def setup(self) -> None:
        super().setup()
        with self.server.connections_lock:
            self.server.connections.add(self.connection)

    def finish(self) -> None:
        with self.server.connections_lock:
            self.server.connections.discard(self.connection)
        super().finish()

    def _serve(self) -> None:
        """Read the body (Content-Length only: our clients never chunk), let the app answer."""
        app = self.server.app
        length = self._content_length()
        if length is None:
            return
        if length > app.max_body_bytes:
            self._discard_body(length)
            self._send(app.too_large(self._request(b"")), close=length > DRAIN_BODY_LIMIT)
            return
        request = self._request(self.rfile.read(length))
        try:
            response = app.handle(request)
        except Exception:  # a gateway bug must still answer, and keep the server up
            logger.exception("%s %s failed in the gateway", request.method, request.target)
            response = json_response(500, {"message": "Internal server error"})
        self._send(response)

    def _content_length(self) -> int | None:
        """The declared body length; None after answering a request that has no usable one."""
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            self._send(json_response(411, {"message": "Length Required"}), close=True)
            return None
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if length < 0:
            self._send(json_response(400, {"message": "Bad Request"}), close=True)
            return None
        return length

    def _request(self, body: bytes) -> HttpRequest:
        return HttpRequest(self.command, self.path, list(self.headers.items()), body, self.client_address[0])

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = _serve

    def _discard_body(self, length: int) -> None:
        """Read a refused body away, so the client reads our answer instead of a reset."""
        if length > DRAIN_BODY_LIMIT:
            return
        while length > 0:
            chunk = self.rfile.read(min(length, 1 << 20))
            if not chunk:
                return
            length -= len(chunk)

    def _send(self, response: HttpResponse, close: bool = False) -> None:
        self.send_response(response.status)
        for name, value in response.headers:
            if name.lower() not in ("content-length", "connection", "transfer-encoding"):
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(response.body)))
        if close:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(response.body)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the stdlib's signature
        logger.debug("%s - " + format, self.client_address[0], *args)


class BackgroundHttpServer:
    """A threaded HTTP server on a daemon thread: ``start()`` binds (port 0: a free one)."""

    def __init__(self, app: HttpApp, host: str, port: int, name: str) -> None:
        self._app, self._host, self._port, self._name = app, host, port, name
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError(f"{self._name} is not started")
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        return f"http://{self._host}:{self.port}"

    def start(self) -> None:
        if self._server is not None:
            return
        self._server = _Server((self._host, self._port), self._app)
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.1}, name=self._name, daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        """Stop accepting, then wake idle keep-alive connections so their threads end."""
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        with server.connections_lock:
            connections = list(server.connections)
        for connection in connections:
            try:  # reading side only: an answer being written still goes out
                connection.shutdown(socket.SHUT_RD)
            except OSError:
                pass
        if self._thread is not None:
            self._thread.join()


# --- routing -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Route:
    """Where the requests for one production variant of an endpoint go: its container.

    ``weight`` is the variant's current weight (its share of the requests that name no variant);
    ``capture_percent`` is the config's sampling percentage (0: no capture); ``capture_uri``
    overrides the capture writer's destination (the config's ``DestinationS3Uri``).
    """

    container_url: str
    variant_name: str = "primary"
    config_name: str = ""
    model_version: str = ""
    capture_percent: int = 100
    capture_uri: str | None = None
    weight: float = 1.0


class VariantNotFoundError(LookupError):
    """No variant of a routed endpoint can take the request: the one it names is not served, or
    every variant's weight is 0."""


class EndpointRouter:
    """Thread-safe ``endpoint name -> its variants' routes``, counting requests in flight per
    container. A request that names no variant gets one at random in proportion to the weights;
    ``choice`` is that random source (seed it for repeatable picks)."""

    def __init__(self, choice: random.Random | None = None) -> None:
        self._routes: dict[str, tuple[Route, ...]] = {}
        self._in_flight: Counter[str] = Counter()
        self._changed = threading.Condition()
        self._choice = choice or random.Random()

    def set_routes(self, name: str, routes: Sequence[Route]) -> tuple[Route, ...]:
        """Switch ``name`` to ``routes`` (one per variant) atomically; returns the previous ones."""
        if not routes:
            raise ValueError(f"endpoint {name} needs at least one route")
        with self._changed:
            previous = self._routes.get(name, ())
            self._routes[name] = tuple(routes)
            return previous

    def set_route(self, name: str, route: Route) -> Route | None:
        """Serve ``name`` by the one variant ``route``; returns the previous first route."""
        previous = self.set_routes(name, [route])
        return previous[0] if previous else None

    def remove(self, name: str) -> tuple[Route, ...]:
        with self._changed:
            return self._routes.pop(name, ())

    def routes(self) -> dict[str, tuple[Route, ...]]:
        with self._changed:
            return dict(self._routes)

    @contextmanager
    def acquire(self, name: str, variant: str | None = None) -> Iterator[Route | None]:
        """The route a request to ``name`` takes now (``variant``'s, or one picked by weight),
        counted in flight on its container until the block ends; None for an unknown endpoint.
        Raises :class:`VariantNotFoundError` before the block when no variant can take it."""
        with self._changed:
            routes = self._routes.get(name)
            route = self._pick(name, routes, variant) if routes else None
            if route is not None:
                self._in_flight[route.container_url] += 1
        try:
            yield route
        finally:
            if route is not None:
                with self._changed:
                    self._in_flight[route.container_url] -= 1
                    self._changed.notify_all()

    def _pick(self, name: str, routes: tuple[Route, ...], variant: str | None) -> Route:
        if variant is not None:
            for route in routes:
                if route.variant_name == variant:
                    return route
            raise VariantNotFoundError(f"Variant {variant} not found for endpoint {name}.")
        weights = [max(route.weight, 0.0) for route in routes]
        if sum(weights) <= 0:
            raise VariantNotFoundError(
                f"Every variant of endpoint {name} has weight 0: name one with TargetVariant."
            )
        if len(routes) == 1:  # no draw: one-variant endpoints leave the random source alone
            return routes[0]
        return self._choice.choices(routes, weights=weights)[0]

    def in_flight(self, container_url: str) -> int:
        with self._changed:
            return self._in_flight[container_url]

    def wait_drained(self, container_url: str, timeout: float | None = None) -> bool:
        """Wait until no request is in flight on ``container_url``; False on timeout."""
        with self._changed:
            return self._changed.wait_for(lambda: self._in_flight[container_url] <= 0, timeout)


# --- the runtime -----------------------------------------------------------------------------------------


class InvokeError(Exception):
    """An InvokeEndpoint error: HTTP status, SageMaker error code, message, modeled fields."""

    def __init__(self, status: int, code: str, message: str, fields: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.fields = status, code, message, fields


class RuntimeGateway:
    """The local SageMaker Runtime (see the module docstring); ``start()`` serves on a thread."""

    def __init__(
        self,
        router: EndpointRouter,
        capture: CaptureWriter | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        account_id: str = DEFAULT_ACCOUNT_ID,
        region: str = DEFAULT_REGION,
        container_timeout_s: float = CONTAINER_TIMEOUT_S,
    ) -> None:
        self.router = router
        self.capture = capture
        self.account_id, self.region = account_id, region
        self.max_body_bytes = DRAIN_BODY_LIMIT  # read it all; the 6 MB limit answers as SageMaker does
        self.invocations = 0
        self.errors_by_code: Counter[str] = Counter()
        self._counts = threading.Lock()
        self._timeout = urllib3.Timeout(connect=CONNECT_TIMEOUT_S, read=container_timeout_s)
        self._pool = urllib3.PoolManager(num_pools=32, maxsize=64, block=False)
        self._http = BackgroundHttpServer(self, host, port, "sagemaker-runtime")

    @property
    def url(self) -> str:
        return self._http.url

    def start(self) -> None:
        self._http.start()

    def stop(self) -> None:
        self._http.stop()
        self._pool.clear()

    def too_large(self, request: HttpRequest) -> HttpResponse:
        return self._error_response(_payload_too_large(), str(uuid.uuid4()))

    def handle(self, request: HttpRequest) -> HttpResponse:
        match = _INVOCATIONS.fullmatch(urlsplit(request.target).path)
        request_id = str(uuid.uuid4())
        if match is None or request.method != "POST":
            error = InvokeError(404, "UnknownOperationException", "Unknown operation")
            return self._error_response(error, request_id)
        with self._counts:
            self.invocations += 1
        try:
            return self._invoke(unquote(match["name"]), request, request_id)
        except InvokeError as error:
            return self._error_response(error, request_id)

    def _invoke(self, endpoint: str, request: HttpRequest, request_id: str) -> HttpResponse:
        if len(request.body) > MAX_PAYLOAD_BYTES:
            raise _payload_too_large()
        try:
            with self.router.acquire(endpoint, request.header(TARGET_VARIANT_HEADER)) as route:
                if route is None:
                    raise InvokeError(
                        400, "ValidationError", f"Endpoint {endpoint} of account {self.account_id} not found."
                    )
                reply = self._forward(endpoint, route, request, request_id)
        except VariantNotFoundError as exc:
            raise InvokeError(400, "ValidationError", str(exc)) from None
        if not 200 <= reply.status < 300:
            raise self._model_error(endpoint, route, reply)
        content_type = reply.headers.get("Content-Type") or "application/octet-stream"
        self._capture(endpoint, route, request, reply.data, content_type)
        headers = [
            ("Content-Type", content_type),
            ("x-Amzn-Invoked-Production-Variant", route.variant_name),
            ("x-amzn-RequestId", request_id),
        ]
        attributes = reply.headers.get("X-Amzn-SageMaker-Custom-Attributes")
        if attributes is not None:
            headers.append(("X-Amzn-SageMaker-Custom-Attributes", attributes))
        return HttpResponse(200, reply.data, headers)

    def _forward(
        self, endpoint: str, route: Route, request: HttpRequest, request_id: str
    ) -> urllib3.BaseHTTPResponse:
        """POST the body to the container's ``/invocations``; one retry if a pooled keep-alive
        connection turns out closed (the container dropped it while idle)."""
        headers = {name: value for name in FORWARDED_HEADERS if (value := request.header(name)) is not None}
        headers["X-Amzn-RequestId"] = request_id
        url = route.container_url.rstrip("/") + "/invocations"
        for attempt in (1, 2):
            try:
                return self._pool.request(
                    "POST", url, body=request.body, headers=headers, timeout=self._timeout, retries=False
                )
            except ReadTimeoutError:
                raise InvokeError(
                    424,
                    "ModelError",
                    f'Received server error (0) from {route.variant_name} with message "Your invocation '
                    f'timed out while waiting for a response from container {route.variant_name}."',
                    self._model_error_fields(endpoint, 0, ""),
                ) from None
            except ProtocolError:
                if attempt == 2:
                    raise _unavailable(route) from None
            except (HTTPError, OSError):
                raise _unavailable(route) from None
        raise AssertionError("unreachable")

    def _model_error(self, endpoint: str, route: Route, reply: urllib3.BaseHTTPResponse) -> InvokeError:
        kind = "client" if reply.status < 500 else "server"
        original = reply.data.decode("utf-8", errors="replace")
        message = (
            f'Received {kind} error ({reply.status}) from {route.variant_name} with message "{original}". '
            f"See {self._log_url(endpoint)} in account {self.account_id} for more information."
        )
        fields = self._model_error_fields(endpoint, reply.status, original)
        fields["ErrorCode"] = f"{kind.upper()}_ERROR_FROM_MODEL"
        return InvokeError(424, "ModelError", message, fields)

    def _model_error_fields(self, endpoint: str, status: int, original: str) -> dict[str, Any]:
        log_group = f"/aws/sagemaker/Endpoints/{endpoint}"
        return {
            "OriginalStatusCode": status,
            "OriginalMessage": original,
            "LogStreamArn": f"arn:aws:logs:{self.region}:{self.account_id}:log-group:{log_group}",
        }

    def _log_url(self, endpoint: str) -> str:
        region = self.region
        return (
            f"https://{region}.console.aws.amazon.com/cloudwatch/home?region={region}"
            f"#logEventViewer:group=/aws/sagemaker/Endpoints/{endpoint}"
        )

    def _capture(
        self, endpoint: str, route: Route, request: HttpRequest, output: bytes, output_type: str
    ) -> None:
        """Sample and buffer the invocation; capture trouble is logged, never answered."""
        if self.capture is None or route.capture_percent <= 0:
            return
        if route.capture_percent < 100 and random.uniform(0, 100) >= route.capture_percent:
            return
        invocation = Invocation(
            endpoint=endpoint,
            variant=route.variant_name,
            input_body=request.body,
            input_type=request.header("Content-Type") or "application/octet-stream",
            output_body=output,
            output_type=output_type,
            inference_id=request.header("X-Amzn-SageMaker-Inference-Id"),
        )
        try:
            self.capture.record(invocation, destination=route.capture_uri)
        except Exception:
            logger.exception("data capture failed for endpoint %s", endpoint)

    def _error_response(self, error: InvokeError, request_id: str) -> HttpResponse:
        with self._counts:
            self.errors_by_code[error.code] += 1
        document = {**error.fields, "Message": error.message} if error.fields else {"message": error.message}
        headers = [("x-amzn-ErrorType", error.code + ERROR_TYPE_SUFFIX), ("x-amzn-RequestId", request_id)]
        return json_response(error.status, document, headers)


def _payload_too_large() -> InvokeError:
    return InvokeError(
        400, "ValidationError", f"Request payload is larger than the {MAX_PAYLOAD_BYTES}-byte limit."
    )


def _unavailable(route: Route) -> InvokeError:
    logger.warning("container %s of variant %s is unreachable", route.container_url, route.variant_name)
    return InvokeError(503, "ServiceUnavailable", "The service is unavailable. Try your call again.")


__all__ = [
    "BackgroundHttpServer",
    "CaptureWriter",
    "EndpointRouter",
    "HttpRequest",
    "HttpResponse",
    "Route",
    "RuntimeGateway",
    "VariantNotFoundError",
]
