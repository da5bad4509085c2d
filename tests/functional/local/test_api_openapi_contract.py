"""The served OpenAPI document holds: schemathesis generates requests from ``GET /v1/openapi.json``
and sends them over HTTP through the local API gateway to the API Lambda's code, the local
SageMaker Runtime and a real model server. No answer may be a 5xx, and each must match the document
(status, content type, headers, body).

Bounded: ``MAX_EXAMPLES`` per operation and generation mode, no per-example deadline (the first
model call is slow), no shrinking.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.core.result import Err, Ok
from schemathesis.generation.modes import GenerationMode
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from emulator.api_gateway import LocalApiGateway
from emulator.runtime import RuntimeGateway
from handlers.api import endpoint_client
from handlers.api import handler as predict_api

from .conftest import API_KEY, ENDPOINT

# Three features, the third categorical, as the classifier of conftest.py takes them (its code).
SCHEMA = {
    "kind": "tabular",
    "feature_names": ["x", "y", "z"],
    "categories": {"z": ["low", "high"]},
    "max_batch_size": 4,
}
MAX_EXAMPLES = 50  # per operation and mode: well under a minute in all
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]
HEADERS = {"x-api-key": API_KEY}


def configure(monkeypatch: pytest.MonkeyPatch, runtime_url: str, schema: dict[str, Any] | None) -> None:
    """The API Lambda's environment as local mode gives it, read again as at a cold start."""
    monkeypatch.setenv("ENDPOINT_NAME", ENDPOINT)
    monkeypatch.setenv("ENDPOINT_URL_SAGEMAKER_RUNTIME", runtime_url)
    monkeypatch.setenv("MODEL_VERSION", "7")
    monkeypatch.setenv("POWERTOOLS_TRACE_DISABLED", "true")
    monkeypatch.setenv("API_AUTH", "api-key")
    for name in ("MODEL_INPUT_SCHEMA", "MODEL_INPUT_SCHEMA_URI", "MAX_BODY_BYTES", "LAMBDA_TIMEOUT_SECONDS"):
        monkeypatch.delenv(name, raising=False)
    if schema is not None:
        monkeypatch.setenv("MODEL_INPUT_SCHEMA", json.dumps(schema))
    predict_api.reset_configuration()
    endpoint_client.runtime_client.set(None)


@pytest.fixture
def local_api(
    served: RuntimeGateway,
    start_api: Callable[..., LocalApiGateway],
    aws_credentials: None,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[LocalApiGateway]:
    configure(monkeypatch, served.url, SCHEMA)
    yield start_api(predict_api.lambda_handler)
    predict_api.reset_configuration()
    endpoint_client.runtime_client.set(None)


# schemathesis leaves out the operation serving the document itself (fetched and checked above it).
OPERATIONS = {("POST", "/v1/predict"), ("GET", "/v1/health")}


def check_operation(operation: Any, mode: GenerationMode) -> None:
    """Send ``MAX_EXAMPLES`` requests generated for ``operation`` and validate every answer."""

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(
        max_examples=MAX_EXAMPLES,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
        phases=[Phase.explicit, Phase.generate],  # no shrinking: a failure prints its request
    )
    def answered_as_documented(case: Any) -> None:
        response = case.call(headers=HEADERS, timeout=30)
        case.validate_response(response, checks=CHECKS, headers=HEADERS)

    answered_as_documented()


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_every_generated_request_gets_a_documented_answer_and_no_5xx(
    local_api: LocalApiGateway, mode: GenerationMode
) -> None:
    # GIVEN the document the API serves, fetched over HTTP with the stack's API key
    document = schemathesis.openapi.from_url(f"{local_api.url}/v1/openapi.json", headers=HEADERS)
    results = list(document.get_all_operations())
    assert [r.err() for r in results if isinstance(r, Err)] == []  # the document itself is sound
    operations = [r.ok() for r in results if isinstance(r, Ok)]
    assert {(op.method.upper(), op.path) for op in operations} >= OPERATIONS
    # WHEN requests generated from it (fitting it, or not) are sent through the gateways
    # THEN none is a 5xx, and status, media type, headers and body match the document
    for operation in operations:
        check_operation(operation, mode)


def test_the_served_document_describes_this_api_and_its_model(local_api: LocalApiGateway) -> None:
    # WHEN the document is fetched through the local gateway
    reply = requests.get(f"{local_api.url}/v1/openapi.json", headers=HEADERS, timeout=30)
    document = reply.json()
    # THEN it names this stage's URL, the API key, and the model's features with their categories
    assert reply.status_code == 200
    assert document["servers"] == [{"url": local_api.url}]
    assert document["components"]["securitySchemes"]["apiKey"]["name"] == "x-api-key"
    instance = document["components"]["schemas"]["PredictRequest"]["properties"]["instance"]
    by_name = instance["oneOf"][0]
    assert by_name["required"] == ["x", "y", "z"]
    assert by_name["properties"]["z"] == {"type": "string", "enum": ["low", "high"]}
    # AND without the key the gateway refuses it, as every other route
    assert requests.get(f"{local_api.url}/v1/openapi.json", timeout=30).status_code == 403


def test_a_model_without_schema_answers_through_the_same_gateways(
    served: RuntimeGateway,
    start_api: Callable[..., LocalApiGateway],
    aws_credentials: None,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # GIVEN the same platform serving a model that has no input schema
    configure(monkeypatch, served.url, None)
    api = start_api(predict_api.lambda_handler)
    try:
        # WHEN a caller sends the model's own format, then something the model refuses
        ok = requests.post(
            f"{api.url}/v1/predict", json={"instances": [[2, 0, 0]]}, headers=HEADERS, timeout=30
        )
        refused = requests.post(f"{api.url}/v1/predict", json={"rows": "?"}, headers=HEADERS, timeout=30)
        document = requests.get(f"{api.url}/v1/openapi.json", headers=HEADERS, timeout=30).json()
    finally:
        predict_api.reset_configuration()
        endpoint_client.runtime_client.set(None)
    # THEN the model's own answer comes back with the version and request id added
    assert ok.status_code == 200, ok.text
    body = ok.json()
    assert body["predictions"][0]["label"] == 0 and body["model_version"] == "7" and body["request_id"]
    assert ok.headers["X-Model-Version"] == "7"
    # AND the model's refusal is the caller's 400, in the API's error shape
    assert refused.status_code == 400 and refused.json()["error"]["code"] == "invalid_request"
    # AND the document says requests pass through
    assert "PredictResponse" not in document["components"]["schemas"]
