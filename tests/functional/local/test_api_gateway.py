"""The local API Gateway: HTTP in, REST proxy events to a Lambda handler, proxy answers out."""

from __future__ import annotations

import base64
import http.client
import json
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import pytest

from emulator.api_gateway import LocalApiGateway
from emulator.runtime import RuntimeGateway
from handlers.api import endpoint_client
from handlers.api import handler as predict_api
from tests.functional.local.conftest import API_KEY, ENDPOINT, STAGE, WAIT_S


@dataclass
class Reply:
    status: int
    headers: http.client.HTTPMessage
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def call(
    base_url: str, method: str, path: str, body: bytes | None = None, headers: dict[str, str] | None = None
) -> Reply:
    """One plain HTTP request to ``base_url`` + ``path`` (the stage is part of ``base_url``)."""
    url = urlsplit(base_url)
    conn = http.client.HTTPConnection(url.hostname or "127.0.0.1", url.port, timeout=WAIT_S)
    try:
        conn.request(method, url.path + path, body=body, headers=headers or {})
        response = conn.getresponse()
        return Reply(response.status, response.headers, response.read())
    finally:
        conn.close()


@dataclass
class StubHandler:
    """Records every (event, context) and answers with ``answer`` (or raises it if an exception)."""

    answer: Any = field(default_factory=lambda: {"statusCode": 200, "body": "{}"})
    calls: list[tuple[dict[str, Any], Any]] = field(default_factory=list)

    def __call__(self, event: dict[str, Any], context: Any) -> Any:
        self.calls.append((event, context))
        if isinstance(self.answer, BaseException):
            raise self.answer
        if callable(self.answer):
            return self.answer()
        return self.answer


@pytest.fixture
def stub() -> StubHandler:
    return StubHandler()


@pytest.fixture
def api(stub: StubHandler, start_api: Callable[..., LocalApiGateway]) -> LocalApiGateway:
    return start_api(stub)


def test_a_request_becomes_a_rest_proxy_event(api: LocalApiGateway, stub: StubHandler) -> None:
    # GIVEN a handler answering with single- and multi-value headers
    stub.answer = {
        "statusCode": 201,
        "headers": {"Content-Type": "application/json", "X-One": "1"},
        "multiValueHeaders": {"Set-Cookie": ["a=1", "b=2"]},
        "body": '{"ok": true}',
        "isBase64Encoded": False,
    }

    # WHEN a client posts to /v1/predict with a query string and the API key
    reply = call(
        api.url,
        "POST",
        "/v1/predict?debug=1&tag=a&tag=b",
        b'{"instances": [1]}',
        {"Content-Type": "application/json", "x-api-key": API_KEY, "User-Agent": "tests"},
    )

    # THEN the handler got API Gateway's event and context, and its answer is the HTTP answer
    assert api.url.endswith(f"/{STAGE}")
    event, context = stub.calls[0]
    assert (event["resource"], event["path"], event["httpMethod"]) == ("/v1/predict", "/v1/predict", "POST")
    assert event["headers"]["Content-Type"] == "application/json"
    assert event["multiValueHeaders"]["x-api-key"] == [API_KEY]
    assert event["queryStringParameters"] == {"debug": "1", "tag": "b"}
    assert event["multiValueQueryStringParameters"] == {"debug": ["1"], "tag": ["a", "b"]}
    assert event["pathParameters"] is None and event["stageVariables"] is None
    assert (event["body"], event["isBase64Encoded"]) == ('{"instances": [1]}', False)
    request_context = event["requestContext"]
    assert request_context["stage"] == STAGE and request_context["resourcePath"] == "/v1/predict"
    assert request_context["path"] == f"/{STAGE}/v1/predict" and request_context["httpMethod"] == "POST"
    assert request_context["identity"]["apiKey"] == API_KEY
    assert request_context["identity"]["sourceIp"] == "127.0.0.1"
    assert request_context["identity"]["userAgent"] == "tests"
    assert request_context["requestId"] and request_context["requestTimeEpoch"] > 0
    assert request_context["apiId"] and request_context["domainName"] == "127.0.0.1"
    assert context.function_name and context.aws_request_id and context.invoked_function_arn
    assert context.memory_limit_in_mb > 0 and context.get_remaining_time_in_millis() > 0
    assert reply.status == 201 and reply.json() == {"ok": True}
    assert reply.headers["X-One"] == "1" and reply.headers.get_all("Set-Cookie") == ["a=1", "b=2"]
    assert reply.headers["x-amzn-RequestId"] == request_context["requestId"]


