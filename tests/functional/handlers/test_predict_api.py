"""The prediction API end to end: real API Gateway events in, the error contract out."""

from __future__ import annotations

import base64
import io
import json
from typing import Any

import pytest
from botocore.exceptions import ConnectTimeoutError, ReadTimeoutError
from botocore.response import StreamingBody
from botocore.stub import Stubber

from handlers.api import endpoint_client
from handlers.common.aws_clients import botocore_client

from .conftest import (
    IMAGE_SCHEMA,
    TABULAR_SCHEMA,
    TEXT_SCHEMA,
    FakeContext,
    endpoint_reply,
    expected_call,
    invoke,
    load_event,
    predict_event,
    raw_reply,
)

REQUEST_ID = "c6af9ac6-7b61-11e6-9a41-93e8deadbeef"  # requestContext.requestId of apigw_predict.json
HEALTH_REQUEST_ID = "d2f8a0b1-7b61-11e6-8c3d-1b2c3d4e5f60"


def _body(payload: bytes) -> StreamingBody:
    return StreamingBody(io.BytesIO(payload), len(payload))


def assert_error(answer: Any, status: int, code: str, request_id: str = REQUEST_ID) -> None:
    assert answer.status == status, answer.body
    assert answer.body["error"]["code"] == code
    assert answer.body["error"]["request_id"] == request_id
    assert set(answer.body["error"]) == {"code", "message", "request_id", "details"}
    assert "Traceback" not in answer.raw_body and 'File "' not in answer.raw_body


# --- happy paths, one per model kind ----------------------------------------------------------------


def test_text_batch_is_normalised_before_the_endpoint_and_answered(
    use_schema: Any, endpoint: Stubber
) -> None:
    # GIVEN a text model and the real API Gateway event, whose texts carry extra whitespace
    use_schema(TEXT_SCHEMA)
    endpoint.add_response(
        "invoke_endpoint",
        endpoint_reply(["spam", "ham"], [0.97, 0.88]),
        expected_call(["Win a FREE cruise now!", "See you at lunch tomorrow"]),
    )
    # WHEN the handler runs
    answer = invoke(load_event("apigw_predict.json"))
    # THEN the endpoint got normalised texts and the caller the predictions and their provenance
    assert answer.status == 200, answer.body
    assert answer.body == {
        "predictions": ["spam", "ham"],
        "confidence": [0.97, 0.88],
        "model_version": "7",
        "request_id": REQUEST_ID,
    }


@pytest.mark.parametrize(
    "instance",
    [{"age": 60, "bmi": 30.0, "bp": 105.0}, [60, 30.0, 105.0]],
    ids=["keyed-by-name", "ordered-list"],
)
def test_tabular_instance_is_scaled_with_training_statistics(
    use_schema: Any, endpoint: Stubber, instance: Any
) -> None:
    # GIVEN a tabular model whose schema holds the training means and stds
    use_schema(TABULAR_SCHEMA)
    endpoint.add_response("invoke_endpoint", endpoint_reply([151.2]), expected_call([[1.0, 1.0, 1.0]]))
    # WHEN one instance is sent, by feature name or in schema order
    answer = invoke(predict_event(json.dumps({"instance": instance})))
    # THEN the endpoint received (x - mean) / std and a regressor's answer has no confidence
    assert answer.status == 200, answer.body
    assert answer.body["predictions"] == [151.2]
    assert answer.body["confidence"] == [None]


def test_image_pixels_are_decoded_and_sent_as_values(use_schema: Any, endpoint: Stubber) -> None:
    # GIVEN a 2x2 grey image model (values 0..16)
    use_schema(IMAGE_SCHEMA)
    endpoint.add_response("invoke_endpoint", endpoint_reply(["3"], [0.9]), expected_call([[0, 5, 16, 9]]))
    # WHEN the pixels come base64-encoded
    b64 = base64.b64encode(bytes([0, 5, 16, 9])).decode()
    answer = invoke(predict_event(json.dumps({"instances": [{"b64": b64}]})))
    # THEN the endpoint got the pixel values
    assert answer.status == 200, answer.body
    assert answer.body["predictions"] == ["3"]


