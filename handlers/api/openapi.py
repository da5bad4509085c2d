"""The prediction API's OpenAPI 3.1 document, generated from the served model's input schema.

One table of operations (``OPERATIONS``) is the API: the Lambda routes it (``handler.ROUTES``), the
Pulumi program declares a REST API resource for each path (``infra/api.py``) and the local API
gateway serves the same paths. Every error status is listed with the codes its JSON body can carry:
the Lambda's from ``error_responses.HTTP_ERRORS``, API Gateway's own from ``GATEWAY_ERRORS`` (a test
holds it to ``infra/gateway_responses.py``). Standard library only: it runs at a request, not at a
cold start.
"""

from __future__ import annotations

import math
from typing import Any

from handlers.api.error_responses import HTTP_ERRORS, INTERNAL
from handlers.api.errors import EndpointThrottledError, MethodNotAllowedError, RouteNotFoundError
from handlers.common.errors import ConfigurationError
from handlers.common.input_schema import (
    AnyInputSchema,
    ImageInputSchema,
    TabularInputSchema,
    TextInputSchema,
)

OPENAPI_VERSION = "3.1.0"
PREDICT_PATH, HEALTH_PATH, OPENAPI_PATH = "/v1/predict", "/v1/health", "/v1/openapi.json"
# Path -> the methods it answers; every other method or path is the Lambda's 404/405.
OPERATIONS: dict[str, tuple[str, ...]] = {
    PREDICT_PATH: ("POST",),
    HEALTH_PATH: ("GET",),
    OPENAPI_PATH: ("GET",),
}
API_AUTH_ENV = "API_AUTH"  # the stack's api.auth, set by the Pulumi program: "api-key" or "iam"
API_KEY_AUTH, IAM_AUTH = "api-key", "iam"
MODEL_VERSION_HEADER = "X-Model-Version"

# What API Gateway answers itself (infra/gateway_responses.py), by status: a request that never
# reaches the Lambda. 502 is a Lambda that failed outright (DEFAULT_5XX keeps the status).
GATEWAY_ERRORS: dict[int, tuple[str, ...]] = {
    400: ("invalid_request",),
    403: ("forbidden",),
    413: ("payload_too_large",),
    415: ("unsupported_media_type",),
    429: ("throttled", "quota_exceeded"),
    502: ("internal_error",),
    504: ("gateway_timeout",),
}
GATEWAY_DEFAULTS = {"4XX": "request_refused", "5XX": "internal_error"}
RETRY_AFTER_STATUSES = (429, 503)  # 429: THROTTLED only; 503: always
# The Lambda's errors that a declared route cannot meet (they answer other paths and methods).
_ROUTING_ERRORS = (RouteNotFoundError, MethodNotAllowedError)


def resource_paths() -> tuple[str, ...]:
    """Every path of ``OPERATIONS`` and each of its ancestors, ``/`` first (the REST API's resources)."""
    paths = {"/"}
    for path in OPERATIONS:
        parts = path.strip("/").split("/")
        paths.update("/" + "/".join(parts[: depth + 1]) for depth in range(len(parts)))
    return tuple(sorted(paths, key=lambda p: (p.count("/") if p != "/" else 0, p)))


def auth_of(value: str | None) -> str:
    """The stack's auth from ``API_AUTH`` (unset: API key, the stack default)."""
    auth = (value or API_KEY_AUTH).strip()
    if auth not in (API_KEY_AUTH, IAM_AUTH):
        raise ConfigurationError(f"{API_AUTH_ENV}={auth!r} is neither {API_KEY_AUTH!r} nor {IAM_AUTH!r}")
    return auth


def openapi_document(schema: AnyInputSchema | None, auth: str, server_url: str) -> dict[str, Any]:
    """The OpenAPI document of the API serving a model with ``schema`` (None: requests pass through).

    Parameters
    ----------
    schema: the served model's input schema, or None.
    auth: ``"api-key"`` or ``"iam"``, the stack's authorization of every method.
    server_url: the API's base URL, stage included.
    """
    scheme = "apiKey" if auth == API_KEY_AUTH else "sigv4"
    return {
        "openapi": OPENAPI_VERSION,
        "info": {
            "title": "Prediction API",
            "version": "1",
            "description": _describe(schema),
        },
        "servers": [{"url": server_url}],
        "security": [{scheme: []}],
        "paths": {
            PREDICT_PATH: {"post": _predict_operation(schema)},
            HEALTH_PATH: {"get": _get_operation("health", "The API's configuration", "Health")},
            OPENAPI_PATH: {"get": _get_operation("openapi", "This document", "OpenApiDocument")},
        },
        "components": {
            "securitySchemes": {scheme: _security_scheme(auth)},
            "schemas": _schemas(schema),
        },
    }