@pytest.mark.parametrize(
    ("path", "resource", "proxy"),
    [
        ("/v1/health", "/v1/health", None),
        ("/v1/predict/extra/part", "/v1/predict/{proxy+}", "extra/part"),
        ("/v1/unknown", "/v1/{proxy+}", "unknown"),
        ("/elsewhere", "/{proxy+}", "elsewhere"),
    ],
)
def test_every_path_under_the_stage_reaches_the_handler(
    api: LocalApiGateway, stub: StubHandler, path: str, resource: str, proxy: str | None
) -> None:
    # GIVEN infra/api.py's resources, each with a greedy {proxy+} child
    # WHEN a path is requested
    reply = call(api.url, "GET", path, headers={"x-api-key": API_KEY})

    # THEN the handler sees the resource API Gateway would match
    event = stub.calls[0][0]
    assert reply.status == 200
    assert event["resource"] == resource and event["path"] == path
    assert event["pathParameters"] == (None if proxy is None else {"proxy": proxy})


def gateway_error(reply: Any) -> dict[str, Any]:
    """The error of a gateway answer; it must be in the documented shape, under its request id."""
    body = reply.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message", "request_id", "details"}
    assert body["error"]["request_id"] == reply.headers["x-amzn-RequestId"]
    error: dict[str, Any] = body["error"]
    return error


@pytest.mark.parametrize("headers", [{}, {"x-api-key": "wrong"}])
def test_a_missing_or_wrong_api_key_is_forbidden(
    api: LocalApiGateway, stub: StubHandler, headers: dict[str, str]
) -> None:
    # GIVEN an API that requires its key
    # WHEN a request comes without it, or with another
    reply = call(api.url, "POST", "/v1/predict", b"{}", headers)

    # THEN API Gateway refuses it itself, in the deployed API's error shape
    assert reply.status == 403 and gateway_error(reply)["code"] == "forbidden"
    assert "x-api-key" in gateway_error(reply)["message"]
    assert stub.calls == []


def test_unknown_resources_are_missing_authentication_token(
    start_api: Callable[..., LocalApiGateway], stub: StubHandler
) -> None:
    # GIVEN an API without greedy resources
    api = start_api(stub, greedy=False)

    # WHEN an unknown path, and a path outside the stage, are requested
    unknown = call(api.url, "GET", "/v1/nothing", headers={"x-api-key": API_KEY})
    outside = call(
        api.url.removesuffix(f"/{STAGE}"), "GET", "/other/v1/health", headers={"x-api-key": API_KEY}
    )

    # THEN both get API Gateway's 403, and the handler is not called
    for reply in (unknown, outside):
        assert reply.status == 403 and gateway_error(reply)["message"] == "Missing Authentication Token"
    assert stub.calls == []


def test_a_body_over_10_mb_is_refused(api: LocalApiGateway, stub: StubHandler) -> None:
    # GIVEN a body one byte over API Gateway's limit
    body = b"x" * (10 * 1024 * 1024 + 1)

    # WHEN it is posted
    reply = call(api.url, "POST", "/v1/predict", body, {"x-api-key": API_KEY})

    # THEN the gateway answers 413 without calling the handler
    assert reply.status == 413 and gateway_error(reply)["code"] == "payload_too_large"
    assert stub.calls == []


def test_a_raising_handler_is_a_bare_502(api: LocalApiGateway, stub: StubHandler) -> None:
    # GIVEN a handler that raises
    stub.answer = RuntimeError("secret detail in /var/task/handler.py")

    # WHEN it is called
    reply = call(api.url, "GET", "/v1/health", headers={"x-api-key": API_KEY})

    # THEN the caller sees the generic 502, nothing of the exception
    assert reply.status == 502 and gateway_error(reply)["code"] == "internal_error"
    assert b"secret" not in reply.body and b"Traceback" not in reply.body


def test_a_malformed_proxy_answer_is_a_502(api: LocalApiGateway, stub: StubHandler) -> None:
    # GIVEN a handler answering something that is not a proxy response
    stub.answer = {"body": "no status code"}

    # WHEN it is called
    reply = call(api.url, "GET", "/v1/health", headers={"x-api-key": API_KEY})

    # THEN API Gateway's 502
    assert reply.status == 502 and gateway_error(reply)["code"] == "internal_error"


