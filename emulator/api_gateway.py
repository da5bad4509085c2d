"""A local API Gateway REST API (Lambda proxy integration): real HTTP on loopback becomes the proxy
events the deployed API sends, so the API Lambda runs unchanged; the gateway's own answers (API key
or SigV4 signature, size, timeouts) come from the responses the stack deploys (docs/local-platform.md).
"""

from __future__ import annotations

import base64
import binascii
import logging
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from emulator.isolation import EMULATOR_CREDENTIALS, AccessKeyPair
from emulator.runtime import BackgroundHttpServer, HttpRequest, HttpResponse, json_response
from emulator.sigv4 import SignatureRejected, verify_signature
from handlers.api.openapi import resource_paths
from infra.gateway_responses import gateway_answer
from infra.stack_config import ApiAuth

logger = logging.getLogger(__name__)

LambdaHandler = Callable[[dict[str, Any], Any], Any]

MAX_BODY_BYTES = 10 * 1024 * 1024  # API Gateway's payload limit
INTEGRATION_TIMEOUT_S = 29.0
# The resources infra/api.py declares: the API's operations and their ancestors.
DEFAULT_RESOURCES = resource_paths()
ACCOUNT_ID = "123456789012"
API_ID = "local"
FUNCTION_NAME = "local-predict-api"
MEMORY_MB = 512
REGION = "us-east-1"


@dataclass
class LambdaContext:
    """The attributes of the Lambda context object that handlers and powertools read."""

    aws_request_id: str
    deadline: float  # time.monotonic() at which the function would be stopped
    function_name: str = FUNCTION_NAME
    function_version: str = "$LATEST"
    memory_limit_in_mb: int = MEMORY_MB
    invoked_function_arn: str = f"arn:aws:lambda:{REGION}:{ACCOUNT_ID}:function:{FUNCTION_NAME}"
    log_group_name: str = f"/aws/lambda/{FUNCTION_NAME}"
    log_stream_name: str = "local"
    identity: Any = None
    client_context: Any = None

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self.deadline - time.monotonic()) * 1000))


@dataclass(frozen=True)
class Resource:
    """The API resource a path matched: its template and path parameters."""

    path: str
    parameters: dict[str, str] | None = None


def match_resource(path: str, resources: Sequence[str], greedy: bool) -> Resource | None:
    """The resource API Gateway picks for ``path``: an exact one, else the nearest ancestor's
    ``{proxy+}`` child (when ``greedy``), else None."""
    if path in resources:
        return Resource(path)
    if not greedy:
        return None
    ancestors = [r for r in resources if path.startswith(r.rstrip("/") + "/")]
    if not ancestors:
        return None
    parent = max(ancestors, key=len).rstrip("/")
    return Resource(f"{parent}/{{proxy+}}", {"proxy": path[len(parent) + 1 :]})


@dataclass
class _Counters:
    requests: int = 0
    by_status: dict[int, int] = field(default_factory=dict)


