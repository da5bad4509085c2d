"""``mlctl invoke``: one POST to <apiUrl>/v1/predict with the API key, against a local stand-in API."""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from pathlib import Path

import boto3
import pytest

from tests.functional.mlctl.conftest import (
    API_KEY,
    REGION,
    ApiServer,
    Platform,
    Result,
    local_state,
    set_outputs,
)

BODY = {"instances": [{"text": "Win a FREE cruise now!"}]}


def aws_api(platform: Platform, api: ApiServer) -> None:
    key_id = boto3.client("apigateway", region_name=REGION).create_api_key(
        name="mlp-dev-key", value=API_KEY, enabled=True
    )["id"]
    set_outputs(platform, apiUrl=api.url, apiKeyId=key_id)


def test_invoke_posts_the_body_with_the_stack_s_api_key(
    platform: Platform, api: ApiServer, mlctl: Callable[..., Result]
) -> None:
    # GIVEN the API and its key stored in API Gateway
    aws_api(platform, api)

    # WHEN a prediction is requested
    result = mlctl("invoke", "--body", json.dumps(BODY), *platform.target)

    # THEN the body reached /v1/predict with the key, and the JSON answer is printed
    assert result.code == 0, result.err
    (request,) = api.requests
    assert request["path"] == "/live/v1/predict"
    assert request["headers"]["x-api-key"] == API_KEY
    assert request["headers"]["content-type"] == "application/json"
    assert json.loads(request["body"]) == BODY
    assert json.loads(result.out) == api.answer


def test_invoke_reads_the_body_from_a_file_in_local_mode(
    api: ApiServer, mlctl: Callable[..., Result], tmp_path: Path, aws_credentials: None
) -> None:
    # GIVEN local mode: the API URL and key come from the state file
    state = tmp_path / "state.json"
    state.write_text(json.dumps(local_state("http://127.0.0.1:9", api_url=api.url)))
    body = tmp_path / "request.json"
    body.write_text(json.dumps(BODY))

    # WHEN invoked with --file
    result = mlctl("invoke", "--file", str(body), "--local", "--state-file", str(state))

    # THEN the file's JSON was sent with the local key
    assert result.code == 0, result.err
    assert json.loads(api.requests[0]["body"]) == BODY
    assert api.requests[0]["headers"]["x-api-key"] == API_KEY


def test_an_error_answer_prints_status_and_body_and_exits_1(
    platform: Platform, api: ApiServer, mlctl: Callable[..., Result]
) -> None:
    # GIVEN an API that refuses the request
    aws_api(platform, api)
    api.status = 400
    api.answer = {
        "error": {"code": "invalid_request", "message": "the request does not match the model's input"}
    }

    # WHEN invoked
    result = mlctl("invoke", "--body", json.dumps({"instance": {}}), *platform.target)

    # THEN exit 1 with the status and the error body on one line
    assert result.code == 1
    assert result.err.strip().startswith("mlctl invoke: HTTP 400: ")
    assert json.loads(result.err.strip().removeprefix("mlctl invoke: HTTP 400: ")) == api.answer


def test_a_wrong_key_is_reported_as_403(
    platform: Platform, api: ApiServer, mlctl: Callable[..., Result]
) -> None:
    # GIVEN a stack whose stored key is not the one the API expects
    aws_api(platform, api)
    api.key = "another-key"

    # WHEN invoked THEN API Gateway's 403 is shown
    result = mlctl("invoke", "--body", "{}", *platform.target)
    assert result.code == 1
    assert "HTTP 403" in result.err and "Forbidden" in result.err


def test_raw_prints_the_answer_unchanged(
    platform: Platform, api: ApiServer, mlctl: Callable[..., Result]
) -> None:
    # GIVEN the API
    aws_api(platform, api)

    # WHEN invoked with --raw
    result = mlctl("invoke", "--body", json.dumps(BODY), "--raw", *platform.target)

    # THEN the answer is printed as received (compact JSON, one line)
    assert result.out == json.dumps(api.answer) + "\n"


def test_an_invalid_json_body_is_refused_without_a_request(
    platform: Platform, api: ApiServer, mlctl: Callable[..., Result]
) -> None:
    # GIVEN the API WHEN the body is not JSON THEN exit 2 and nothing is sent
    aws_api(platform, api)
    result = mlctl("invoke", "--body", "{'instance': 1}", *platform.target)
    assert result.code == 2
    assert result.err.startswith("mlctl invoke: the request body is not valid JSON")
    assert api.requests == []


def test_an_unreachable_api_is_one_line(
    mlctl: Callable[..., Result], tmp_path: Path, aws_credentials: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN local mode whose API is not running (port 9: nothing listens)
    state = tmp_path / "state.json"
    state.write_text(json.dumps(local_state("http://127.0.0.1:9")))
    monkeypatch.setattr("sys.stdin", io.StringIO(json.dumps(BODY)))

    # WHEN invoked (body from stdin)
    result = mlctl("invoke", "--file", "-", "--local", "--state-file", str(state))

    # THEN exit 1 with one line saying it cannot be reached
    assert result.code == 1
    assert result.err.startswith("mlctl invoke: cannot reach http://127.0.0.1:9/live/v1/predict")
    assert len(result.err.strip().splitlines()) == 1


def test_an_iam_auth_api_gets_a_sigv4_signed_request(api: ApiServer, aws_credentials: None) -> None:
    # GIVEN a stack whose API uses IAM auth (no API key)
    from mlctl.invoke import post_json

    # WHEN a request is sent without a key, for the stack's region
    post_json(f"{api.url}/v1/predict", json.dumps(BODY).encode(), None, sign_region=REGION)
    # THEN it carries a SigV4 signature for API Gateway (execute-api) over that region, and no key
    (request,) = api.requests
    authorization = request["headers"]["authorization"]
    assert authorization.startswith("AWS4-HMAC-SHA256 Credential=")
    assert f"/{REGION}/execute-api/aws4_request" in authorization
    assert "x-amz-date" in request["headers"] and "x-api-key" not in request["headers"]


def test_the_region_to_sign_for_comes_from_an_execute_api_url() -> None:
    from mlctl.invoke import _execute_api_region

    assert _execute_api_region("https://abc123.execute-api.eu-west-1.amazonaws.com/live/v1/predict") == (
        "eu-west-1"
    )
    assert _execute_api_region("http://127.0.0.1:8080/local/v1/predict") is None