def test_the_serving_handlers_per_item_reply_shape_is_understood(use_schema: Any, endpoint: Stubber) -> None:
    # GIVEN an endpoint that answers as handlers/serving/inference.py does (label + confidence per item)
    use_schema(TEXT_SCHEMA)
    reply = raw_reply({"model": "text-bow", "predictions": [{"label": "spam", "confidence": 0.7}]})
    endpoint.add_response("invoke_endpoint", reply, expected_call(["hello"]))
    # WHEN a prediction is asked for
    answer = invoke(predict_event(json.dumps({"instance": {"text": "hello"}})))
    # THEN labels and confidences are split into the API's two lists
    assert answer.status == 200, answer.body
    assert answer.body["predictions"] == ["spam"]
    assert answer.body["confidence"] == [0.7]


def test_health_reports_the_model_kind(use_schema: Any) -> None:
    # GIVEN a configured API
    use_schema(TABULAR_SCHEMA)
    # WHEN GET /v1/health arrives (real event, no body, no Content-Type)
    answer = invoke(load_event("apigw_health.json"))
    # THEN it is healthy and says which contract it serves
    assert answer.status == 200
    assert answer.body["status"] == "ok"
    assert answer.body["model_kind"] == "tabular"


@pytest.mark.parametrize("name", ["Content-Type", "content-type", "CONTENT-TYPE"])
def test_content_type_header_is_matched_in_any_case(use_schema: Any, endpoint: Stubber, name: str) -> None:
    # GIVEN a request whose Content-Type header is spelled in some case, with a UTF-8 charset
    use_schema(TEXT_SCHEMA)
    endpoint.add_response("invoke_endpoint", endpoint_reply(["ham"], [0.6]), expected_call(["hi"]))
    event = predict_event(json.dumps({"instance": {"text": "hi"}}), content_type=None)
    event["headers"][name] = "application/json; charset=UTF-8"
    # WHEN it is handled
    answer = invoke(event)
    # THEN it is accepted
    assert answer.status == 200, answer.body


def test_base64_encoded_json_body_is_accepted(use_schema: Any, endpoint: Stubber) -> None:
    # GIVEN API Gateway delivering the JSON body base64-encoded (binary media types configured)
    use_schema(TEXT_SCHEMA)
    endpoint.add_response("invoke_endpoint", endpoint_reply(["ham"], [0.6]), expected_call(["hi"]))
    # WHEN it is handled
    answer = invoke(predict_event(json.dumps({"instance": {"text": "hi"}}).encode()))
    # THEN it is decoded and answered
    assert answer.status == 200, answer.body


# --- client mistakes: 400 / 404 / 405 / 413 / 415 -------------------------------------------------


