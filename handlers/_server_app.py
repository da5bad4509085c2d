"""The model server's ASGI app (starlette): ``/ping``, ``/invocations``, ``/metrics``.

The event loop only reads bodies and writes answers. ``input_fn``, the forward pass and
``output_fn`` run on a thread pool; the forward passes go through the ``Batcher`` (one at a time,
shared by concurrent requests). The model loads on a background thread after the server starts
listening, so ``/ping`` answers 503 while it loads, 200 once it is ready, and 503 again as soon as
shutdown starts (``model_server._Server`` sets ``ModelService.draining``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ._server_batching import Batcher, BatchInfo
from ._server_handlers import (
    JSON,
    UTF8_TYPES,
    BadRequestError,
    HandlerSet,
    ModelNotReadyError,
    PayloadTooLargeError,
    RequestTimeoutError,
    ServingError,
    accepted_media_types,
    load_handlers,
    media_type_of,
)

logger = logging.getLogger("handlers.model_server")

_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
_CODES = {
    400: "invalid_request",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "unprocessable_input",
    503: "unavailable",
    504: "timeout",
}
_INTERNAL_MESSAGE = "internal error; quote the request id when reporting it"


@dataclass(frozen=True)
class AppOptions:
    """What one worker's app needs (a subset of the server settings)."""

    model_dir: Path
    program: str = "inference.py"
    batching: bool = True
    max_batch_size: int = 32
    max_batch_delay_ms: float = 5.0
    max_body_bytes: int = 6 * 1024 * 1024
    request_timeout_s: float = 60.0
    default_accept: str = JSON
    threads: int = 64


@dataclass(frozen=True)
class Prediction:
    body: bytes
    content_type: str
    info: BatchInfo | None


class ModelService:
    """The loaded artifact and the request pipeline that runs on the worker threads."""

    def __init__(self, options: AppOptions) -> None:
        self.options = options
        self.ready = threading.Event()
        self.draining = False
        self.load_error: BaseException | None = None
        self.handlers: HandlerSet | None = None
        self.model: Any = None
        self.batcher: Batcher | None = None
        self._transform_lock = threading.Lock()
        self._counter_lock = threading.Lock()
        self.requests = 0
        self.responses_by_status: dict[int, int] = {}
        self.load_seconds: float | None = None

    def load(self) -> None:
        """Import the artifact's code and run ``model_fn`` (on a background thread)."""
        started = time.perf_counter()
        handlers = load_handlers(self.options.model_dir, self.options.program)
        logger.info(
            "serving %s (user functions: %s)",
            handlers.module_file or "default handlers",
            ", ".join(handlers.user_functions) or "none",
        )
        model = handlers.model_fn(str(self.options.model_dir))
        batching = self.options.batching and handlers.transform_fn is None
        if self.options.batching and not batching:
            logger.info("transform_fn serves each request whole: batching is off")

        def predict(data: Any) -> Any:
            return handlers.predict_fn(data, model)

        self.handlers, self.model = handlers, model
        self.batcher = Batcher(
            predict,
            enabled=batching,
            max_batch_size=self.options.max_batch_size,
            max_batch_delay_s=self.options.max_batch_delay_ms / 1000,
        )
        self.load_seconds = time.perf_counter() - started
        self.ready.set()
        logger.info("model ready in %.2f s (batching %s)", self.load_seconds, "on" if batching else "off")

    def predict(self, body: bytes, content_type: str | None, accept: str) -> Prediction:
        """The whole request on a worker thread: decode, predict (batched), encode."""
        handlers, batcher = self.handlers, self.batcher
        if handlers is None or batcher is None:
            raise ModelNotReadyError("the model is not loaded yet")
        payload: Any = body
        if media_type_of(content_type) in UTF8_TYPES:  # the toolkit hands text types over decoded
            try:
                payload = body.decode("utf-8")
            except UnicodeDecodeError:
                raise BadRequestError("body is not valid UTF-8") from None
        if handlers.transform_fn is not None:
            with self._transform_lock:
                result = handlers.transform_fn(self.model, payload, content_type, accept)
            info = None
        else:
            prediction, info = batcher.run(lambda: handlers.input_fn(payload, content_type))
            result = handlers.output_fn(prediction, accept)
        out, out_type = result if isinstance(result, tuple) else (result, None)
        data = out.encode() if isinstance(out, str) else bytes(out)
        return Prediction(data, str(out_type or _response_type(accept, self.options.default_accept)), info)

    def count(self, status: int) -> None:
        with self._counter_lock:
            self.responses_by_status[status] = self.responses_by_status.get(status, 0) + 1

    def metrics(self) -> dict[str, Any]:
        with self._counter_lock:
            statuses = {str(k): v for k, v in sorted(self.responses_by_status.items())}
        batching = {**self.batcher.metrics.snapshot(), **self.batcher.depth()} if self.batcher else {}
        return {
            "worker_pid": os.getpid(),
            "ready": self.ready.is_set(),
            "draining": self.draining,
            "batching": bool(self.batcher and self.batcher.enabled),
            "max_batch_size": self.options.max_batch_size,
            "max_batch_delay_ms": self.options.max_batch_delay_ms,
            "model_load_seconds": self.load_seconds,
            "requests": sum(statuses.values()),
            "responses_by_status": statuses,
            **batching,
        }


