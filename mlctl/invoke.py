"""``mlctl invoke``: one prediction through the platform's HTTPS API (``POST <apiUrl>/v1/predict``).

The request goes through API Gateway and the prediction Lambda exactly as a client's would, with
the stack's API key (``x-api-key``) or, for a stack with IAM auth, signed with SigV4, so it checks
the whole path, not just the endpoint.
Only the standard library speaks HTTP here: no new dependency for one POST.
"""

from __future__ import annotations

import argparse
import json
import sys
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from emulator.isolation import EMULATOR_CREDENTIALS, AccessKeyPair
from mlctl.targets import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_USAGE,
    CommandError,
    PlatformTarget,
    add_target_arguments,
    api_endpoint,
    resolve_target,
    run_guarded,
)

PREDICT_PATH = "/v1/predict"
DEFAULT_TIMEOUT_SECONDS = 30.0  # above API Gateway's own 29 s, so its 504 reaches us instead
MAX_ERROR_CHARS = 2000


@dataclass(frozen=True)
class HttpAnswer:
    status: int
    body: str

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300


def predict_url(api_url: str) -> str:
    return api_url.rstrip("/") + PREDICT_PATH


def post_json(
    url: str,
    body: bytes,
    api_key: str | None,
    timeout: float = DEFAULT_TIMEOUT_SECONDS,
    sign_region: str | None = None,
    *,
    credentials: AccessKeyPair | None = None,
) -> HttpAnswer:
    """POST ``body`` as JSON; any HTTP status is an answer, an unreachable API a :class:`CommandError`.

    Without an API key, a request to an ``execute-api`` URL (or any, given ``sign_region``) is signed
    with SigV4 and ``credentials`` (by default the caller's AWS credentials): the stack's API uses IAM
    auth then (``api.auth: iam``).
    """
    headers = {"Content-Type": "application/json", "Accept": "application/json"}
    if api_key:
        headers["x-api-key"] = api_key
    if not url.startswith(("https://", "http://")):
        raise CommandError(f"the API URL {url!r} is not an http(s) URL")
    region = sign_region or (None if api_key else _execute_api_region(url))
    if region:
        headers = sigv4_headers(url, body, headers, region, credentials=credentials)
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return HttpAnswer(response.status, response.read().decode("utf-8", errors="replace"))
    except urllib.error.HTTPError as exc:
        return HttpAnswer(exc.code, exc.read().decode("utf-8", errors="replace"))
    except (urllib.error.URLError, TimeoutError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise CommandError(f"cannot reach {url}: {reason}") from None


def _execute_api_region(url: str) -> str | None:
    """``eu-west-1`` of ``https://abc.execute-api.eu-west-1.amazonaws.com/live``, else None."""
    host = urllib.parse.urlsplit(url).hostname or ""
    parts = host.split(".")
    if len(parts) >= 4 and parts[1] == "execute-api":
        return parts[2]
    return None


def post_json_locally(
    url: str, body: bytes, api_key: str | None, region: str, timeout: float = DEFAULT_TIMEOUT_SECONDS
) -> HttpAnswer:
    """:func:`post_json` to local mode's API: with its key, or, under IAM auth (no key), signed for
    ``region`` with the emulator's credentials, the only ones its gateway accepts."""
    if api_key:
        return post_json(url, body, api_key, timeout)
    return post_json(url, body, None, timeout, sign_region=region, credentials=EMULATOR_CREDENTIALS)


def post_to_target(
    target: PlatformTarget,
    url: str,
    body: bytes,
    api_key: str | None,
    timeout: float = DEFAULT_TIMEOUT_SECONDS,
) -> HttpAnswer:
    """:func:`post_json` to ``target``'s API, signed as its gateway expects (see above)."""
    if target.local:
        return post_json_locally(url, body, api_key, target.region, timeout)
    return post_json(url, body, api_key, timeout)


def sigv4_headers(
    url: str,
    body: bytes,
    headers: dict[str, str],
    region: str,
    *,
    credentials: AccessKeyPair | None = None,
    method: str = "POST",
) -> dict[str, str]:
    """``headers`` plus the SigV4 signature API Gateway's IAM auth checks (service ``execute-api``),
    made with ``credentials`` or, without them, the caller's AWS credentials."""
    from botocore.auth import SigV4Auth  # noqa: PLC0415
    from botocore.awsrequest import AWSRequest  # noqa: PLC0415
    from botocore.credentials import ReadOnlyCredentials  # noqa: PLC0415
    from botocore.session import Session  # noqa: PLC0415

    if credentials is not None:
        signing = ReadOnlyCredentials(credentials.access_key_id, credentials.secret_access_key, None)
    else:
        found = Session().get_credentials()
        if found is None:
            raise CommandError("the API uses IAM auth and no AWS credentials were found to sign the request")
        signing = found.get_frozen_credentials()
    request = AWSRequest(method=method, url=url, data=body, headers=headers)
    SigV4Auth(signing, "execute-api", region).add_auth(request)
    return dict(request.headers.items())


def add_invoke_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``mlctl invoke --body JSON | --file PATH [--raw]`` on ``commands``."""
    invoke = commands.add_parser(
        "invoke",
        help="send one prediction request through the HTTPS API",
        description="POST a JSON body to <apiUrl>/v1/predict with the stack's API key and print the answer.",
    )
    source = invoke.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--body", metavar="JSON", help='the request as JSON, e.g. \'{"instance": {"text": "hi"}}\''
    )
    source.add_argument(
        "--file", type=Path, metavar="PATH", help="a file holding the request JSON ('-' reads stdin)"
    )
    invoke.add_argument(
        "--raw", action="store_true", help="send the body unchecked and print the answer exactly as received"
    )
    invoke.add_argument(
        "--timeout",
        type=float,
        default=DEFAULT_TIMEOUT_SECONDS,
        metavar="SECONDS",
        help="seconds (default 30)",
    )
    add_target_arguments(invoke)
    invoke.set_defaults(handler=_invoke)


def _invoke(args: argparse.Namespace) -> int:
    def action() -> int:
        body = _request_body(args)
        target = resolve_target(args)
        url, key = api_endpoint(target)
        answer = post_to_target(target, predict_url(url), body, key, timeout=args.timeout)
        if not answer.ok:
            print(f"mlctl invoke: HTTP {answer.status}: {_one_line(answer.body)}", file=sys.stderr)
            return EXIT_FAILED
        print(answer.body if args.raw else _pretty(answer.body))
        return EXIT_OK

    return run_guarded("invoke", action)


def _request_body(args: argparse.Namespace) -> bytes:
    if args.file is not None:
        try:
            text = sys.stdin.read() if str(args.file) == "-" else Path(args.file).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise CommandError(f"cannot read {args.file}: {exc}", EXIT_USAGE) from None
    else:
        text = args.body
    if not args.raw:
        # Caught here, not by the API: a typo in a shell quote is not worth a round trip.
        try:
            json.loads(text)
        except json.JSONDecodeError as exc:
            raise CommandError(
                f"the request body is not valid JSON: {exc} (use --raw to send it anyway)", EXIT_USAGE
            ) from None
    return text.encode("utf-8")


def _pretty(body: str) -> str:
    try:
        return json.dumps(json.loads(body), indent=2)
    except json.JSONDecodeError:
        return body


def _one_line(body: str) -> str:
    try:
        text = json.dumps(json.loads(body), separators=(",", ":"))
    except json.JSONDecodeError:
        text = " ".join(body.split())
    return text[:MAX_ERROR_CHARS]