@pytest.mark.parametrize(
    ("schema", "body", "field"),
    [
        (TEXT_SCHEMA, '{"instances": [{"text": 5}]}', "instances[0].text"),
        (TEXT_SCHEMA, '{"instances": [{}]}', "instances[0].text"),
        (TEXT_SCHEMA, '{"instance": {"text": "a", "lang": "en"}}', "instance.lang"),
        (TEXT_SCHEMA, '{"instance": {"text": "   \\n "}}', "instance.text"),
        (TEXT_SCHEMA, json.dumps({"instance": {"text": "x" * 51}}), "instance.text"),
        (TEXT_SCHEMA, '{"instances": []}', "instances"),
        (TEXT_SCHEMA, json.dumps({"instances": [{"text": "a"}] * 5}), "instances"),
        (TEXT_SCHEMA, '{"instance": {"text": "a"}, "instances": [{"text": "b"}]}', "body"),
        (TEXT_SCHEMA, '["just", "a", "list"]', "body"),
        (TABULAR_SCHEMA, '{"instance": [1, 2]}', "instance"),
        (TABULAR_SCHEMA, '{"instance": {"age": 1, "bmi": 2}}', "instance.bp"),
        (TABULAR_SCHEMA, '{"instance": {"age": "1", "bmi": 2, "bp": 3}}', "instance.age"),
        (TABULAR_SCHEMA, '{"instance": {"age": true, "bmi": 2, "bp": 3}}', "instance.age"),
        (IMAGE_SCHEMA, '{"instance": {"b64": "AAEC"}}', "instance.b64"),
        (IMAGE_SCHEMA, '{"instance": {"b64": "not base64!"}}', "instance.b64"),
        (
            IMAGE_SCHEMA,
            json.dumps({"instance": {"b64": base64.b64encode(bytes([0, 0, 0, 200])).decode()}}),
            "instance.b64",
        ),
    ],  # fmt: skip
    ids=[
        "wrong-type",
        "missing-field",
        "extra-field",
        "blank-text",
        "too-long",
        "empty-batch",
        "batch-too-big",
        "both-forms",
        "not-an-object",
        "wrong-feature-count",
        "missing-feature",
        "string-number",
        "bool-number",
        "wrong-image-size",
        "bad-base64",
        "pixel-over-max",
    ],  # fmt: skip
)
def test_invalid_instances_get_400_with_the_field_named(
    use_schema: Any, endpoint: Stubber, schema: dict[str, Any], body: str, field: str
) -> None:
    # GIVEN a request that breaks the model's input contract
    use_schema(schema)
    # WHEN it is handled (the endpoint is never called: the Stubber has nothing queued)
    answer = invoke(predict_event(body))
    # THEN it is a 400 whose details name the offending field
    assert_error(answer, 400, "invalid_request")
    assert field in [d["field"] for d in answer.body["error"]["details"]], answer.body


@pytest.mark.parametrize(
    "body",
    [
        "{bad json",
        "",
        "   ",
        None,
        '{"instance": {"age": NaN, "bmi": 1, "bp": 1}}',
        '{"instance": {"age": Infinity, "bmi": 1, "bp": 1}}',
        '{"instance": {"age": 1e400, "bmi": 1, "bp": 1}}',
        "[" * 100_000,
        b"\xff\xfe{\x00",
    ],
    ids=["malformed", "empty", "blank", "absent", "nan", "infinity", "overflow", "deep-nesting", "not-utf8"],
)
def test_undecodable_bodies_get_400(use_schema: Any, endpoint: Stubber, body: str | bytes | None) -> None:
    # GIVEN a body that is not a JSON document (or not UTF-8, or holds non-finite numbers)
    use_schema(TABULAR_SCHEMA)
    # WHEN it is handled
    answer = invoke(predict_event(body))
    # THEN the caller is told, never with a 5xx
    assert_error(answer, 400, "invalid_request")


def test_invalid_base64_from_api_gateway_is_400(use_schema: Any) -> None:
    # GIVEN an event flagged isBase64Encoded whose body is not base64
    use_schema(TEXT_SCHEMA)
    event = predict_event("not*base64", content_type="application/json")
    event["isBase64Encoded"] = True
    # WHEN / THEN
    assert_error(invoke(event), 400, "invalid_request")


def test_unknown_route_is_404(use_schema: Any) -> None:
    # GIVEN the real event sent to a path the API does not have
    use_schema(TEXT_SCHEMA)
    event = load_event("apigw_predict.json")
    event["path"] = "/v1/explain"
    # WHEN / THEN
    assert_error(invoke(event), 404, "not_found")


@pytest.mark.parametrize(
    "event",
    [{}, {"path": "/v1/health"}, {"httpMethod": "GET", "requestContext": "not a mapping"}],
    ids=["empty", "no-method", "odd-context"],
)
def test_an_event_that_is_not_api_gateways_gets_a_json_error_not_a_crash(
    use_schema: Any, event: dict[str, Any]
) -> None:
    # GIVEN an invocation that did not come through the REST API (a test event, another trigger)
    use_schema(TEXT_SCHEMA)
    # WHEN it is handled
    answer = invoke(event)
    # THEN it is refused as a client mistake, under the Lambda request id
    assert answer.status in {404, 405} and answer.body["error"]["request_id"] == FakeContext.aws_request_id


