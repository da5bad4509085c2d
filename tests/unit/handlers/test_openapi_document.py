"""The OpenAPI document: valid OpenAPI 3.1, its request schema agrees with the API's own validation,
and its tables agree with the routes and the gateway responses the stack deploys."""

from __future__ import annotations

import json
from typing import Any

import pytest
from jsonschema import Draft202012Validator
from openapi_spec_validator import validate

from handlers.api import handler as predict_api
from handlers.api.openapi import GATEWAY_DEFAULTS, GATEWAY_ERRORS, OPERATIONS, openapi_document
from handlers.api.request import validated_instances
from handlers.common.errors import InvalidRequestError
from handlers.common.input_schema import AnyInputSchema, parse_input_schema
from infra.gateway_responses import GATEWAY_RESPONSES

SCHEMAS = {
    "text": {"kind": "text", "max_chars": 20, "max_batch_size": 2},
    "tabular": {"kind": "tabular", "feature_names": ["a", "b"], "categories": {"b": ["x", "y"]}},
    "image": {"kind": "image", "height": 1, "width": 2, "channels": 1, "max_value": 16},
}
# (kind, request body, whether the API takes it)
SAMPLES = [
    ("text", {"instance": {"text": "hello"}}, True),
    ("text", {"instances": [{"text": "a"}, {"text": "b"}]}, True),
    ("text", {"instances": [{"text": "a"}] * 3}, False),
    ("text", {"instance": {"text": 3}}, False),
    ("text", {"instance": {"text": "a"}, "instances": [{"text": "a"}]}, False),
    ("text", {}, False),
    ("tabular", {"instance": {"a": 1.5, "b": "y"}}, True),
    ("tabular", {"instance": [1.5, "x"]}, True),
    ("tabular", {"instance": [1.5, "z"]}, False),
    ("tabular", {"instance": [1.5, 2.0]}, False),
    ("tabular", {"instance": {"a": True, "b": "x"}}, False),
    ("tabular", {"instance": {"a": 1, "b": "x", "c": 2}}, False),
    ("tabular", {"instances": []}, False),
    ("image", {"instance": {"b64": "AAU="}}, True),
    ("image", {"instance": {"b64": "AAU=", "extra": 1}}, False),
    ("image", [1, 2], False),
]


def schema_of(kind: str) -> AnyInputSchema:
    return parse_input_schema(json.dumps(SCHEMAS[kind]))


@pytest.mark.parametrize("kind", [*SCHEMAS, None])
@pytest.mark.parametrize("auth", ["api-key", "iam"])
def test_the_document_is_valid_openapi_3_1(kind: str | None, auth: str) -> None:
    validate(openapi_document(schema_of(kind) if kind else None, auth, "https://api.example/live"))


@pytest.mark.parametrize(("kind", "body", "accepted"), SAMPLES)
def test_the_request_schema_takes_what_the_api_takes(kind: str, body: Any, accepted: bool) -> None:
    # GIVEN the document's request schema and the API's own validation, for one model
    schema = schema_of(kind)
    document = openapi_document(schema, "api-key", "https://api.example/live")
    validator = Draft202012Validator(
        {"$ref": "#/components/schemas/PredictRequest", "components": document["components"]}
    )
    try:
        validated_instances(body, schema)
        api_takes = True
    except InvalidRequestError:
        api_takes = False
    # WHEN / THEN both say the same of the body, and it is what the contract says
    assert (validator.is_valid(body), api_takes) == (accepted, accepted)


def test_the_lambda_routes_exactly_the_documented_operations() -> None:
    routed = {(path, method) for path, methods in predict_api.ROUTES.items() for method in methods}
    assert routed == {(path, method) for path, methods in OPERATIONS.items() for method in methods}


def test_gateway_errors_are_those_the_stack_deploys() -> None:
    deployed: dict[int, set[str]] = {}
    for status, code, _ in GATEWAY_RESPONSES.values():
        if status is not None:
            deployed.setdefault(int(status), set()).add(code)
    documented = {status: set(codes) for status, codes in GATEWAY_ERRORS.items() if status != 502}
    assert documented == deployed
    assert GATEWAY_DEFAULTS == {
        "4XX": GATEWAY_RESPONSES["DEFAULT_4XX"][1],
        "5XX": GATEWAY_RESPONSES["DEFAULT_5XX"][1],
    }
    # 502: a Lambda that failed outright, DEFAULT_5XX with API Gateway's status
    assert GATEWAY_ERRORS[502] == (GATEWAY_RESPONSES["DEFAULT_5XX"][1],)
