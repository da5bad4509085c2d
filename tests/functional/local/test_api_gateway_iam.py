"""The local API Gateway under IAM auth (``api.auth: iam``): SigV4-signed requests only, refused
as API Gateway refuses them; and local mode starting it that way for a stack whose plan says so."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import ReadOnlyCredentials

from emulator.api_gateway import LocalApiGateway
from emulator.isolation import EMULATOR_CREDENTIALS, AccessKeyPair
from emulator.server import EmulatorConfig
from infra.offline import run_offline
from infra.stack_config import ApiAuth
from mlctl import cli
from mlctl.invoke import sigv4_headers
from mlctl.local.commands import _function_environments, emulator_config, planned_api_auth
from mlctl.local.state import LocalState
from mlctl.local.workflow import StackNames
from mlctl.targets import load_local_state
from tests.functional.local.test_api_gateway import StubHandler, call, gateway_error

REGION = "us-east-1"
BODY = b'{"instances": [[1, 2, 3]]}'
JSON = {"Content-Type": "application/json"}
SIGNATURE_MISMATCH = "The request signature we calculated does not match the signature you provided."


@pytest.fixture
def stub() -> StubHandler:
    return StubHandler(answer={"statusCode": 200, "body": '{"predictions": [1]}'})


@pytest.fixture
def iam_api(stub: StubHandler, start_api: Callable[..., LocalApiGateway]) -> LocalApiGateway:
    return start_api(stub, api_key=None, auth=ApiAuth.IAM, region=REGION)


def signed_by_botocore(
    url: str,
    body: bytes,
    *,
    service: str = "execute-api",
    token: str | None = None,
    at: datetime | None = None,
) -> dict[str, str]:
    """JSON headers signed as any SigV4 client signs, for ``service``, optionally at another time."""
    credentials = ReadOnlyCredentials(*EMULATOR_CREDENTIALS, token)
    request = AWSRequest(method="POST", url=url, data=body, headers=dict(JSON))
    moment = (at or datetime.now(UTC)).replace(tzinfo=None)
    with mock.patch("botocore.auth.get_current_datetime", return_value=moment):
        SigV4Auth(credentials, service, REGION).add_auth(request)
    return dict(request.headers.items())


def predict(api: LocalApiGateway, headers: dict[str, str], body: bytes = BODY) -> Any:
    return call(api.url, "POST", "/v1/predict", body, headers)


def test_a_sigv4_signed_request_reaches_the_handler(iam_api: LocalApiGateway, stub: StubHandler) -> None:
    # GIVEN a request signed by mlctl invoke's signer with the emulator's key pair
    url = f"{iam_api.url}/v1/predict"
    headers = sigv4_headers(url, BODY, dict(JSON), REGION, credentials=EMULATOR_CREDENTIALS)

    # WHEN it is sent
    reply = predict(iam_api, headers)

    # THEN the handler answers, and its event names the signer as IAM auth does (no API key)
    assert reply.status == 200 and reply.json() == {"predictions": [1]}
    identity = stub.calls[0][0]["requestContext"]["identity"]
    assert identity["accessKey"] == EMULATOR_CREDENTIALS.access_key_id
    assert identity["userArn"].startswith("arn:aws:iam::") and identity["apiKey"] is None


@pytest.mark.parametrize("headers", [JSON, {**JSON, "x-api-key": "any-key"}], ids=["bare", "api-key"])
def test_a_request_without_a_signature_is_missing_authentication_token(
    iam_api: LocalApiGateway, stub: StubHandler, headers: dict[str, str]
) -> None:
    # GIVEN an API with IAM auth
    # WHEN a request comes unsigned, with or without an API key
    reply = predict(iam_api, headers)

    # THEN API Gateway's own 403 in the deployed error shape, and the handler is not called
    assert reply.status == 403
    error = gateway_error(reply)
    assert (error["code"], error["message"]) == ("forbidden", "Missing Authentication Token")
    assert stub.calls == []


def wrong_secret(url: str) -> tuple[dict[str, str], bytes]:
    pair = AccessKeyPair(EMULATOR_CREDENTIALS.access_key_id, "not-the-secret")
    return sigv4_headers(url, BODY, dict(JSON), REGION, credentials=pair), BODY


def unknown_access_key(url: str) -> tuple[dict[str, str], bytes]:
    pair = AccessKeyPair("AKIDSOMEONEELSE", EMULATOR_CREDENTIALS.secret_access_key)
    return sigv4_headers(url, BODY, dict(JSON), REGION, credentials=pair), BODY


def body_changed_after_signing(url: str) -> tuple[dict[str, str], bytes]:
    headers = sigv4_headers(url, BODY, dict(JSON), REGION, credentials=EMULATOR_CREDENTIALS)
    return headers, BODY.replace(b"1", b"9")


def another_region(url: str) -> tuple[dict[str, str], bytes]:
    return sigv4_headers(url, BODY, dict(JSON), "eu-west-1", credentials=EMULATOR_CREDENTIALS), BODY


def another_service(url: str) -> tuple[dict[str, str], bytes]:
    return signed_by_botocore(url, BODY, service="lambda"), BODY


def signed_ten_minutes_ago(url: str) -> tuple[dict[str, str], bytes]:
    return signed_by_botocore(url, BODY, at=datetime.now(UTC) - timedelta(minutes=10)), BODY


def signed_ten_minutes_ahead(url: str) -> tuple[dict[str, str], bytes]:
    return signed_by_botocore(url, BODY, at=datetime.now(UTC) + timedelta(minutes=10)), BODY


def with_a_session_token(url: str) -> tuple[dict[str, str], bytes]:
    return signed_by_botocore(url, BODY, token="a-token-the-emulator-never-issued"), BODY


@pytest.mark.parametrize(
    ("forge", "message"),
    [
        (wrong_secret, SIGNATURE_MISMATCH),
        (unknown_access_key, "The security token included in the request is invalid."),
        (body_changed_after_signing, SIGNATURE_MISMATCH),
        (another_region, "Credential should be scoped to a valid region, not 'eu-west-1'."),
        (another_service, "Credential should be scoped to correct service: 'execute-api'."),
        (signed_ten_minutes_ago, "Signature expired: "),
        (signed_ten_minutes_ahead, "Signature not yet current: "),
        (with_a_session_token, "The security token included in the request is invalid."),
    ],
)
def test_a_wrongly_signed_request_is_refused_with_api_gateway_s_reason(
    iam_api: LocalApiGateway,
    stub: StubHandler,
    forge: Callable[[str], tuple[dict[str, str], bytes]],
    message: str,
) -> None:
    # GIVEN a request whose signature does not hold for this API, this moment or this body
    headers, body = forge(f"{iam_api.url}/v1/predict")

    # WHEN it is sent
    reply = predict(iam_api, headers, body)

    # THEN 403 with API Gateway's message for the case, and the handler is not called
    assert reply.status == 403
    error = gateway_error(reply)
    assert error["code"] == "forbidden" and error["message"].startswith(message), error["message"]
    assert stub.calls == []


def test_api_key_mode_is_unchanged_by_signatures(
    start_api: Callable[..., LocalApiGateway], stub: StubHandler
) -> None:
    # GIVEN an API with API-key auth
    api = start_api(stub, api_key="the-key", auth=ApiAuth.API_KEY, region=REGION)
    url = f"{api.url}/v1/predict"

    # WHEN a request is signed but has no key, and another has the key only
    signed = predict(api, sigv4_headers(url, BODY, dict(JSON), REGION, credentials=EMULATOR_CREDENTIALS))
    keyed = predict(api, {**JSON, "x-api-key": "the-key"})

    # THEN the signature is no substitute for the key; the key alone passes
    assert signed.status == 403 and "x-api-key" in gateway_error(signed)["message"]
    assert keyed.status == 200 and len(stub.calls) == 1


def test_an_api_with_iam_auth_takes_no_api_key(stub: StubHandler) -> None:
    # GIVEN / WHEN a gateway with IAM auth is given an API key THEN it refuses to be built
    with pytest.raises(ValueError, match="no API key"):
        LocalApiGateway(stub, "a-key", auth=ApiAuth.IAM)


# --- local mode --------------------------------------------------------------------------------------


@pytest.mark.parametrize(("stack", "auth"), [("prod", ApiAuth.IAM), ("dev", ApiAuth.API_KEY)])
def test_local_mode_starts_the_gateway_with_the_planned_auth(
    stack: str, auth: ApiAuth, tmp_path: Path
) -> None:
    # GIVEN the plan of a stack (prod: api.auth iam; dev: api-key)
    plan = run_offline(stack)

    # WHEN local mode builds the emulator's configuration from it, and writes it
    # (the fallback given is the other mode: the planned methods decide)
    other = ApiAuth.API_KEY if auth is ApiAuth.IAM else ApiAuth.IAM
    config = emulator_config(
        StackNames.from_outputs(plan.outputs), _function_environments(plan), planned_api_auth(plan, other)
    )
    config.write(tmp_path)

    # THEN the gateway's auth is the planned methods'; under IAM no API key exists anywhere
    written = json.loads((tmp_path / "emulator.json").read_text())
    assert config.api_auth is auth and written["api_auth"] == auth.value
    assert EmulatorConfig.read(tmp_path).api_auth is auth
    if auth is ApiAuth.IAM:
        assert config.api_key is None and written["api_key"] is None
    else:
        assert config.api_key and written["api_key"] == config.api_key


def test_mlctl_invoke_local_signs_for_a_platform_without_a_key(
    iam_api: LocalApiGateway, stub: StubHandler, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN local mode's state for an IAM-auth stack: no API key
    state = LocalState(
        stack="prod",
        region=REGION,
        aws_endpoint_url="http://127.0.0.1:9",
        api_url=iam_api.url,
        api_key=None,
        outputs={"apiUrl": iam_api.url},
        emulator_pid=0,
    )
    state.write(tmp_path)
    assert load_local_state(tmp_path / "state.json").api_key is None

    # WHEN `mlctl invoke --local` sends a prediction
    code = cli.main(
        ["invoke", "--body", BODY.decode(), "--local", "--state-file", str(tmp_path / "state.json")]
    )

    # THEN it went through signed with the emulator's key pair, and the answer is printed
    assert code == 0, capsys.readouterr().err
    assert json.loads(capsys.readouterr().out) == {"predictions": [1]}
    headers = stub.calls[0][0]["headers"]
    assert headers["Authorization"].startswith(f"AWS4-HMAC-SHA256 Credential={EMULATOR_CREDENTIALS[0]}/")
