"""The error contract: each domain error has one status and code, and 5xx bodies stay generic."""

from __future__ import annotations

import pytest

from handlers.api.error_responses import error_response
from handlers.api.errors import (
    EndpointThrottledError,
    EndpointTimeoutError,
    MethodNotAllowedError,
    ModelInvocationError,
    ModelRejectedInputError,
    ModelResponseError,
    PayloadTooLargeError,
    RouteNotFoundError,
    UnsupportedMediaTypeError,
)
from handlers.api.model_answer import BuiltInAnswer, built_in_answer, decode_answer, with_identity
from handlers.common.errors import ConfigurationError, FieldProblem, InvalidRequestError


@pytest.mark.parametrize(
    ("error", "status", "code"),
    [
        (InvalidRequestError("x"), 400, "invalid_request"),
        (RouteNotFoundError("x"), 404, "not_found"),
        (MethodNotAllowedError("x", ["POST"]), 405, "method_not_allowed"),
        (PayloadTooLargeError("x"), 413, "payload_too_large"),
        (UnsupportedMediaTypeError("x"), 415, "unsupported_media_type"),
        (ModelRejectedInputError("x"), 400, "invalid_request"),
        (ModelInvocationError("x"), 502, "model_error"),
        (ModelResponseError("x"), 502, "bad_model_response"),
        (EndpointThrottledError("x"), 503, "endpoint_busy"),
        (EndpointTimeoutError("x"), 504, "endpoint_timeout"),
        (ConfigurationError("secret detail"), 500, "internal_error"),
        (KeyError("secret detail"), 500, "internal_error"),
    ],
)
def test_each_error_maps_to_one_status(error: Exception, status: int, code: str) -> None:
    got_status, body, _ = error_response(error, "req-1")
    assert (got_status, body["error"]["code"], body["error"]["request_id"]) == (status, code, "req-1")
    if status == 500:
        assert "secret" not in body["error"]["message"]


def test_details_are_listed_for_client_errors_and_capped() -> None:
    error = InvalidRequestError("bad", [FieldProblem(f"instances[{i}].text", "wrong") for i in range(50)])
    _, body, _ = error_response(error, "req-1")
    assert body["error"]["details"][0] == {"field": "instances[0].text", "problem": "wrong"}
    assert len(body["error"]["details"]) == 20


def test_busy_answers_carry_retry_after() -> None:
    _, _, headers = error_response(EndpointThrottledError("busy", retry_after_seconds=2), "req-1")
    assert headers == {"Retry-After": "2"}


@pytest.mark.parametrize(
    "payload",
    [b"not json", b'{"predictions": [1]}', b'{"predictions": [1, 2], "confidence": [0.5]}',
     b'{"predictions": [1, 2], "confidence": ["a", "b"]}', b"[1, 2]", b'{"scores": [0.1, 0.9]}'],
)  # fmt: skip
def test_replies_outside_the_built_in_shape_are_not_read_as_it(payload: bytes) -> None:
    # GIVEN answers that are not one prediction (and confidence) per instance of two
    try:
        document = decode_answer(payload, "application/json")
    except ModelResponseError:
        return  # not JSON at all: the 502 case, covered below
    # WHEN / THEN they are not read as the built-in shape (the API passes them on unchanged)
    assert built_in_answer(document, expected=2) is None


@pytest.mark.parametrize(
    ("payload", "content_type"),
    [
        (b"not json", "application/json"),
        (b'{"predictions": [NaN]}', "application/json"),
        (b'{"predictions": [Infinity]}', "application/json"),
        (b'{"predictions": [1e400]}', None),
        (b"\xff\xfe\x00", "application/json"),
        (b"1,2,3", "text/csv"),
    ],
)
def test_answers_json_cannot_carry_are_model_response_errors(
    payload: bytes, content_type: str | None
) -> None:
    with pytest.raises(ModelResponseError):
        decode_answer(payload, content_type)


def test_a_reply_names_the_version_that_served_it() -> None:
    payload = (
        b'{"model": "digits-cnn", "model_version": "7", "predictions": [{"label": "3", "confidence": 0.9}]}'
    )
    assert built_in_answer(decode_answer(payload, None), expected=1) == BuiltInAnswer(["3"], [0.9], "7")
    assert built_in_answer({"predictions": [1.5]}, expected=1) == BuiltInAnswer([1.5], [None], None)


def test_a_passed_on_object_keeps_its_own_keys_and_gains_the_missing_ones() -> None:
    assert with_identity({"scores": [1], "model_version": "m3"}, "7", "req-1") == {
        "scores": [1],
        "model_version": "m3",
        "request_id": "req-1",
    }
    assert with_identity([0.1, 0.9], "7", "req-1") == [0.1, 0.9]