class LocalApiGateway:
    """API Gateway's REST proxy on ``host:port``, invoking ``handler(event, context)`` per request.

    Its methods are authorized as the stack's (``api.auth``): ``ApiAuth.API_KEY`` requires
    ``api_key`` in ``x-api-key`` (``None``: no key at all); ``ApiAuth.IAM`` requires a SigV4
    signature for ``region`` made with ``credentials`` and takes no API key.
    """

    def __init__(
        self,
        handler: LambdaHandler,
        api_key: str | None,
        stage: str = "local",
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        auth: ApiAuth = ApiAuth.API_KEY,
        region: str = REGION,
        credentials: AccessKeyPair = EMULATOR_CREDENTIALS,
        resources: Sequence[str] = DEFAULT_RESOURCES,
        greedy: bool = True,
        timeout_s: float = INTEGRATION_TIMEOUT_S,
        max_body_bytes: int = MAX_BODY_BYTES,
        stage_variables: Mapping[str, str] | None = None,
    ) -> None:
        if auth is ApiAuth.IAM and api_key is not None:
            raise ValueError("an API with IAM auth has no API key")
        self.handler = handler
        self.api_key = api_key
        self.auth = auth
        self.region = region
        self.credentials = credentials
        self.stage = stage
        self.resources = tuple(resources)
        self.greedy = greedy
        self.timeout_s = timeout_s
        self.max_body_bytes = max_body_bytes
        self.stage_variables = dict(stage_variables) if stage_variables else None
        self.counters = _Counters()
        self._lock = threading.Lock()
        # One Lambda sandbox: invocations run one at a time, as the handler's module state assumes
        # (Powertools' logger keys and metrics buffer are globals). On its own thread, so an
        # integration timeout can answer 504 while the handler goes on.
        self._sandbox = ThreadPoolExecutor(max_workers=1, thread_name_prefix="lambda")
        self._http = BackgroundHttpServer(self, host, port, "api-gateway")

    @property
    def url(self) -> str:
        """The invoke URL, ending with the stage, like ``https://ID.execute-api.REGION.amazonaws.com/STAGE``."""
        return f"{self._http.url}/{self.stage}"

    def start(self) -> None:
        self._http.start()

    def stop(self) -> None:
        self._http.stop()
        self._sandbox.shutdown(wait=False, cancel_futures=True)

    def too_large(self, request: HttpRequest) -> HttpResponse:
        return self._count(_gateway_error("REQUEST_TOO_LARGE", 413, "Request Too Long", str(uuid.uuid4())))

    def handle(self, request: HttpRequest) -> HttpResponse:
        return self._count(self._answer(request))

    def _answer(self, request: HttpRequest) -> HttpResponse:
        path = self._path_in_stage(unquote(urlsplit(request.target).path))
        resource = None if path is None else match_resource(path, self.resources, self.greedy)
        request_id = str(uuid.uuid4())
        if path is None or resource is None:
            return _gateway_error(
                "MISSING_AUTHENTICATION_TOKEN", 403, "Missing Authentication Token", request_id
            )
        refusal = self._refusal(request, request_id)
        if refusal is not None:
            return refusal
        event = proxy_event(request, resource, path, self, request_id)
        context = LambdaContext(aws_request_id=str(uuid.uuid4()), deadline=time.monotonic() + self.timeout_s)
        return self._invoke(event, context, request_id)

    def _refusal(self, request: HttpRequest, request_id: str) -> HttpResponse | None:
        """API Gateway's 403 for a request its methods' authorization refuses; None to let it in."""
        if self.auth is ApiAuth.IAM:
            try:
                verify_signature(request, self.credentials, self.region)
            except SignatureRejected as rejected:
                return _gateway_error(rejected.response_type, 403, rejected.message, request_id)
            return None
        if self.api_key is not None and request.header("x-api-key") != self.api_key:
            return _gateway_error("INVALID_API_KEY", 403, "Forbidden", request_id)
        return None

    def _path_in_stage(self, path: str) -> str | None:
        """``/STAGE/v1/predict`` -> ``/v1/predict``; None for a path outside the stage."""
        prefix = f"/{self.stage}"
        if path != prefix and not path.startswith(prefix + "/"):
            return None
        return path[len(prefix) :] or "/"

    def _invoke(self, event: dict[str, Any], context: LambdaContext, request_id: str) -> HttpResponse:
        future = self._sandbox.submit(self.handler, event, context)
        try:
            answer = future.result(timeout=self.timeout_s)
        except FutureTimeout:
            future.cancel()  # still queued behind a slow invocation: never run it
            logger.error("request %s: the handler did not answer in %.0f s", request_id, self.timeout_s)
            return _gateway_error("INTEGRATION_TIMEOUT", 504, "Endpoint request timed out", request_id)
        except Exception:
            logger.exception("request %s: the Lambda handler raised", request_id)
            return _internal_error(request_id)
        try:
            return proxy_response(answer, request_id)
        except (TypeError, ValueError, KeyError, binascii.Error):
            logger.exception("request %s: malformed Lambda proxy response", request_id)
            return _internal_error(request_id)

    def _count(self, response: HttpResponse) -> HttpResponse:
        with self._lock:
            self.counters.requests += 1
            self.counters.by_status[response.status] = self.counters.by_status.get(response.status, 0) + 1
        return response


