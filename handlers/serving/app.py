"""The model server's ASGI app: ``/ping``, ``/invocations``, ``/metrics``.

A plain ASGI callable (no framework routing on the hot path): three fixed routes, JSON errors for
everything else. A cheap ``input_fn``/``output_fn`` (the running mean of their cost under
``INLINE_BUDGET_S``) runs on the event loop, which saves two thread hops per request; a costlier
one runs on a thread pool. The forward passes go through the ``Batcher``'s model thread (one at a
time, shared by concurrent requests), never on the event loop; ``transform_fn`` runs on the pool.
The model loads on a background thread after the server starts listening, so ``/ping`` answers 503
while it loads, 200 once it is ready, and 503 again as soon as shutdown starts
(``model_server._Server`` sets ``ModelService.draining``).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import os
import re
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, MutableMapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import torch

from handlers.common.contracts import MAX_BODY_BYTES, MAX_JSON_DEPTH, SAMPLE_REQUEST_FILE
from handlers.common.json_limits import json_depth_exceeds
from handlers.serving.artifact import (
    JSON,
    UTF8_TYPES,
    BadRequestError,
    InferenceFunctions,
    ModelNotReadyError,
    ModelOutputError,
    PayloadTooLargeError,
    RequestTimeoutError,
    ServingError,
    accepted_media_types,
    load_inference_functions,
    media_type_of,
    model_device,
)
from handlers.serving.batching import Batcher, BatchInfo, BatchMetrics, leading_rows
from handlers.serving.metrics import PROMETHEUS_CONTENT_TYPE, ServerMetrics, wants_json
from handlers.serving.precision import FLOAT32, with_precision
from handlers.serving.threads import ForwardThreads
from handlers.serving.warmup import WarmUp, read_sample_request, warm_up

logger = logging.getLogger("handlers.serving.server")

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
_REASONS = {404: "Not Found", 405: "Method Not Allowed"}
INLINE_BUDGET_S = 0.001  # input_fn + output_fn cheaper than this (running mean) run on the event loop
_COST_WEIGHT = 0.05  # weight of the newest request in that running mean
_ID_PREFIX = uuid.uuid4().hex[:16]  # request ids: a random prefix per process + a counter
_ids = itertools.count(1)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


@dataclass(frozen=True)
class AppOptions:
    """What one worker's app needs (a subset of the server settings)."""

    model_dir: Path
    program: str = "inference.py"
    batching: bool = True
    max_batch_size: int = 32
    max_batch_delay_ms: float = 5.0
    max_body_bytes: int = MAX_BODY_BYTES
    request_timeout_s: float = 60.0
    default_accept: str = JSON
    threads: int = 64
    torch_threads: int = 0  # per forward pass under load; 0: torch's current setting
    spare_threads: int = 0  # for a lone one-row pass while no other worker runs one
    in_flight: Any = None  # requests in flight on all workers (multiprocessing.Value); None: alone
    emf_interval_s: float = 0.0  # seconds between CloudWatch EMF lines on stdout; 0: none
    precision: str = FLOAT32  # autocast predict_fn to float16 / bfloat16 (handlers/serving/precision.py)
    warmup: bool = True  # run the artifact's sample request before ready (handlers/serving/warmup.py)


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
        self.functions: InferenceFunctions | None = None
        self.model: Any = None
        self.batcher: Batcher | None = None
        self._transform_lock = threading.Lock()
        self.server_metrics = ServerMetrics(
            lambda: self.ready.is_set() and not self.draining, emf_interval_s=options.emf_interval_s
        )
        self.load_seconds: float | None = None
        self._cost = 0.0  # running mean of input_fn + output_fn seconds per request
        self.threads = ForwardThreads(
            options.torch_threads or torch.get_num_threads(), options.spare_threads, options.in_flight
        )

    def load(self) -> None:
        """Import the artifact's code, run ``model_fn``, then the warm-up passes; ``ready`` is set
        only after them (on a background thread, or before a supervised worker listens)."""
        started = time.perf_counter()
        functions = load_inference_functions(self.options.model_dir, self.options.program)
        logger.info(
            "serving %s (user functions: %s)",
            functions.module_file or "the default inference functions",
            ", ".join(functions.user_functions) or "none",
        )
        model = functions.model_fn(str(self.options.model_dir))
        if self.options.precision != FLOAT32:
            device_type = model_device().type
            functions = with_precision(functions, self.options.precision, device_type)
            logger.info("predict_fn runs under %s autocast on %s", self.options.precision, device_type)
        batching = self.options.batching and functions.transform_fn is None
        if self.options.batching and not batching:
            logger.info("transform_fn serves each request whole: batching is off")

        threads = self.threads
        predict_fn = functions.predict_fn

        def predict(data: Any) -> Any:
            threads.before_forward(leading_rows(data))
            return predict_fn(data, model)

        # Off during the warm-up: its full batch must not move the batcher's running mean of rows.
        batcher = Batcher(
            predict,
            enabled=False,
            max_batch_size=self.options.max_batch_size,
            max_batch_delay_s=self.options.max_batch_delay_ms / 1000,
        )
        try:
            self._warm_up(
                WarmUp(
                    functions,
                    model,
                    batcher,
                    max_batch_size=self.options.max_batch_size,
                    batching=batching,
                    accept=self.options.default_accept,
                    timeout_s=self.options.request_timeout_s,
                )
            )
        except BaseException:
            batcher.close(timeout=5.0)
            raise
        batcher.enabled = batching
        batcher.metrics = BatchMetrics()  # the warm-up passes are not requests
        self.functions, self.model, self.batcher = functions, model, batcher
        self.load_seconds = time.perf_counter() - started
        self.server_metrics.model_loaded(self.load_seconds, batcher.metrics.passes, batcher.queued)
        self.ready.set()
        logger.info("model ready in %.2f s (batching %s)", self.load_seconds, "on" if batching else "off")

    def _warm_up(self, plan: WarmUp) -> None:
        if not self.options.warmup:
            logger.info("warm-up off (MODEL_SERVER_WARMUP=0): the first requests pay for it")
            return
        body = read_sample_request(self.options.model_dir)
        if body is None:
            logger.info("no warm-up: the artifact carries no sample request (%s)", SAMPLE_REQUEST_FILE)
            return
        started = time.perf_counter()
        passes = warm_up(plan, body)
        logger.info("warm-up: %d passes in %.2f s", passes, time.perf_counter() - started)

    async def predict(
        self, body: bytes, content_type: str | None, accept: str, executor: ThreadPoolExecutor
    ) -> Prediction:
        """Decode, predict (batched on the model thread), encode. Decoding and encoding run on the
        event loop while they are cheap, else on ``executor``."""
        functions, batcher = self.functions, self.batcher
        if functions is None or batcher is None:
            raise ModelNotReadyError("the model is not loaded yet")
        payload: Any = body
        if media_type_of(content_type) in UTF8_TYPES:  # the toolkit hands text types over decoded
            try:
                payload = body.decode("utf-8")
            except UnicodeDecodeError:
                raise BadRequestError("body is not valid UTF-8") from None
        loop = asyncio.get_running_loop()
        timeout = self.options.request_timeout_s
        if functions.transform_fn is not None:
            work = loop.run_in_executor(executor, self._transform, functions, payload, content_type, accept)
            result = await _within(work, timeout)
            info = None
        else:
            input_fn = functions.input_fn
            inline = self._cost < INLINE_BUDGET_S
            future: asyncio.Future[tuple[Any, BatchInfo]] = loop.create_future()
            started = time.perf_counter()
            if inline:
                batcher.submit(lambda: input_fn(payload, content_type), future, loop)
            else:
                submitted = loop.run_in_executor(
                    executor, batcher.submit, lambda: input_fn(payload, content_type), future, loop
                )
                await _within(submitted, timeout)
            spent = time.perf_counter() - started
            expiry = loop.call_later(timeout, _expire, future, timeout)
            try:
                prediction, info = await future
            finally:
                expiry.cancel()
            started = time.perf_counter()
            if inline:
                result = functions.output_fn(prediction, accept)
            else:
                work = loop.run_in_executor(executor, functions.output_fn, prediction, accept)
                result = await _within(work, timeout)
            spent += time.perf_counter() - started
            self._cost += (spent - self._cost) * _COST_WEIGHT
        out, out_type = result if isinstance(result, tuple) else (result, None)
        data = out.encode() if isinstance(out, str) else bytes(out)
        response_type = str(out_type or _response_type(accept, self.options.default_accept))
        if "json" in response_type:
            _check_json_answer(data)
        return Prediction(data, response_type, info)

    def _transform(
        self, functions: InferenceFunctions, payload: Any, content_type: str | None, accept: str
    ) -> Any:
        with self._transform_lock:
            return functions.transform_fn(self.model, payload, content_type, accept)  # type: ignore[misc]

    def count(self, status: int) -> None:
        """An invocation was answered with ``status`` (on the event loop)."""
        self.server_metrics.count(status)

    def metrics(self) -> dict[str, Any]:
        """This worker's view as JSON (``GET /metrics`` with ``Accept: application/json``)."""
        statuses = {str(k): v for k, v in sorted(self.server_metrics.statuses.items())}
        batching = {**self.batcher.metrics.snapshot(), **self.batcher.depth()} if self.batcher else {}
        return {
            "worker_pid": os.getpid(),
            "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
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


def create_app(options: AppOptions, on_fatal: Callable[[], None] | None = None) -> ServerApp:
    """The ASGI app of one worker; ``on_fatal`` is called if the model cannot be loaded.
    ``app.state.service`` is its ``ModelService``."""
    return ServerApp(ModelService(options), on_fatal)


class ServerApp:
    """The three routes as one ASGI callable (plus the lifespan protocol)."""

    def __init__(self, service: ModelService, on_fatal: Callable[[], None] | None) -> None:
        self.service = service
        self.state = SimpleNamespace(service=service)
        self.options = service.options
        self._on_fatal = on_fatal
        self._executor = ThreadPoolExecutor(max_workers=self.options.threads, thread_name_prefix="predict")
        self._meters = service.server_metrics
        self._reporting: asyncio.Task[None] | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            path, method = scope["path"], scope["method"]
            if path == "/invocations":
                if method == "POST":
                    started = self._meters.request_started()
                    try:
                        await self.invocations(scope, receive, send)
                    finally:
                        self._meters.request_finished(started)
                    return
                allowed = "POST"
            elif path in {"/ping", "/metrics"}:
                if method in ("GET", "HEAD"):
                    await (self.ping(send) if path == "/ping" else self.metrics(scope, send))
                    return
                allowed = "GET, HEAD"
            else:
                await _send_error(send, 404, _REASONS[404], _request_id(scope["headers"]))
                return
            await _send_error(send, 405, _REASONS[405], _request_id(scope["headers"]), {"Allow": allowed})
        elif kind == "lifespan":
            await self.lifespan(receive, send)
        elif kind == "websocket":
            await send({"type": "websocket.close", "code": 1000})

    def _load_in_background(self) -> None:
        try:
            self.service.load()
        except BaseException as exc:
            self.service.load_error = exc
            logger.critical("the model could not be loaded; stopping", exc_info=True)
            if self._on_fatal is not None:
                self._on_fatal()

    async def lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                if not self.service.ready.is_set():  # a supervised worker has loaded it already
                    threading.Thread(target=self._load_in_background, name="model-load", daemon=True).start()
                self._reporting = asyncio.create_task(self._meters.report())
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                self.service.draining = True
                if self._reporting is not None:
                    self._reporting.cancel()
                self._meters.close()
                self._executor.shutdown(wait=False, cancel_futures=True)
                if self.service.batcher is not None:
                    self.service.batcher.close(timeout=5.0)
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def ping(self, send: Send) -> None:
        if self.service.draining:
            await _send_json(send, 503, {"status": "draining"})
        elif not self.service.ready.is_set():
            status = "failed" if self.service.load_error is not None else "loading"
            await _send_json(send, 503, {"status": status}, {"Retry-After": "1"})
        else:
            await _send_json(send, 200, {"status": "healthy"})

    async def metrics(self, scope: Scope, send: Send) -> None:
        """Prometheus text summed over every worker; this worker's JSON on request."""
        accept = next((value for name, value in scope["headers"] if name == b"accept"), b"")
        if wants_json(accept.decode("latin-1")):
            await _send_json(send, 200, self.service.metrics())
            return
        body = self._meters.exposition()
        headers = [
            (b"content-type", PROMETHEUS_CONTENT_TYPE.encode("latin-1")),
            (b"content-length", str(len(body)).encode()),
        ]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    async def invocations(self, scope: Scope, receive: Receive, send: Send) -> None:
        content_type = accept = length = request_id = amzn_id = None
        for name, value in scope["headers"]:
            if name == b"content-type":
                content_type = value.decode("latin-1")
            elif name == b"accept":
                accept = value.decode("latin-1")
            elif name == b"content-length":
                length = value.decode("latin-1")
            elif name == b"x-request-id":
                request_id = value.decode("latin-1")
            elif name == b"x-amzn-requestid":
                amzn_id = value.decode("latin-1")
        request_id = _pick_request_id(request_id, amzn_id)
        try:
            if not self.service.ready.is_set():
                raise ModelNotReadyError("the model is not loaded yet")
            body = await _read_body(receive, length, self.options.max_body_bytes)
            if content_type is not None and "json" in content_type and json_depth_exceeds(body):
                raise BadRequestError(f"the JSON body is nested deeper than {MAX_JSON_DEPTH} levels")
            if accept is None or accepted_media_types(accept) in ([], ["*/*"]):
                accept = self.options.default_accept
            self.service.threads.started()
            try:
                result = await self.service.predict(body, content_type, accept, self._executor)
            finally:
                self.service.threads.finished()
        except Exception as exc:
            await _error(send, self.service, exc, request_id)
            return
        headers = [
            (b"content-type", result.content_type.encode("latin-1")),
            (b"content-length", str(len(result.body)).encode()),
            (b"x-request-id", request_id.encode()),
        ]
        if result.info is not None:
            headers.append((b"x-batch-size", str(result.info.requests).encode()))
            headers.append((b"x-batch-rows", str(result.info.rows).encode()))
        self.service.count(200)
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": result.body})


async def _within(work: Awaitable[Any], timeout: float) -> Any:
    try:
        return await asyncio.wait_for(work, timeout)
    except TimeoutError:
        raise _timeout_error(timeout) from None


def _timeout_error(timeout: float) -> RequestTimeoutError:
    return RequestTimeoutError(f"no prediction within {timeout:g} s (SAGEMAKER_MODEL_SERVER_TIMEOUT)")


def _expire(future: asyncio.Future[Any], timeout: float) -> None:
    if not future.done():
        future.set_exception(_timeout_error(timeout))


def _check_json_answer(data: bytes) -> None:
    """A JSON answer holding NaN or Infinity (what ``json.dumps`` writes for them) is not JSON:
    the model's failure, a 500, never a 200 a client cannot parse. The parse runs only when such a
    word appears in the answer."""
    if b"NaN" not in data and b"Infinity" not in data:
        return
    try:
        json.loads(data, parse_constant=_refuse_constant)
    except ValueError:
        raise ModelOutputError("the model produced a non-finite value (NaN or Infinity)") from None
    except RecursionError:
        return  # deep, yet finite: passed on as the model wrote it


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


async def _read_body(receive: Receive, declared: str | None, limit: int) -> bytes:
    """The body, refused with 413 from Content-Length before reading it, or as soon as it passes."""
    if declared is not None:
        if not declared.isdigit():
            raise BadRequestError("Content-Length is not a number")
        if int(declared) > limit:
            raise PayloadTooLargeError(f"body is {int(declared)} bytes; the limit is {limit}")
    message = await receive()
    body: bytes = message.get("body", b"")
    if not message.get("more_body", False):  # the usual case: one message, no copy
        if len(body) > limit:
            raise PayloadTooLargeError(f"body is over the limit of {limit} bytes")
        return body
    chunks = [body]
    size = len(body)
    while True:
        if size > limit:
            raise PayloadTooLargeError(f"body is over the limit of {limit} bytes")
        if message["type"] == "http.disconnect":
            raise BadRequestError("the client disconnected before sending the whole body")
        if not message.get("more_body", False):
            break
        message = await receive()
        chunk = message.get("body", b"")
        size += len(chunk)
        chunks.append(chunk)
    if size > limit:
        raise PayloadTooLargeError(f"body is over the limit of {limit} bytes")
    return b"".join(chunks)


async def _send_json(send: Send, status: int, document: Any, headers: dict[str, str] | None = None) -> None:
    body = json.dumps(document, separators=(",", ":")).encode()
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    raw.extend(
        (name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in (headers or {}).items()
    )
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})


async def _send_error(
    send: Send, status: int, message: str, request_id: str, headers: dict[str, str] | None = None
) -> None:
    body = {"error": {"code": _CODES.get(status, "error"), "message": message, "request_id": request_id}}
    await _send_json(send, status, body, headers)


async def _error(send: Send, service: ModelService, exc: Exception, request_id: str) -> None:
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
    await _send_json(send, status, body, headers)


def _request_id(headers: list[tuple[bytes, bytes]]) -> str:
    found = {
        name: value.decode("latin-1")
        for name, value in headers
        if name in (b"x-request-id", b"x-amzn-requestid")
    }
    return _pick_request_id(found.get(b"x-request-id"), found.get(b"x-amzn-requestid"))


def _pick_request_id(*candidates: str | None) -> str:
    for value in candidates:
        if value and _REQUEST_ID.fullmatch(value):
            return value
    return f"{_ID_PREFIX}{next(_ids):x}"


def _response_type(accept: str, default: str) -> str:
    for media_type in accepted_media_types(accept):
        if "*" not in media_type:
            return media_type
    return default
