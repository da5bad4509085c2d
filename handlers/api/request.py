"""The prediction request: raw API Gateway body -> validated instances, each check naming its error.

Order of checks, cheapest first and nothing parsed before it is known to be small and JSON:
media type (415) -> size (413) -> base64 / UTF-8 (400) -> JSON (400) -> the schema's model (400).
"""

from __future__ import annotations

import base64
import binascii
import json
import math
from collections.abc import Mapping
from functools import cache
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model, model_validator

from handlers.api.errors import PayloadTooLargeError, UnsupportedMediaTypeError
from handlers.common.errors import FieldProblem, InvalidRequestError
from handlers.common.input_schema import AnyInputSchema, field_problems, instance_model_for

MAX_BODY_BYTES_ENV = "MAX_BODY_BYTES"  # the body limit, set by the Pulumi program from api.maxBodyBytes
DEFAULT_MAX_BODY_BYTES = 1_048_576

JSON_MEDIA_TYPE = "application/json"


def header(event: Mapping[str, Any], name: str) -> str | None:
    """A header of a REST API proxy event, whatever its case (clients and proxies vary)."""
    wanted = name.lower()
    for key, value in (event.get("headers") or {}).items():
        if key.lower() == wanted and isinstance(value, str):
            return value
    for key, values in (event.get("multiValueHeaders") or {}).items():
        if key.lower() == wanted and values:
            return str(values[0])
    return None


def check_media_type(content_type: str | None) -> None:
    media_type, _, parameters = (content_type or "").partition(";")
    if media_type.strip().lower() != JSON_MEDIA_TYPE:
        raise UnsupportedMediaTypeError(f"Content-Type must be {JSON_MEDIA_TYPE}")
    for parameter in parameters.split(";"):
        key, _, value = parameter.partition("=")
        if key.strip().lower() == "charset" and value.strip().strip('"').lower() not in {"utf-8", "utf8"}:
            raise UnsupportedMediaTypeError("only the UTF-8 charset is accepted")


def body_bytes(event: Mapping[str, Any], max_bytes: int) -> bytes:
    """The body as bytes, refused above ``max_bytes`` before decoding anything large."""
    body = event.get("body")
    if body is None or body == "":
        raise InvalidRequestError("the request body is empty")
    if not isinstance(body, str):
        raise InvalidRequestError("the request body is not text")
    is_base64 = bool(event.get("isBase64Encoded"))
    # A base64 text is 4/3 of its bytes: either bound is known before decoding.
    encoded_limit = 4 * math.ceil(max_bytes / 3) if is_base64 else 4 * max_bytes
    if len(body) > encoded_limit:
        raise PayloadTooLargeError(f"the body is larger than {max_bytes} bytes")
    try:
        raw = base64.b64decode(body, validate=True) if is_base64 else body.encode("utf-8")
    except (binascii.Error, ValueError, UnicodeEncodeError):
        raise InvalidRequestError("the body is not valid base64 or UTF-8") from None
    if len(raw) > max_bytes:
        raise PayloadTooLargeError(f"the body is larger than {max_bytes} bytes")
    return raw


def parse_json(raw: bytes) -> Any:
    """Strict JSON: UTF-8 only, no NaN / Infinity (nor numbers that overflow to them)."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidRequestError("the body is not valid UTF-8") from None
    if not text.strip():
        raise InvalidRequestError("the request body is empty")
    try:
        return json.loads(text, parse_constant=_reject_constant, parse_float=_finite_float)
    except RecursionError:
        raise InvalidRequestError("the JSON body is nested too deeply") from None
    except ValueError as exc:  # JSONDecodeError, NaN/Infinity, huge integers
        raise InvalidRequestError(f"the body is not valid JSON: {_first_line(exc)}") from None


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a valid number")


def _finite_float(literal: str) -> float:
    value = float(literal)
    if not math.isfinite(value):
        raise ValueError("a number is out of range")
    return value


def _first_line(exc: Exception) -> str:
    return str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__


@cache
def request_model_for(schema: AnyInputSchema) -> type[BaseModel]:
    """``{"instance": {...}}`` or ``{"instances": [...]}``, with the schema's instance model."""
    instance_model = instance_model_for(schema)

    def exactly_one(cls: type[BaseModel], data: Any) -> Any:
        if isinstance(data, dict) and ("instance" in data) == ("instances" in data):
            raise ValueError('give exactly one of "instance" and "instances"')
        return data

    validators: dict[str, Any] = {"exactly_one": model_validator(mode="before")(exactly_one)}
    fields: dict[str, Any] = {
        "instance": (instance_model | None, None),
        "instances": (
            list[instance_model] | None,  # type: ignore[valid-type]
            Field(default=None, min_length=1, max_length=schema.max_batch_size),
        ),
    }
    return create_model(
        "PredictRequest", __config__=ConfigDict(extra="forbid"), __validators__=validators, **fields
    )


def validated_instances(document: Any, schema: AnyInputSchema) -> list[BaseModel]:
    """The instances of a request, validated; field-level details when they are not."""
    try:
        request = request_model_for(schema).model_validate(document)
    except ValidationError as exc:
        raise InvalidRequestError(
            "the request does not match the model's input", field_problems(exc)
        ) from None
    instances: list[BaseModel] | None = request.instances  # type: ignore[attr-defined]
    single: BaseModel | None = request.instance  # type: ignore[attr-defined]
    if instances is not None:
        return instances
    if single is None:
        raise InvalidRequestError(
            "the request holds no instance", [FieldProblem("instance", "must not be null")]
        )
    return [single]


def endpoint_body(instances: list[Any]) -> bytes:
    """``{"instances": [...]}`` for the endpoint; a value that scaling took past float range is the
    caller's (a 400), as JSON has no Infinity to send."""
    try:
        return json.dumps({"instances": instances}, allow_nan=False).encode()
    except ValueError:
        raise InvalidRequestError("an instance holds a value out of range once scaled") from None
