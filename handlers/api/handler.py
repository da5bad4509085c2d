"""The HTTPS prediction API: a Lambda behind an API Gateway REST API (proxy integration).

Routes ``POST /v1/predict``, ``GET /v1/health`` and ``GET /v1/openapi.json`` from a table
(Powertools' event handler costs too much cold start, docs/benchmarks.md); Powertools does the
logging, tracing and metrics. With the served model's input schema, requests are validated against
it; without one they pass through to the model. The contract and the environment: docs/api.md.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cache
from time import perf_counter
from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer, single_metric
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from handlers.api.endpoint_client import ENDPOINT_NAME_ENV, EndpointReply, TimeoutChain, invoke_endpoint
from handlers.api.error_responses import error_response
from handlers.api.errors import MethodNotAllowedError, RouteNotFoundError
from handlers.api.input_contract import deployed_input_schema
from handlers.api.model_answer import (
    MODEL_VERSION_KEY,
    BuiltInAnswer,
    built_in_answer,
    decode_answer,
    with_identity,
)
from handlers.api.openapi import (
    API_AUTH_ENV,
    HEALTH_PATH,
    MODEL_VERSION_HEADER,
    OPENAPI_PATH,
    PREDICT_PATH,
    auth_of,
    openapi_document,
)
from handlers.api.request import (
    DEFAULT_MAX_BODY_BYTES,
    MAX_BODY_BYTES_ENV,
    body_bytes,
    check_media_type,
    endpoint_body,
    header,
    parse_json,
    validated_instances,
)
from handlers.common.contracts import METRICS_NAMESPACE
from handlers.common.errors import ConfigurationError
from handlers.common.input_schema import AnyInputSchema

MAX_CONFIDENCE_SAMPLES = 100  # an EMF metric holds at most 100 values

logger = Logger(service=os.environ.get("POWERTOOLS_SERVICE_NAME", "prediction-api"))
# No library patching: the one AWS call is traced explicitly (call_endpoint); patching botocore costs
# ~16 ms of every cold start (docs/benchmarks.md).
tracer = Tracer(auto_patch=False)
metrics = Metrics(namespace=METRICS_NAMESPACE)


@dataclass(frozen=True)
class ApiSettings:
    endpoint_name: str
    max_body_bytes: int
    model_version: str | None
    timeouts: TimeoutChain
    auth: str


@cache
def settings() -> ApiSettings:
    """Read once per cold start; a bad value is a ConfigurationError (500 on every request)."""
    raw_limit = os.environ.get(MAX_BODY_BYTES_ENV, "") or str(DEFAULT_MAX_BODY_BYTES)
    if not raw_limit.isdigit() or int(raw_limit) < 1:
        raise ConfigurationError(f"{MAX_BODY_BYTES_ENV}={raw_limit!r} is not a positive integer")
    return ApiSettings(
        endpoint_name=os.environ.get(ENDPOINT_NAME_ENV, ""),
        max_body_bytes=int(raw_limit),
        model_version=os.environ.get("MODEL_VERSION") or None,
        timeouts=TimeoutChain.from_env(),
        auth=auth_of(os.environ.get(API_AUTH_ENV)),
    )


@cache
def input_schema() -> AnyInputSchema | None:
    """The served model's input schema; None: it has none, and requests pass through."""
    return deployed_input_schema(os.environ)


def reset_configuration() -> None:
    """Forget the settings and schema read at cold start (tests change the environment)."""
    settings.cache_clear()
    input_schema.cache_clear()


def request_id_of(event: Mapping[str, Any], context: LambdaContext | None) -> str:
    """API Gateway's request id: the one a caller can quote, and the logs' correlation id."""
    request_context = event.get("requestContext")
    if isinstance(request_context, Mapping) and request_context.get("requestId"):
        return str(request_context["requestId"])
    return str(getattr(context, "aws_request_id", None) or "unknown")


@tracer.capture_method(capture_response=False)
def call_endpoint(endpoint_name: str, body: bytes) -> EndpointReply:
    """InvokeEndpoint in its own X-Ray subsegment (an endpoint failure is recorded on it)."""
    return invoke_endpoint(endpoint_name, body)


RouteAnswer = tuple[Any, dict[str, str]]  # the JSON body and any extra headers


# No capture_method on the routes: it would log a traceback for every refused request.
def predict(event: Mapping[str, Any], request_id: str) -> RouteAnswer:
    check_media_type(header(event, "content-type"))
    config, schema = settings(), input_schema()
    if not config.endpoint_name:
        raise ConfigurationError(f"{ENDPOINT_NAME_ENV} is not set")
    body, instances = endpoint_request(body_bytes(event, config.max_body_bytes), schema)

    started = perf_counter()
    reply = call_endpoint(config.endpoint_name, body)
    latency_ms = (perf_counter() - started) * 1000
    answer = decode_answer(reply.payload, reply.content_type)
    built_in = built_in_answer(answer, instances) if instances is not None else None

    metrics.add_metric(name="EndpointLatency", unit=MetricUnit.Milliseconds, value=latency_ms)
    if instances is not None:
        metrics.add_metric(name="Instances", unit=MetricUnit.Count, value=instances)
    tracer.put_annotation(key="model_kind", value=schema.kind if schema is not None else "none")
    logger.info(
        "prediction served",
        extra={
            "instances": instances,
            "endpoint_ms": round(latency_ms, 2),
            "variant": reply.variant,
            "answer": "built-in" if built_in else "passed through",
        },
    )
    # MODEL_VERSION names the deployed version; variant names stay the same across versions.
    version = config.model_version or reply.variant or "unknown"
    if built_in is None:
        passed = with_identity(answer, version, request_id)
        return passed, {MODEL_VERSION_HEADER: _version_in(passed, version)}
    # The container's own word first: during a canary, two versions answer.
    return _built_in_body(built_in, built_in.model_version or version, request_id)