def proxy_event(
    request: HttpRequest, resource: Resource, path: str, api: LocalApiGateway, request_id: str
) -> dict[str, Any]:
    """The REST API proxy event (payload 1.0) for ``request`` on ``resource``."""
    headers = [*request.headers, ("X-Forwarded-For", request.client_ip), ("X-Forwarded-Proto", "http")]
    query = parse_qsl(urlsplit(request.target).query, keep_blank_values=True)
    body, is_base64 = _event_body(request.body)
    now = datetime.now(UTC)
    user_agent = request.header("User-Agent")
    return {
        "resource": resource.path,
        "path": path,
        "httpMethod": request.method,
        "headers": dict(headers) or None,
        "multiValueHeaders": _multi(headers),
        "queryStringParameters": dict(query) or None,
        "multiValueQueryStringParameters": _multi(query),
        "pathParameters": resource.parameters,
        "stageVariables": api.stage_variables,
        "requestContext": {
            "resourceId": "local",
            "resourcePath": resource.path,
            "httpMethod": request.method,
            "extendedRequestId": request_id,
            "requestTime": now.strftime("%d/%b/%Y:%H:%M:%S +0000"),
            "path": f"/{api.stage}{path}",
            "accountId": ACCOUNT_ID,
            "protocol": "HTTP/1.1",
            "stage": api.stage,
            "domainPrefix": API_ID,
            "requestTimeEpoch": int(now.timestamp() * 1000),
            "requestId": request_id,
            "identity": {
                "sourceIp": request.client_ip,
                "userAgent": user_agent,
                "apiKey": request.header("x-api-key") if api.api_key is not None else None,
                "apiKeyId": "local" if api.api_key is not None else None,
                **_caller_identity(api),
                "cognitoIdentityPoolId": None,
                "cognitoIdentityId": None,
                "cognitoAuthenticationType": None,
                "cognitoAuthenticationProvider": None,
                "principalOrgId": None,
            },
            "domainName": (request.header("Host") or "127.0.0.1").split(":")[0],
            "deploymentId": "local",
            "apiId": API_ID,
        },
        "body": body,
        "isBase64Encoded": is_base64,
    }


def _caller_identity(api: LocalApiGateway) -> dict[str, str | None]:
    """Who signed, as IAM auth fills it in: the emulator's key pair is the account's own (root)."""
    if api.auth is not ApiAuth.IAM:
        return {"accountId": None, "caller": None, "user": None, "userArn": None, "accessKey": None}
    return {
        "accountId": ACCOUNT_ID,
        "caller": ACCOUNT_ID,
        "user": ACCOUNT_ID,
        "userArn": f"arn:aws:iam::{ACCOUNT_ID}:root",
        "accessKey": api.credentials.access_key_id,
    }


def _multi(pairs: Sequence[tuple[str, str]]) -> dict[str, list[str]] | None:
    grouped: dict[str, list[str]] = {}
    for name, value in pairs:
        grouped.setdefault(name, []).append(value)
    return grouped or None


def _event_body(body: bytes) -> tuple[str | None, bool]:
    """Text bodies pass as text; without binary media types configured API Gateway cannot carry
    bytes that are not UTF-8, so those are base64-encoded (as with a ``*/*`` binary type)."""
    if not body:
        return None, False
    try:
        return body.decode("utf-8"), False
    except UnicodeDecodeError:
        return base64.b64encode(body).decode("ascii"), True


def proxy_response(answer: Any, request_id: str) -> HttpResponse:
    """The HTTP answer for a Lambda proxy response; ValueError/TypeError/KeyError if malformed."""
    if not isinstance(answer, dict) or not isinstance(answer.get("statusCode"), int):
        raise ValueError("a proxy response needs an integer statusCode")
    body = answer.get("body") or ""
    if not isinstance(body, str):
        raise TypeError("a proxy response body must be a string")
    payload = base64.b64decode(body, validate=True) if answer.get("isBase64Encoded") else body.encode()
    # Both maps merge; a name in multiValueHeaders keeps only those values (API Gateway's rule).
    headers = [
        (str(name), str(value))
        for name, values in (answer.get("multiValueHeaders") or {}).items()
        for value in values
    ]
    multi = {name.lower() for name, _ in headers}
    headers.extend(
        (str(k), str(v)) for k, v in (answer.get("headers") or {}).items() if str(k).lower() not in multi
    )
    headers.extend(_id_header(request_id))
    return HttpResponse(int(answer["statusCode"]), payload, headers)


def _id_header(request_id: str) -> list[tuple[str, str]]:
    return [("x-amzn-RequestId", request_id)]


def _internal_error(request_id: str) -> HttpResponse:
    return _gateway_error("INTEGRATION_FAILURE", 502, "Internal server error", request_id)


def _gateway_error(response_type: str, status: int, aws_message: str, request_id: str) -> HttpResponse:
    """API Gateway's own error, as the deployed gateway responses render it."""
    answer = gateway_answer(response_type, status, aws_message, request_id)
    headers = [*answer.headers.items(), *_id_header(request_id)]
    return json_response(answer.status, answer.body, headers)


__all__ = ["LambdaContext", "LocalApiGateway", "Resource", "match_resource", "proxy_event", "proxy_response"]
