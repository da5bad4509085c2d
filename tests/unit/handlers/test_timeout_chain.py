"""The timeout chain: botocore read timeout < Lambda timeout < API Gateway's 29 s, retries included."""

from __future__ import annotations

from typing import Any

import pytest

from handlers.api import endpoint_client
from handlers.api.endpoint_client import API_GATEWAY_TIMEOUT_SECONDS, TimeoutChain
from handlers.common.errors import ConfigurationError


def test_default_chain_fits_inside_api_gateway() -> None:
    # GIVEN the default chain (Lambda timeout 25 s)
    chain = TimeoutChain().check()
    # THEN each timeout is below the next, and all attempts with their backoff fit in the Lambda timeout
    assert 0 < chain.connect_timeout < chain.read_timeout < chain.lambda_timeout < API_GATEWAY_TIMEOUT_SECONDS
    assert chain.worst_case_seconds + chain.margin <= chain.lambda_timeout
    assert chain.max_attempts == 3


def test_the_runtime_client_is_built_with_the_chain(monkeypatch: pytest.MonkeyPatch) -> None:
    # GIVEN the environment of a deployed function with a 20 s timeout and a local endpoint URL
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("LAMBDA_TIMEOUT_SECONDS", "20")
    monkeypatch.setenv("ENDPOINT_URL_SAGEMAKER_RUNTIME", "http://127.0.0.1:8080")
    endpoint_client.runtime_client.set(None)
    try:
        # WHEN the lazy client is first used
        client = endpoint_client.runtime_client.get()
    finally:
        endpoint_client.runtime_client.set(None)
    # THEN its botocore config carries the chain derived from 20 s, and it points at the local server
    chain = TimeoutChain(lambda_timeout=20)
    config: Any = client.meta.config  # the stubs do not list Config's attributes
    assert config.read_timeout == chain.read_timeout < 20
    assert config.connect_timeout == chain.connect_timeout
    # botocore's "max_attempts" counts retries (3 would be 4 calls); total_max_attempts counts calls
    assert config.retries == {"total_max_attempts": 3, "mode": "standard"}
    assert client.meta.endpoint_url == "http://127.0.0.1:8080"


@pytest.mark.parametrize("seconds", ["29", "30", "4", "soon"])
def test_a_lambda_timeout_that_breaks_the_chain_is_refused(seconds: str) -> None:
    # GIVEN a Lambda timeout at/over API Gateway's, too short for three attempts, or not a number
    # WHEN / THEN the configuration is refused at cold start
    with pytest.raises(ConfigurationError):
        TimeoutChain.from_env({"LAMBDA_TIMEOUT_SECONDS": seconds})