def create_app(options: AppOptions, on_fatal: Callable[[], None] | None = None) -> Starlette:
    """The ASGI app of one worker; ``on_fatal`` is called if the model cannot be loaded.
    ``app.state.service`` is its ``ModelService``."""
    server = _Routes(ModelService(options), on_fatal)
    app = Starlette(
        routes=[
            Route("/ping", server.ping, methods=["GET"]),
            Route("/invocations", server.invocations, methods=["POST"]),
            Route("/metrics", server.metrics, methods=["GET"]),
        ],
        exception_handlers={HTTPException: server.http_error},
        lifespan=server.lifespan,
    )
    app.state.service = server.service
    return app


class _Routes:
    def __init__(self, service: ModelService, on_fatal: Callable[[], None] | None) -> None:
        self.service = service
        self.options = service.options
        self._on_fatal = on_fatal
        self._executor = ThreadPoolExecutor(max_workers=self.options.threads, thread_name_prefix="predict")

    def _load_in_background(self) -> None:
        try:
            self.service.load()
        except BaseException as exc:
            self.service.load_error = exc
            logger.critical("the model could not be loaded; stopping", exc_info=True)
            if self._on_fatal is not None:
                self._on_fatal()

    @contextlib.asynccontextmanager
    async def lifespan(self, _app: Starlette) -> AsyncIterator[None]:
        if not self.service.ready.is_set():  # a supervised worker has loaded it already
            threading.Thread(target=self._load_in_background, name="model-load", daemon=True).start()
        try:
            yield
        finally:
            self.service.draining = True
            self._executor.shutdown(wait=False, cancel_futures=True)

    async def ping(self, _request: Request) -> Response:
        if self.service.draining:
            return JSONResponse({"status": "draining"}, status_code=503)
        if not self.service.ready.is_set():
            status = "failed" if self.service.load_error is not None else "loading"
            return JSONResponse({"status": status}, status_code=503, headers={"Retry-After": "1"})
        return JSONResponse({"status": "healthy"})

    async def invocations(self, request: Request) -> Response:
        request_id = _request_id(request)
        try:
            result = await self._predict(request)
        except Exception as exc:
            return _error(self.service, exc, request_id)
        headers = {"X-Request-Id": request_id, "Content-Type": result.content_type}  # as the handler said
        if result.info is not None:
            headers["X-Batch-Size"] = str(result.info.requests)
            headers["X-Batch-Rows"] = str(result.info.rows)
        self.service.count(200)
        return Response(result.body, headers=headers)

    async def _predict(self, request: Request) -> Prediction:
        if not self.service.ready.is_set():
            raise ModelNotReadyError("the model is not loaded yet")
        body = await _read_body(request, self.options.max_body_bytes)
        accept = request.headers.get("accept", "")
        if accepted_media_types(accept) in ([], ["*/*"]):
            accept = self.options.default_accept
        content_type = request.headers.get("content-type")
        work = asyncio.get_running_loop().run_in_executor(
            self._executor, self.service.predict, body, content_type, accept
        )
        try:
            return await asyncio.wait_for(work, self.options.request_timeout_s)
        except TimeoutError:
            raise RequestTimeoutError(
                f"no prediction within {self.options.request_timeout_s:g} s (SAGEMAKER_MODEL_SERVER_TIMEOUT)"
            ) from None

    async def metrics(self, _request: Request) -> Response:
        return JSONResponse(self.service.metrics())

    async def http_error(self, request: Request, exc: Exception) -> Response:
        status = exc.status_code if isinstance(exc, HTTPException) else 500
        headers = dict(exc.headers or {}) if isinstance(exc, HTTPException) else {}
        message = exc.detail if isinstance(exc, HTTPException) else _INTERNAL_MESSAGE
        body = {"error": {"code": _CODES.get(status, "error"), "message": message}}
        body["error"]["request_id"] = _request_id(request)
        return JSONResponse(body, status_code=status, headers=headers)


async def _read_body(request: Request, limit: int) -> bytes:
    """The body, refused with 413 from Content-Length before reading it, or as soon as it passes."""
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise BadRequestError("Content-Length is not a number")
        if int(declared) > limit:
            raise PayloadTooLargeError(f"body is {int(declared)} bytes; the limit is {limit}")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLargeError(f"body is over the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _error(service: ModelService, exc: Exception, request_id: str) -> Response:
    """Errors with an HTTP status keep it (client errors show their message); anything else is a
    500 whose traceback goes to the log under the request id, never to the caller."""
    status = getattr(exc, "status_code", None)
    if not isinstance(status, int) or not 400 <= status <= 599:
        status = 500
    if status >= 500 and not isinstance(exc, ServingError):
        logger.error("request %s failed", request_id, exc_info=exc)
        message = _INTERNAL_MESSAGE
    elif status >= 500:
        logger.warning("request %s: %s", request_id, exc)
        message = getattr(exc, "message", None) or _INTERNAL_MESSAGE
    else:
        logger.info("request %s refused (%d): %s", request_id, status, exc)
        message = str(getattr(exc, "message", None) or exc) or "invalid request"
    code = getattr(exc, "code", None) if isinstance(exc, ServingError) else None
    body = {"error": {"code": code or _CODES.get(status, "internal_error"), "message": message}}
    body["error"]["request_id"] = request_id
    headers = {"X-Request-Id": request_id}
    if status == 503:
        headers["Retry-After"] = "1"
    service.count(status)
    return JSONResponse(body, status_code=status, headers=headers)


def _request_id(request: Request) -> str:
    for header in ("x-request-id", "x-amzn-requestid"):
        value = request.headers.get(header, "")
        if _REQUEST_ID.fullmatch(value):
            return value
    return uuid.uuid4().hex


def _response_type(accept: str, default: str) -> str:
    for media_type in accepted_media_types(accept):
        if "*" not in media_type:
            return media_type
    return default