@pytest.mark.parametrize(
    ("path", "method", "allow"), [("/v1/predict", "GET", "POST"), ("/v1/health", "POST", "GET")]
)
def test_wrong_method_is_405_with_allow(use_schema: Any, path: str, method: str, allow: str) -> None:
    # GIVEN a known path with a method it does not take
    use_schema(TEXT_SCHEMA)
    event = load_event("apigw_predict.json")
    event["path"], event["httpMethod"] = path, method
    # WHEN it is handled
    answer = invoke(event)
    # THEN 405 names the allowed method
    assert_error(answer, 405, "method_not_allowed")
    assert answer.headers["Allow"] == allow


@pytest.mark.parametrize("encoded", [False, True], ids=["plain", "base64"])
def test_oversize_body_is_413_before_parsing(
    use_schema: Any, monkeypatch: pytest.MonkeyPatch, encoded: bool
) -> None:
    # GIVEN a 1 KiB body limit and a larger body that is not even JSON (so parsing would 400)
    monkeypatch.setenv("MAX_BODY_BYTES", "1024")
    use_schema(TEXT_SCHEMA)
    body = "x" * 2000
    # WHEN it is handled
    answer = invoke(predict_event(body.encode() if encoded else body))
    # THEN the size is refused first
    assert_error(answer, 413, "payload_too_large")


@pytest.mark.parametrize(
    "content_type",
    ["text/plain", None, "application/x-www-form-urlencoded", "application/json; charset=latin-1", ""],
)
def test_non_json_media_type_is_415(use_schema: Any, content_type: str | None) -> None:
    # GIVEN a valid JSON body announced as something else (or not announced)
    use_schema(TEXT_SCHEMA)
    # WHEN / THEN
    assert_error(
        invoke(predict_event('{"instance": {"text": "hi"}}', content_type)), 415, "unsupported_media_type"
    )


# --- the endpoint's trouble: 502 / 503 / 504 / 500 -------------------------------------------------


def test_model_error_is_502(use_schema: Any, endpoint: Stubber) -> None:
    # GIVEN the model container raising on the request
    use_schema(TEXT_SCHEMA)
    endpoint.add_client_error(
        "invoke_endpoint", service_error_code="ModelError", service_message="boom", http_status_code=424
    )
    # WHEN / THEN the caller gets 502 without the container's message
    answer = invoke(predict_event('{"instance": {"text": "hi"}}'))
    assert_error(answer, 502, "model_error")
    assert "boom" not in answer.raw_body


def test_a_reply_in_another_shape_is_passed_on_not_refused(use_schema: Any, endpoint: Stubber) -> None:
    # GIVEN an endpoint answering one prediction for two instances (not the built-in shape)
    use_schema(TEXT_SCHEMA)
    endpoint.add_response("invoke_endpoint", endpoint_reply(["spam"], [0.5]))
    # WHEN
    answer = invoke(predict_event('{"instances": [{"text": "a"}, {"text": "b"}]}'))
    # THEN the caller gets the model's answer as it is, with the version and request id added
    assert answer.status == 200
    assert answer.body == {
        "predictions": ["spam"],
        "confidence": [0.5],
        "model_version": "7",
        "request_id": answer.body["request_id"],
    }
    assert answer.body["request_id"] == REQUEST_ID and answer.headers["X-Model-Version"] == "7"


def test_a_reply_that_is_not_json_is_502(use_schema: Any, endpoint: Stubber) -> None:
    # GIVEN an endpoint answering bytes that are not JSON
    use_schema(TEXT_SCHEMA)
    endpoint.add_response("invoke_endpoint", {**raw_reply([]), "Body": _body(b"<html>oops</html>")})
    # WHEN / THEN
    assert_error(invoke(predict_event('{"instance": {"text": "a"}}')), 502, "bad_model_response")


