"""Calling the SageMaker endpoint: the timeout chain, the lazy client, the errors it can answer.

The timeout chain lives here and only here: botocore read timeout < Lambda timeout < API Gateway's
29 s integration timeout, with the retries included, so the caller always gets our JSON answer
(504) rather than API Gateway's bare timeout. ``TimeoutChain.check`` enforces it at cold start.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

from botocore.config import Config
from botocore.exceptions import ClientError, ConnectTimeoutError, EndpointConnectionError, ReadTimeoutError

from handlers.api.errors import (
    EndpointThrottledError,
    EndpointTimeoutError,
    ModelInvocationError,
    ModelRejectedInputError,
)
from handlers.common.aws_clients import LazyClient, botocore_client
from handlers.common.errors import ConfigurationError

if TYPE_CHECKING:
    from mypy_boto3_sagemaker_runtime import SageMakerRuntimeClient

API_GATEWAY_TIMEOUT_SECONDS = 29.0  # REST API integration timeout (the default hard limit)
DEFAULT_LAMBDA_TIMEOUT_SECONDS = 25.0
LAMBDA_TIMEOUT_ENV = "LAMBDA_TIMEOUT_SECONDS"
ENDPOINT_NAME_ENV = "ENDPOINT_NAME"
ENDPOINT_URL_ENV = "ENDPOINT_URL_SAGEMAKER_RUNTIME"
RETRY_AFTER_SECONDS = 1
# Error codes meaning "the endpoint has no capacity now": the caller should retry later (503).
_BUSY_CODES = frozenset({"ThrottlingException", "ModelNotReadyException", "ServiceUnavailable"})


@dataclass(frozen=True)
class TimeoutChain:
    """Every timeout of the prediction path, derived from the Lambda timeout.

    Worst case: ``max_attempts`` x (connect + read) + the retry backoffs + ``margin`` (time left to
    log and answer) must fit in the Lambda timeout, which must be below API Gateway's 29 s.
    """

    lambda_timeout: float = DEFAULT_LAMBDA_TIMEOUT_SECONDS
    connect_timeout: float = 1.0
    max_attempts: int = 3
    margin: float = 1.0
    api_gateway_timeout: float = API_GATEWAY_TIMEOUT_SECONDS

    @property
    def backoff_budget(self) -> float:
        # botocore "standard" mode sleeps at most 1 s x 2**i before retry i+1 (throttling; less
        # for other errors), capped at 20 s.
        return float(sum(min(2**i, 20) for i in range(self.max_attempts - 1)))

    @property
    def read_timeout(self) -> float:
        per_attempt = (self.lambda_timeout - self.margin - self.backoff_budget) / self.max_attempts
        return math.floor((per_attempt - self.connect_timeout) * 10) / 10

    @property
    def worst_case_seconds(self) -> float:
        attempts = self.max_attempts * (self.connect_timeout + self.read_timeout)
        return attempts + self.backoff_budget

    def check(self) -> TimeoutChain:
        """Raise ``ConfigurationError`` unless read < worst case < Lambda timeout < API Gateway."""
        if not 0 < self.read_timeout < self.lambda_timeout < self.api_gateway_timeout:
            raise ConfigurationError(
                f"timeout chain broken: read {self.read_timeout}s, Lambda {self.lambda_timeout}s, "
                f"API Gateway {self.api_gateway_timeout}s (each must be below the next)"
            )
        if self.worst_case_seconds + self.margin > self.lambda_timeout:
            raise ConfigurationError("retries and timeouts do not fit in the Lambda timeout")
        if not 1 <= self.max_attempts <= 3:
            raise ConfigurationError("at most 3 attempts per request")
        return self

    def botocore_config(self) -> Config:
        return Config(
            connect_timeout=self.connect_timeout,
            read_timeout=self.read_timeout,
            # total_max_attempts counts the first try; botocore's "max_attempts" counts only the
            # retries, so max_attempts=3 would mean 4 calls and break the budget above.
            retries={"total_max_attempts": self.max_attempts, "mode": "standard"},
        )

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> TimeoutChain:
        env = os.environ if environ is None else environ
        raw = env.get(LAMBDA_TIMEOUT_ENV, "") or str(DEFAULT_LAMBDA_TIMEOUT_SECONDS)
        try:
            lambda_timeout = float(raw)
        except ValueError:
            raise ConfigurationError(f"{LAMBDA_TIMEOUT_ENV}={raw!r} is not a number") from None
        return cls(lambda_timeout=lambda_timeout).check()


def _make_runtime_client() -> SageMakerRuntimeClient:
    endpoint_url = os.environ.get(ENDPOINT_URL_ENV) or None  # local mode points this at a model server
    client = botocore_client("sagemaker-runtime", TimeoutChain.from_env().botocore_config(), endpoint_url)
    return cast("SageMakerRuntimeClient", client)


runtime_client: LazyClient[SageMakerRuntimeClient] = LazyClient(_make_runtime_client)


@dataclass(frozen=True)
class EndpointReply:
    """The container's answer as it came: its bytes, their media type, the variant that answered."""

    payload: bytes
    content_type: str | None
    variant: str | None


def invoke_endpoint(endpoint_name: str, body: bytes) -> EndpointReply:
    """POST ``body`` (JSON) to the endpoint; botocore and endpoint failures become domain errors."""
    try:
        response = runtime_client.get().invoke_endpoint(
            EndpointName=endpoint_name,
            ContentType="application/json",
            Accept="application/json",
            Body=body,
        )
        payload = response["Body"].read()
    except ClientError as exc:
        raise _domain_error(exc) from exc
    except (ReadTimeoutError, ConnectTimeoutError) as exc:
        raise EndpointTimeoutError("the model endpoint did not answer in time") from exc
    except EndpointConnectionError as exc:
        raise EndpointThrottledError("the model endpoint cannot be reached", RETRY_AFTER_SECONDS) from exc
    return EndpointReply(payload, response.get("ContentType"), response.get("InvokedProductionVariant"))


def _domain_error(exc: ClientError) -> Exception:
    error = exc.response.get("Error", {})
    code = error.get("Code", "")
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    if code == "ModelError":
        original = _original_status(exc.response)
        if original is not None and 400 <= original < 500:  # noqa: PLR2004 - the 4xx range
            # The container refused the input itself: the caller's mistake (the model's message,
            # which may hold internals, stays in the log).
            return ModelRejectedInputError(f"the model refused this input (it answered {original})")
        return ModelInvocationError("the model failed on this request")
    if code in _BUSY_CODES or status == 429:
        return EndpointThrottledError("the model endpoint is busy; retry later", RETRY_AFTER_SECONDS)
    return exc  # anything else is our misconfiguration (unknown endpoint, IAM): a 500


def _original_status(response: Mapping[str, Any]) -> int | None:
    """The container's own status of a ``ModelError`` (a modelled field of the error)."""
    raw = response.get("OriginalStatusCode", response.get("Error", {}).get("OriginalStatusCode"))
    try:
        return int(raw) if raw is not None else None
    except (TypeError, ValueError):
        return None