def endpoint_request(raw: bytes, schema: AnyInputSchema | None) -> tuple[bytes, int | None]:
    """The endpoint's body and its instance count: the validated instances with a schema, the
    caller's own JSON (count unknown) without one."""
    document = parse_json(raw)  # a pass-through body must be JSON too
    if schema is None:
        return raw, None
    instances = [schema.to_endpoint(instance) for instance in validated_instances(document, schema)]
    return endpoint_body(instances), len(instances)


def _built_in_body(answer: BuiltInAnswer, version: str, request_id: str) -> RouteAnswer:
    for confidence in answer.confidence[:MAX_CONFIDENCE_SAMPLES]:
        if confidence is not None:
            metrics.add_metric(name="PredictionConfidence", unit=MetricUnit.NoUnit, value=confidence)
    body = {
        "predictions": answer.predictions,
        "confidence": answer.confidence,
        "model_version": version,
        "request_id": request_id,
    }
    return body, {MODEL_VERSION_HEADER: version}


def _version_in(body: Any, default: str) -> str:
    """The version a passed-through answer names (the model's own key, if it has one)."""
    own = body.get(MODEL_VERSION_KEY) if isinstance(body, dict) else None
    return str(own) if isinstance(own, str | int) and not isinstance(own, bool) else default


def health(_: Mapping[str, Any], request_id: str) -> RouteAnswer:
    # Reads the configuration, so a deployment with a bad schema fails its health check.
    config, schema = settings(), input_schema()
    body = {
        "status": "ok",
        "model_kind": schema.kind if schema is not None else None,
        "model_version": config.model_version or "unknown",
        "request_id": request_id,
    }
    return body, {}


def openapi(event: Mapping[str, Any], _: str) -> RouteAnswer:
    """The OpenAPI document of this API as it serves the current model."""
    config, schema = settings(), input_schema()
    return openapi_document(schema, config.auth, server_url(event)), {}


def server_url(event: Mapping[str, Any]) -> str:
    """The base URL the caller used: scheme and host from its headers, the stage (or a custom
    domain's base path) from the request path minus the route."""
    host = header(event, "host") or "localhost"
    scheme = header(event, "x-forwarded-proto") or "https"
    request_context = event.get("requestContext")
    full_path = str(request_context.get("path") or "") if isinstance(request_context, Mapping) else ""
    route = str(event.get("path") or "")
    base = full_path[: -len(route)] if route and full_path.endswith(route) else ""
    return f"{scheme}://{host}{base}"


Route = Callable[[Mapping[str, Any], str], RouteAnswer]
# Path -> method -> route (the paths and methods of handlers.api.openapi.OPERATIONS). A REST API
# proxy event's ``path`` is the resource path, without the stage.
ROUTES: dict[str, dict[str, Route]] = {
    PREDICT_PATH: {"POST": predict},
    HEALTH_PATH: {"GET": health},
    OPENAPI_PATH: {"GET": openapi},
}


def route_for(event: Mapping[str, Any]) -> Route:
    """The route answering ``event``; 404 for an unknown path, 405 (with Allow) for a known one."""
    methods = ROUTES.get(str(event.get("path") or ""))
    if methods is None:
        raise RouteNotFoundError("no such route")
    method = str(event.get("httpMethod") or "").upper()
    if method not in methods:
        raise MethodNotAllowedError(f"{method or 'no method'} is not allowed here", list(methods))
    return methods[method]


def json_response(status: int, body: Any, headers: Mapping[str, str] | None = None) -> dict[str, Any]:
    """A REST API proxy integration answer."""
    return {
        "statusCode": status,
        "multiValueHeaders": {
            "Content-Type": ["application/json"],
            **{k: [v] for k, v in (headers or {}).items()},
        },
        # The model's answer was checked finite when it was read: nothing here can be NaN.
        "body": json.dumps(body, separators=(",", ":"), allow_nan=False),
        "isBase64Encoded": False,
    }


def error_answer(exc: Exception, request_id: str) -> dict[str, Any]:
    status, body, headers = error_response(exc, request_id)
    code = body["error"]["code"]
    if status >= 500:
        # The traceback stays in the log, under the request id the caller got.
        logger.exception("request failed", extra={"status": status, "error_code": code})
    else:
        logger.info("request refused", extra={"status": status, "error_code": code})
    with single_metric(
        name="Errors", unit=MetricUnit.Count, value=1, namespace=METRICS_NAMESPACE
    ) as error_metric:
        error_metric.add_dimension(name="ErrorCode", value=code)
    return json_response(status, body, headers)


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST)
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics(capture_cold_start_metric=True)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    metrics.add_metric(name="Requests", unit=MetricUnit.Count, value=1)
    request_id = request_id_of(event, context)
    try:
        body, headers = route_for(event)(event, request_id)
        return json_response(200, body, headers)
    except Exception as exc:  # noqa: BLE001 - every failure becomes the documented JSON answer
        return error_answer(exc, request_id)
