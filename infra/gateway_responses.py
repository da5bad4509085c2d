"""API Gateway's own error answers, in the Lambda's error shape (docs/api.md), deployed and emulated.

``infra/api.py`` deploys ``GATEWAY_RESPONSES`` as gateway responses (VTL templates from
``gateway_response_template``); ``mlctl local``'s API Gateway answers its own errors with
``gateway_answer``, which renders the same thing, so a caller sees one error shape in both. This
module imports neither pulumi nor the AWS SDK: the local emulator loads it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

# (status or None to keep API Gateway's, code, message or None to pass on API Gateway's own).
_GENERIC_5XX = "internal error; quote the request id when reporting it"
GATEWAY_RESPONSES: dict[str, tuple[str | None, str, str | None]] = {
    "DEFAULT_4XX": (None, "request_refused", None),
    "DEFAULT_5XX": (None, "internal_error", _GENERIC_5XX),
    "BAD_REQUEST_BODY": ("400", "invalid_request", None),
    "BAD_REQUEST_PARAMETERS": ("400", "invalid_request", None),
    "INVALID_API_KEY": ("403", "forbidden", "a valid API key is required (header x-api-key)"),
    "MISSING_AUTHENTICATION_TOKEN": ("403", "forbidden", None),
    "ACCESS_DENIED": ("403", "forbidden", None),
    "INVALID_SIGNATURE": ("403", "forbidden", None),
    "EXPIRED_TOKEN": ("403", "forbidden", None),
    "WAF_FILTERED": ("403", "forbidden", "the request was blocked by the firewall"),
    "REQUEST_TOO_LARGE": ("413", "payload_too_large", None),
    "UNSUPPORTED_MEDIA_TYPE": ("415", "unsupported_media_type", "Content-Type must be application/json"),
    "THROTTLED": ("429", "throttled", "too many requests; retry later"),
    "QUOTA_EXCEEDED": ("429", "quota_exceeded", "the usage plan's quota is used up"),
    "INTEGRATION_TIMEOUT": ("504", "gateway_timeout", "the API did not answer in time"),
}
# Answers that tell the caller to come back later carry Retry-After, as the Lambda's 503 does.
RETRY_AFTER_RESPONSES = ("THROTTLED",)
RETRY_AFTER_SECONDS = "1"


@dataclass(frozen=True)
class GatewayAnswer:
    status: int
    body: dict[str, object]
    headers: dict[str, str] = field(default_factory=dict)


def gateway_response_template(code: str, message: str | None) -> str:
    """The VTL body of a gateway response, in docs/api.md's error shape."""
    text = json.dumps(message) if message is not None else "$context.error.messageString"
    return (
        f'{{"error": {{"code": "{code}", "message": {text}, '
        '"request_id": "$context.requestId", "details": []}}'
    )


def gateway_answer(response_type: str, status: int, aws_message: str, request_id: str) -> GatewayAnswer:
    """What API Gateway answers for ``response_type`` with the responses above deployed.

    ``status`` and ``aws_message`` are API Gateway's own for that error; a type without its own
    entry falls back to DEFAULT_4XX or DEFAULT_5XX by status, as API Gateway does.
    """
    default = "DEFAULT_5XX" if status >= 500 else "DEFAULT_4XX"
    configured_status, code, message = GATEWAY_RESPONSES.get(response_type) or GATEWAY_RESPONSES[default]
    body: dict[str, object] = {
        "error": {
            "code": code,
            "message": aws_message if message is None else message,
            "request_id": request_id,
            "details": [],
        }
    }
    headers = {"Retry-After": RETRY_AFTER_SECONDS} if response_type in RETRY_AFTER_RESPONSES else {}
    return GatewayAnswer(int(configured_status) if configured_status else status, body, headers)
