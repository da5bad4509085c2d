"""A model without an input schema: the request's JSON goes to the endpoint as sent and the model's
JSON comes back as it answered; the limits, the errors and the OpenAPI route still hold."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest
from botocore.response import StreamingBody
from botocore.stub import Stubber

from handlers.api import handler as predict_api
from handlers.api.input_contract import deployed_input_schema
from handlers.common.errors import ConfigurationError

from .conftest import ENDPOINT, TABULAR_SCHEMA, invoke, load_event, predict_event

REQUEST_ID = "c6af9ac6-7b61-11e6-9a41-93e8deadbeef"  # requestContext.requestId of apigw_predict.json


def model_reply(payload: bytes, content_type: str = "application/json") -> dict[str, Any]:
    return {
        "Body": StreamingBody(io.BytesIO(payload), len(payload)),
        "ContentType": content_type,
        "InvokedProductionVariant": "AllTraffic",
    }


def sent(body: bytes) -> dict[str, Any]:
    return {
        "EndpointName": ENDPOINT,
        "ContentType": "application/json",
        "Accept": "application/json",
        "Body": body,
    }


@pytest.fixture
def no_schema(lambda_env: None, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.delenv("MODEL_INPUT_SCHEMA", raising=False)
    predict_api.reset_configuration()
    yield
    predict_api.reset_configuration()


def openapi_event() -> dict[str, Any]:
    event = load_event("apigw_health.json")
    event["path"] = event["resource"] = "/v1/openapi.json"
    event["requestContext"]["path"] = "/live/v1/openapi.json"
    event["requestContext"]["resourcePath"] = "/v1/openapi.json"
    return event


@pytest.mark.usefixtures("no_schema")
def test_the_request_goes_through_as_sent_and_the_answer_comes_back_unchanged(endpoint: Stubber) -> None:
    # GIVEN a model with its own request and answer formats, and no input schema
    body = b'{"inputs": {"age": [61, 42]}, "options": {"top_k": 2}}'
    answer = {"scores": [[0.1, 0.9], [0.7, 0.3]], "labels": ["churn", "stay"]}
    endpoint.add_response("invoke_endpoint", model_reply(json.dumps(answer).encode()), sent(body))

    # WHEN a caller sends its JSON
    reply = invoke(predict_event(body.decode()))

    # THEN the endpoint got those bytes (the Stubber checks), and the caller the model's answer with
    # the version and request id added
    assert reply.status == 200, reply.body
    assert reply.body == {**answer, "model_version": "7", "request_id": REQUEST_ID}
    assert reply.headers["X-Model-Version"] == "7"


@pytest.mark.usefixtures("no_schema")
@pytest.mark.parametrize("answer", [[0.25, 0.75], "positive", 3.5, None, True])
def test_an_answer_that_is_not_an_object_is_returned_as_it_is(endpoint: Stubber, answer: Any) -> None:
    endpoint.add_response("invoke_endpoint", model_reply(json.dumps(answer).encode()))
    reply = invoke(predict_event("[1, 2, 3]"))
    assert reply.status == 200 and reply.body == answer
    assert reply.headers["X-Model-Version"] == "7"


@pytest.mark.usefixtures("no_schema")
def test_the_models_own_keys_win_over_the_added_ones(endpoint: Stubber) -> None:
    endpoint.add_response("invoke_endpoint", model_reply(b'{"model_version": "churn-3", "y": 1}'))
    reply = invoke(predict_event("{}"))
    assert reply.body == {"model_version": "churn-3", "y": 1, "request_id": REQUEST_ID}
    assert reply.headers["X-Model-Version"] == "churn-3"


@pytest.mark.usefixtures("no_schema")
@pytest.mark.parametrize(
    ("payload", "content_type"),
    [
        (b'{"score": NaN}', "application/json"),
        (b'{"score": -Infinity}', "application/json"),
        (b'{"score": 1e999}', "application/json"),
        (b"<html>", "application/json"),
        (b"0.5,0.5", "text/csv"),
    ],
)
def test_an_answer_json_cannot_carry_is_a_502_not_a_crash(
    endpoint: Stubber, payload: bytes, content_type: str
) -> None:
    endpoint.add_response("invoke_endpoint", model_reply(payload, content_type))
    reply = invoke(predict_event('{"x": 1}'))
    assert reply.status == 502 and reply.body["error"]["code"] == "bad_model_response"
    # AND the body itself is strict JSON (no NaN literal reached it) without a trace
    json.loads(reply.raw_body, parse_constant=pytest.fail)
    assert "Traceback" not in reply.raw_body


@pytest.mark.usefixtures("no_schema")
@pytest.mark.parametrize(
    ("original", "status", "code"),
    [(400, 400, "invalid_request"), (422, 400, "invalid_request"), (500, 502, "model_error")],
)
def test_a_model_refusing_the_input_is_the_callers_mistake(
    endpoint: Stubber, original: int, status: int, code: str
) -> None:
    # GIVEN a container that answers the passed-through body with an HTTP error of its own
    endpoint.add_client_error(
        "invoke_endpoint",
        service_error_code="ModelError",
        service_message='Received client error from primary with message "secret internals"',
        http_status_code=424,
        modeled_fields={"OriginalStatusCode": original, "OriginalMessage": "secret internals"},
    )
    # WHEN / THEN its 4xx is the caller's 400, its 5xx the model's 502; its message stays in the log
    reply = invoke(predict_event('{"x": "not what the model takes"}'))
    assert (reply.status, reply.body["error"]["code"]) == (status, code)
    assert "secret" not in reply.raw_body


@pytest.mark.usefixtures("no_schema")
@pytest.mark.parametrize(
    ("body", "content_type", "status"),
    [("{not json", "application/json", 400), ("[NaN]", "application/json", 400), ("{}", "text/plain", 415)],
)
def test_the_body_must_still_be_json(endpoint: Stubber, body: str, content_type: str, status: int) -> None:
    # GIVEN no stubbed answer: the endpoint must not be called
    reply = invoke(predict_event(body, content_type))
    assert reply.status == status


@pytest.mark.usefixtures("no_schema")
def test_the_size_limit_still_applies(endpoint: Stubber, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MAX_BODY_BYTES", "64")
    predict_api.reset_configuration()
    reply = invoke(predict_event(json.dumps({"x": "a" * 100})))
    assert reply.status == 413 and reply.body["error"]["code"] == "payload_too_large"


@pytest.mark.usefixtures("no_schema")
def test_health_says_there_is_no_schema() -> None:
    reply = invoke(load_event("apigw_health.json"))
    assert reply.status == 200 and reply.body["model_kind"] is None


@pytest.mark.usefixtures("no_schema")
def test_the_openapi_document_describes_the_pass_through() -> None:
    # WHEN the document is asked for through the deployed stage
    reply = invoke(openapi_event())
    # THEN it is served for that stage, and its request body is any JSON
    assert reply.status == 200
    assert reply.body["servers"] == [
        {"url": "https://" + load_event("apigw_health.json")["headers"]["Host"] + "/live"}
    ]
    assert reply.body["components"]["schemas"]["PredictRequest"].get("type") is None
    assert "PredictResponse" not in reply.body["components"]["schemas"]


def test_a_scaled_value_past_float_range_is_a_400_not_a_500(use_schema: Any, endpoint: Stubber) -> None:
    # GIVEN a schema that standardises with a small std
    use_schema({**TABULAR_SCHEMA, "stds": [1e-300, 5.0, 15.0]})
    # WHEN a finite value becomes infinite once scaled / THEN the caller is told, nothing is sent
    reply = invoke(predict_event('{"instance": [1e300, 25, 90]}'))
    assert reply.status == 400 and "out of range" in reply.body["error"]["message"]


# --- where the schema comes from --------------------------------------------------------------------


def test_a_withdrawn_schema_object_means_no_schema(aws: dict[str, Any]) -> None:
    # GIVEN the artifacts bucket without serving/input-schema.json (the deployer withdrew it)
    aws["s3"].create_bucket(Bucket="mlp-dev-artifacts")
    env = {"MODEL_INPUT_SCHEMA_URI": "s3://mlp-dev-artifacts/serving/input-schema.json"}
    # WHEN / THEN there is no schema, which is not an error
    assert deployed_input_schema(env, lambda: aws["s3"]) is None
    # AND once it is published, it is the schema
    aws["s3"].put_object(
        Bucket="mlp-dev-artifacts", Key="serving/input-schema.json", Body=json.dumps(TABULAR_SCHEMA)
    )
    schema = deployed_input_schema(env, lambda: aws["s3"])
    assert schema is not None and schema.kind == "tabular"


def test_an_unreadable_or_invalid_schema_is_still_an_error(aws: dict[str, Any]) -> None:
    # GIVEN no bucket at all (a misconfigured URI), then a schema document that does not validate
    with pytest.raises(Exception, match="NoSuchBucket"):
        deployed_input_schema({"MODEL_INPUT_SCHEMA_URI": "s3://missing-bucket/s.json"}, lambda: aws["s3"])
    with pytest.raises(ConfigurationError):
        deployed_input_schema({"MODEL_INPUT_SCHEMA": '{"kind": "tabular"}'})