@pytest.mark.parametrize(
    ("code", "http_status"),
    [("ThrottlingException", 400), ("TooManyRequests", 429), ("ModelNotReadyException", 429)],
)
def test_throttling_is_503_with_retry_after(
    use_schema: Any, endpoint: Stubber, code: str, http_status: int
) -> None:
    # GIVEN an endpoint that throttles
    use_schema(TEXT_SCHEMA)
    endpoint.add_client_error("invoke_endpoint", service_error_code=code, http_status_code=http_status)
    # WHEN / THEN callers are told to come back
    answer = invoke(predict_event('{"instance": {"text": "hi"}}'))
    assert_error(answer, 503, "endpoint_busy")
    assert answer.headers["Retry-After"] == "1"


@pytest.mark.parametrize("error", [ReadTimeoutError, ConnectTimeoutError])
def test_endpoint_timeout_is_504(use_schema: Any, lambda_env: None, error: Any) -> None:
    # GIVEN a client whose call times out (raised where botocore's HTTP layer would)
    use_schema(TEXT_SCHEMA)
    client = botocore_client("sagemaker-runtime", endpoint_client.TimeoutChain().botocore_config())

    def time_out(**_: Any) -> None:
        raise error(endpoint_url="https://runtime.sagemaker.us-east-1.amazonaws.com")

    client.meta.events.register("before-call.sagemaker-runtime.InvokeEndpoint", time_out)
    endpoint_client.runtime_client.set(client)
    try:
        # WHEN / THEN
        assert_error(invoke(predict_event('{"instance": {"text": "hi"}}')), 504, "endpoint_timeout")
    finally:
        endpoint_client.runtime_client.set(None)


def test_unexpected_failure_is_500_with_request_id_and_no_trace(use_schema: Any, endpoint: Stubber) -> None:
    # GIVEN a deployment pointing at an endpoint that does not exist
    use_schema(TEXT_SCHEMA)
    endpoint.add_client_error(
        "invoke_endpoint", service_error_code="ValidationError", service_message="Endpoint x not found"
    )
    # WHEN a prediction is asked for
    answer = invoke(predict_event('{"instance": {"text": "hi"}}'))
    # THEN 500, the request id to quote, and nothing internal
    assert_error(answer, 500, "internal_error")
    assert "not found" not in answer.raw_body and "ValidationError" not in answer.raw_body


def test_an_invalid_schema_is_500_and_the_api_recovers(
    use_schema: Any, endpoint: Stubber, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN a function deployed with a schema that does not validate (an unknown kind)
    use_schema({"kind": "audio"})
    # WHEN it is asked for a prediction / its health
    broken = invoke(predict_event('{"instance": {"text": "hi"}}'))
    health = invoke(load_event("apigw_health.json"))
    # THEN both are 500s without details: it never stops validating silently
    assert_error(broken, 500, "internal_error")
    assert_error(health, 500, "internal_error", request_id=HEALTH_REQUEST_ID)
    assert broken.body["error"]["details"] == []
    # AND once configured (next cold start) it answers again
    use_schema(TEXT_SCHEMA)
    endpoint.add_response("invoke_endpoint", endpoint_reply(["ham"], [0.5]), expected_call(["hi"]))
    assert invoke(predict_event('{"instance": {"text": "hi"}}')).status == 200


def test_the_api_stays_healthy_after_client_mistakes(use_schema: Any, endpoint: Stubber) -> None:
    # GIVEN a series of bad requests
    use_schema(TEXT_SCHEMA)
    for body in ("{", '{"instance": 1}', "[" * 5000):
        assert invoke(predict_event(body)).status == 400
    endpoint.add_response("invoke_endpoint", endpoint_reply(["ham"], [0.5]), expected_call(["ok"]))
    # WHEN a good one follows
    answer = invoke(predict_event('{"instance": {"text": "ok"}}'))
    # THEN it is served
    assert answer.status == 200