def _describe(schema: AnyInputSchema | None) -> str:
    if schema is None:
        return "The served model has no input schema: POST /v1/predict passes its JSON body through."
    return f"The served model takes {schema.kind} instances, checked against its input schema."


def _security_scheme(auth: str) -> dict[str, Any]:
    if auth == API_KEY_AUTH:
        return {"type": "apiKey", "in": "header", "name": "x-api-key"}
    # API Gateway's own description of SigV4 (its OpenAPI export names it the same way).
    return {
        "type": "apiKey",
        "in": "header",
        "name": "Authorization",
        "x-amazon-apigateway-authtype": "awsSigv4",
    }


# --- operations -----------------------------------------------------------------------------------


def _predict_operation(schema: AnyInputSchema | None) -> dict[str, Any]:
    ok: dict[str, Any] = {"$ref": "#/components/schemas/ModelAnswer"}
    if schema is not None:
        ok = {"anyOf": [{"$ref": "#/components/schemas/PredictResponse"}, ok]}
    return {
        "operationId": "predict",
        "summary": "Predictions from the served model",
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/PredictRequest"}}},
        },
        "responses": {
            "200": {
                "description": "The model's answer",
                "headers": {MODEL_VERSION_HEADER: {"schema": {"type": "string"}, "required": True}},
                "content": {"application/json": {"schema": ok}},
            },
            **_error_responses(_lambda_errors(predicts=True), gateway_validates=True),
        },
    }


def _get_operation(operation_id: str, summary: str, body: str) -> dict[str, Any]:
    return {
        "operationId": operation_id,
        "summary": summary,
        "responses": {
            "200": {
                "description": summary,
                "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{body}"}}},
            },
            **_error_responses(_lambda_errors(predicts=False), gateway_validates=False),
        },
    }


def _lambda_errors(*, predicts: bool) -> dict[int, set[str]]:
    """Status -> codes the Lambda answers on a declared route: every error of ``HTTP_ERRORS`` but
    routing's for predict; only the configuration's 500 for the GET routes."""
    by_status: dict[int, set[str]] = {INTERNAL[0]: {INTERNAL[1]}}
    for error_class, status, code in HTTP_ERRORS if predicts else ():
        if not issubclass(error_class, _ROUTING_ERRORS):
            by_status.setdefault(status, set()).add(code)
    return by_status


def _error_responses(lambda_errors: dict[int, set[str]], *, gateway_validates: bool) -> dict[str, Any]:
    by_status = {status: set(codes) for status, codes in lambda_errors.items()}
    for status, codes in GATEWAY_ERRORS.items():
        if status == 400 and not gateway_validates:  # noqa: PLR2004 - only predict has a request model
            continue
        by_status.setdefault(status, set()).update(codes)
    responses = {
        str(status): _error_response(status, sorted(codes)) for status, codes in sorted(by_status.items())
    }
    for status_range, code in GATEWAY_DEFAULTS.items():
        responses[status_range] = _error_response(None, [code])
    return responses


def _error_response(status: int | None, codes: list[str]) -> dict[str, Any]:
    response: dict[str, Any] = {
        "description": ", ".join(codes),
        "content": {
            "application/json": {
                "schema": {
                    "allOf": [
                        {"$ref": "#/components/schemas/Error"},
                        {"properties": {"error": {"properties": {"code": {"enum": codes}}}}},
                    ]
                }
            }
        },
    }
    if status in RETRY_AFTER_STATUSES:
        response["headers"] = {
            "Retry-After": {"schema": {"type": "string"}, "required": _always_retry_after(status)}
        }
    return response


def _always_retry_after(status: int | None) -> bool:
    return any(issubclass(c, EndpointThrottledError) and s == status for c, s, _ in HTTP_ERRORS)


# --- schemas ----------------------------------------------------------------------------------------


def _schemas(schema: AnyInputSchema | None) -> dict[str, Any]:
    schemas: dict[str, Any] = {
        "PredictRequest": predict_request_schema(schema),
        "ModelAnswer": {
            "description": "The model's JSON unchanged; an object gets model_version and request_id "
            "when it lacks them",
            "anyOf": [
                {"type": "object", "required": ["model_version", "request_id"]},
                {"type": ["array", "string", "number", "boolean", "null"]},
            ],
        },
        "Health": _health_schema(schema),
        "OpenApiDocument": {"type": "object", "required": ["openapi", "info", "paths"]},
        "Error": _error_schema(),
    }
    if schema is not None:
        schemas["PredictResponse"] = _predict_response_schema(schema)
    return schemas


