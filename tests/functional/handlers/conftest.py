"""Fixtures for the Lambda handlers: real event JSON, a Stubber-backed endpoint, moto S3."""

from __future__ import annotations

import base64
import copy
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from botocore.response import StreamingBody
from botocore.stub import Stubber

from handlers.api import endpoint_client
from handlers.api import handler as predict_api
from handlers.common.aws_clients import botocore_client

EVENTS = Path(__file__).resolve().parents[2] / "events"
ENDPOINT = "mlp-dev-endpoint"

TEXT_SCHEMA = {"kind": "text", "max_chars": 50, "max_batch_size": 4}
TABULAR_SCHEMA = {
    "kind": "tabular",
    "feature_names": ["age", "bmi", "bp"],
    "means": [50.0, 25.0, 90.0],
    "stds": [10.0, 5.0, 15.0],
}
IMAGE_SCHEMA = {"kind": "image", "height": 2, "width": 2, "channels": 1, "max_value": 16}


def load_event(name: str) -> dict[str, Any]:
    return json.loads((EVENTS / name).read_text())


def predict_event(body: str | bytes | None, content_type: str | None = "application/json") -> dict[str, Any]:
    """The real REST proxy event of tests/events/apigw_predict.json with another body."""
    event = load_event("apigw_predict.json")
    for headers in (event["headers"], event["multiValueHeaders"]):
        headers.pop("Content-Type")
    if content_type is not None:
        event["headers"]["Content-Type"] = content_type
        event["multiValueHeaders"]["Content-Type"] = [content_type]
    if isinstance(body, bytes):
        event["body"], event["isBase64Encoded"] = base64.b64encode(body).decode(), True
    else:
        event["body"], event["isBase64Encoded"] = body, False
    return event


class FakeContext:
    function_name = "mlp-dev-predict-api"
    memory_limit_in_mb = 256
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:mlp-dev-predict-api"
    aws_request_id = "0b9d3f0e-5c1a-4d55-9a9c-1f2e3d4c5b6a"


@dataclass
class Answer:
    status: int
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)
    raw_body: str = ""


def invoke(event: dict[str, Any]) -> Answer:
    response = predict_api.lambda_handler(copy.deepcopy(event), FakeContext())
    headers = {k: v[0] for k, v in (response.get("multiValueHeaders") or {}).items()}
    headers.update(response.get("headers") or {})
    return Answer(response["statusCode"], json.loads(response["body"]), headers, response["body"])


def endpoint_reply(predictions: list[Any], confidence: list[float] | None = None) -> dict[str, Any]:
    """An InvokeEndpoint response in the container's contract."""
    document: dict[str, Any] = {"predictions": predictions}
    if confidence is not None:
        document["confidence"] = confidence
    return raw_reply(document)


def raw_reply(document: Any) -> dict[str, Any]:
    payload = json.dumps(document).encode()
    return {
        "Body": StreamingBody(io.BytesIO(payload), len(payload)),
        "ContentType": "application/json",
        "InvokedProductionVariant": "AllTraffic",
    }


def expected_call(instances: list[Any]) -> dict[str, Any]:
    """The exact InvokeEndpoint parameters for ``instances`` (Stubber checks every one)."""
    return {
        "EndpointName": ENDPOINT,
        "ContentType": "application/json",
        "Accept": "application/json",
        "Body": json.dumps({"instances": instances}).encode(),
    }


@pytest.fixture
def lambda_env(aws_credentials: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ENDPOINT_NAME", ENDPOINT)
    monkeypatch.setenv("MODEL_VERSION", "7")
    monkeypatch.setenv("POWERTOOLS_TRACE_DISABLED", "true")
    monkeypatch.delenv("MODEL_INPUT_SCHEMA_URI", raising=False)
    monkeypatch.delenv("MAX_BODY_BYTES", raising=False)
    monkeypatch.delenv("LAMBDA_TIMEOUT_SECONDS", raising=False)


@pytest.fixture
def use_schema(lambda_env: None, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """Call with a schema dict; the API reads it as at a cold start."""

    def apply(schema: dict[str, Any]) -> None:
        monkeypatch.setenv("MODEL_INPUT_SCHEMA", json.dumps(schema))
        predict_api.reset_configuration()

    yield apply
    predict_api.reset_configuration()


@pytest.fixture
def endpoint(lambda_env: None) -> Iterator[Stubber]:
    """A real sagemaker-runtime client with a Stubber: every call must be queued, and is checked."""
    client = botocore_client("sagemaker-runtime", endpoint_client.TimeoutChain().botocore_config())
    with Stubber(client) as stubber:
        endpoint_client.runtime_client.set(client)
        yield stubber
        stubber.assert_no_pending_responses()
    endpoint_client.runtime_client.set(None)
