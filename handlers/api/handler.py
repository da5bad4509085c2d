"""The HTTPS prediction API: a Lambda behind an API Gateway REST API (proxy integration).

Routes ``POST /v1/predict`` and ``GET /v1/health`` from a table (Powertools' event handler costs
too much cold start, docs/benchmarks.md); Powertools does the logging, tracing and metrics. The
contract and the environment: docs/api.md.
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
from handlers.api.request import (
    DEFAULT_MAX_BODY_BYTES,
    MAX_BODY_BYTES_ENV,
    body_bytes,
    check_media_type,
    header,
    parse_json,
    validated_instances,
)
from handlers.common.contracts import METRICS_NAMESPACE
from handlers.common.errors import ConfigurationError
from handlers.common.input_schema import AnyInputSchema, load_input_schema

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
    )


@cache
def input_schema() -> AnyInputSchema:
    return load_input_schema()


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
def call_endpoint(endpoint_name: str, payload: list[Any]) -> EndpointReply:
    """InvokeEndpoint in its own X-Ray subsegment (an endpoint failure is recorded on it)."""
    return invoke_endpoint(endpoint_name, payload)


# No capture_method on the routes: it would log a traceback for every refused request.
def predict(event: Mapping[str, Any], request_id: str) -> dict[str, Any]:
    check_media_type(header(event, "content-type"))
    config, schema = settings(), input_schema()
    if not config.endpoint_name:
        raise ConfigurationError(f"{ENDPOINT_NAME_ENV} is not set")
    instances = validated_instances(parse_json(body_bytes(event, config.max_body_bytes)), schema)
    payload = [schema.to_endpoint(instance) for instance in instances]

    started = perf_counter()
    reply = call_endpoint(config.endpoint_name, payload)
    latency_ms = (perf_counter() - started) * 1000

    metrics.add_metric(name="EndpointLatency", unit=MetricUnit.Milliseconds, value=latency_ms)
    metrics.add_metric(name="Instances", unit=MetricUnit.Count, value=len(payload))
    for confidence in reply.confidence[:MAX_CONFIDENCE_SAMPLES]:
        if confidence is not None:
            metrics.add_metric(name="PredictionConfidence", unit=MetricUnit.NoUnit, value=confidence)
    tracer.put_annotation(key="model_kind", value=schema.kind)
    logger.info(
        "prediction served",
        extra={"instances": len(payload), "endpoint_ms": round(latency_ms, 2), "variant": reply.variant},
    )
    return {
        "predictions": reply.predictions,
        "confidence": reply.confidence,
        # The container's own word first: during a canary, two versions answer.
        "model_version": reply.model_version or config.model_version or reply.variant or "unknown",
        "request_id": request_id,
    }


def health(_: Mapping[str, Any], request_id: str) -> dict[str, Any]:
    # Reads the configuration, so a deployment with a bad schema fails its health check.
    config, schema = settings(), input_schema()
    return {
        "status": "ok",
        "model_kind": schema.kind,
        "model_version": config.model_version or "unknown",
        "request_id": request_id,
    }


Route = Callable[[Mapping[str, Any], str], dict[str, Any]]
# Path -> method -> route. A REST API proxy event's ``path`` is the resource path, without the stage.
ROUTES: dict[str, dict[str, Route]] = {"/v1/predict": {"POST": predict}, "/v1/health": {"GET": health}}


def route_for(event: Mapping[str, Any]) -> Route:
    """The route answering ``event``; 404 for an unknown path, 405 (with Allow) for a known one."""
    methods = ROUTES.get(str(event.get("path") or ""))
    if methods is None:
        raise RouteNotFoundError("no such route")
    method = str(event.get("httpMethod") or "").upper()
    if method not in methods:
        raise MethodNotAllowedError(f"{method or 'no method'} is not allowed here", list(methods))
    return methods[method]


def json_response(
    status: int, body: Mapping[str, Any], headers: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """A REST API proxy integration answer."""
    return {
        "statusCode": status,
        "multiValueHeaders": {
            "Content-Type": ["application/json"],
            **{k: [v] for k, v in (headers or {}).items()},
        },
        "body": json.dumps(body, separators=(",", ":")),
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
        return json_response(200, route_for(event)(event, request_id))
    except Exception as exc:  # noqa: BLE001 - every failure becomes the documented JSON answer
        return error_answer(exc, request_id)