def predict_request_schema(schema: AnyInputSchema | None) -> dict[str, Any]:
    """The JSON Schema (2020-12) of a ``POST /v1/predict`` body: exactly one of ``instance`` and
    ``instances`` with the schema's instances, or any JSON value when the model has no schema."""
    if schema is None:
        return {"description": "Any JSON value: it is passed to the model as it is"}
    instance = instance_schema(schema)
    return {
        "type": "object",
        "properties": {
            "instance": instance,
            "instances": {
                "type": "array",
                "items": instance,
                "minItems": 1,
                "maxItems": schema.max_batch_size,
            },
        },
        "additionalProperties": False,
        "minProperties": 1,
        "maxProperties": 1,
    }


def instance_schema(schema: AnyInputSchema) -> dict[str, Any]:
    """One instance of ``schema`` as JSON Schema (2020-12)."""
    if isinstance(schema, TextInputSchema):
        return _text_instance(schema)
    if isinstance(schema, TabularInputSchema):
        return _tabular_instance(schema)
    if isinstance(schema, ImageInputSchema):
        return _image_instance(schema)
    raise ConfigurationError(f"no OpenAPI description for input kind {schema.kind!r}")


def _text_instance(schema: TextInputSchema) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {
            "text": {
                "type": "string",
                "minLength": 1,
                # Not maxLength: the limit holds after whitespace runs are collapsed.
                "description": f"At most {schema.max_chars} characters once normalised "
                "(NFC, trimmed, whitespace runs collapsed); not only whitespace",
            }
        },
        "required": ["text"],
        "additionalProperties": False,
    }


def _tabular_instance(schema: TabularInputSchema) -> dict[str, Any]:
    vocabularies = dict(schema.categories)
    features = [
        {"type": "string", "enum": list(vocabularies[name])} if name in vocabularies else {"type": "number"}
        for name in schema.feature_names
    ]
    count = len(features)
    by_name = {
        "type": "object",
        "properties": dict(zip(schema.feature_names, features, strict=True)),
        "required": list(schema.feature_names),
        "additionalProperties": False,
    }
    in_order = {
        "type": "array",
        "prefixItems": features,
        "items": False,
        "minItems": count,
        "maxItems": count,
    }
    return {"oneOf": [by_name, in_order]}


def _image_instance(schema: ImageInputSchema) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {
            "b64": {
                "type": "string",
                "contentEncoding": "base64",
                "maxLength": 4 * math.ceil(schema.max_decoded_bytes / 3),
                "description": f"{schema.height}x{schema.width}x{schema.channels} uint8 pixels, row-major, "
                f"channels last, each at most {schema.max_value}",
            }
        },
        "required": ["b64"],
        "additionalProperties": False,
    }


def _predict_response_schema(schema: AnyInputSchema) -> dict[str, Any]:
    batch = {"minItems": 1, "maxItems": schema.max_batch_size}
    return {
        "type": "object",
        "properties": {
            "predictions": {"type": "array", **batch},
            "confidence": {"type": "array", "items": {"type": ["number", "null"]}, **batch},
            "model_version": {"type": "string"},
            "request_id": {"type": "string"},
        },
        "required": ["predictions", "confidence", "model_version", "request_id"],
        "additionalProperties": False,
    }


def _health_schema(schema: AnyInputSchema | None) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {
            "status": {"const": "ok"},
            "model_kind": {"type": "null"} if schema is None else {"const": schema.kind},
            "model_version": {"type": "string"},
            "request_id": {"type": "string"},
        },
        "required": ["status", "model_kind", "model_version", "request_id"],
        "additionalProperties": False,
    }


def _error_schema() -> dict[str, Any]:
    problem = {
        "type": "object",
        "properties": {"field": {"type": "string"}, "problem": {"type": "string"}},
        "required": ["field", "problem"],
        "additionalProperties": False,
    }
    error = {
        "type": "object",
        "properties": {
            "code": {"type": "string"},
            "message": {"type": "string"},
            "request_id": {"type": "string"},
            "details": {"type": "array", "items": problem},
        },
        "required": ["code", "message", "request_id", "details"],
        "additionalProperties": False,
    }
    return {
        "type": "object",
        "properties": {"error": error},
        "required": ["error"],
        "additionalProperties": False,
    }