def test_binary_bodies_travel_base64_encoded(api: LocalApiGateway, stub: StubHandler) -> None:
    # GIVEN a handler answering a base64-encoded binary body
    stub.answer = {"statusCode": 200, "body": base64.b64encode(b"\x00\xff").decode(), "isBase64Encoded": True}

    # WHEN a non-UTF-8 body is posted
    reply = call(api.url, "POST", "/v1/predict", b"\xff\xfe", {"x-api-key": API_KEY})

    # THEN the event carries it base64-encoded and the answer is decoded
    event = stub.calls[0][0]
    assert event["isBase64Encoded"] is True and base64.b64decode(event["body"]) == b"\xff\xfe"
    assert reply.body == b"\x00\xff"


def test_a_handler_past_the_integration_timeout_is_a_504(start_api: Callable[..., LocalApiGateway]) -> None:
    # GIVEN a handler blocked until the test releases it, behind a short integration timeout
    release = threading.Event()
    api = start_api(lambda event, context: release.wait(WAIT_S), timeout_s=0.2)

    # WHEN it is called
    try:
        reply = call(api.url, "GET", "/v1/health", headers={"x-api-key": API_KEY})
    finally:
        release.set()

    # THEN API Gateway gives up with a 504
    assert reply.status == 504 and gateway_error(reply)["code"] == "gateway_timeout"


def test_concurrent_requests_run_one_at_a_time_and_keep_their_own_event(
    start_api: Callable[..., LocalApiGateway],
) -> None:
    # GIVEN a handler that echoes its event's path and records how many invocations overlap
    active, overlaps, lock = [0], [0], threading.Lock()

    def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        with lock:
            active[0] += 1
            overlaps[0] = max(overlaps[0], active[0])
        try:
            return {"statusCode": 200, "body": json.dumps({"path": event["path"]})}
        finally:
            with lock:
                active[0] -= 1

    api = start_api(handler)

    # WHEN clients call it concurrently on different paths
    with ThreadPoolExecutor(max_workers=8) as pool:
        replies = list(
            pool.map(lambda i: call(api.url, "GET", f"/v1/p{i}", headers={"x-api-key": API_KEY}), range(16))
        )

    # THEN each got the answer to its own request, from one invocation at a time
    assert [r.json()["path"] for r in replies] == [f"/v1/p{i}" for i in range(16)]
    assert overlaps[0] == 1


@pytest.fixture
def predict_env(
    served: RuntimeGateway, aws_credentials: None, monkeypatch: pytest.MonkeyPatch
) -> Iterator[None]:
    """The prediction Lambda's environment, its endpoint at the local runtime (local mode)."""
    schema = {"kind": "tabular", "feature_names": ["x", "y", "z"]}
    monkeypatch.setenv("ENDPOINT_NAME", ENDPOINT)
    monkeypatch.setenv("ENDPOINT_URL_SAGEMAKER_RUNTIME", served.url)
    monkeypatch.setenv("MODEL_INPUT_SCHEMA", json.dumps(schema))
    monkeypatch.setenv("MODEL_VERSION", "7")
    monkeypatch.setenv("POWERTOOLS_TRACE_DISABLED", "true")
    monkeypatch.delenv("MODEL_INPUT_SCHEMA_URI", raising=False)
    monkeypatch.delenv("MAX_BODY_BYTES", raising=False)
    monkeypatch.delenv("LAMBDA_TIMEOUT_SECONDS", raising=False)
    predict_api.reset_configuration()
    endpoint_client.runtime_client.set(None)  # built again from the environment, as at a cold start
    yield
    predict_api.reset_configuration()
    endpoint_client.runtime_client.set(None)


@pytest.mark.usefixtures("predict_env")
def test_predictions_over_http_end_to_end(
    start_api: Callable[..., LocalApiGateway], served: RuntimeGateway
) -> None:
    # GIVEN the real prediction Lambda behind the local API, calling the local runtime and a model server
    api = start_api(predict_api.lambda_handler)
    headers = {"x-api-key": API_KEY, "Content-Type": "application/json"}

    # WHEN a client asks for predictions and for health
    reply = call(
        api.url, "POST", "/v1/predict", b'{"instances": [[2, 0, 0], {"x": -1, "y": 0, "z": 0}]}', headers
    )
    health = call(api.url, "GET", "/v1/health", headers=headers)
    missing = call(api.url, "GET", "/v1/nothing", headers=headers)

    # THEN the model's predictions come back in the API's contract, through both gateways
    assert reply.status == 200, reply.body
    document = reply.json()
    assert document["predictions"] == [0, 1]
    assert all(0.5 < c <= 1 for c in document["confidence"])
    assert document["model_version"] == "7" and document["request_id"]
    assert health.status == 200 and health.json()["status"] == "ok"
    assert missing.status == 404
    assert served.invocations == 1
