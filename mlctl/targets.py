"""Where the platform lives: a deployed Pulumi stack on AWS, or local mode on this machine.

Every operations command (``models``, ``deploy wait``, ``train``, ``invoke``) takes the same target
options (:func:`add_target_arguments`) and resolves them once (:func:`resolve_target`), in this order:

1. ``--local``: the local state file (``.mlctl-local/state.json`` under the repository root, or
   ``--state-file``), written by local mode, with the keys ``stack``, ``region``,
   ``aws_endpoint_url``, ``api_url``, ``api_key`` (null when the stack's API uses IAM auth),
   and ``outputs``;
2. ``--outputs-file PATH``: what ``pulumi stack output --json --show-secrets`` printed;
3. otherwise ``pulumi stack output --json --show-secrets --stack <stack>``, run here.

:func:`run_guarded` turns the failures an operator can expect (AWS errors, registry and deployer
errors, missing outputs) into one line on stderr and an exit code: no stack traces.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from emulator.isolation import EMULATOR_CREDENTIALS
from handlers.common.aws_clients import profile_free_session
from handlers.common.errors import HandlerError
from mlctl.local.state import DEFAULT_STATE_DIR, PROJECT_ROOT, STATE_FILE

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2

DEFAULT_STACK = "dev"
LOCAL_STATE_KEYS: dict[str, type | tuple[type, ...]] = {
    "stack": str,
    "region": str,
    "aws_endpoint_url": str,
    "api_url": str,
    "api_key": (str, type(None)),  # None: IAM auth, requests are signed instead
    "outputs": dict,
}
PULUMI_TIMEOUT_SECONDS = 120
# moto accepts any key; boto3 only needs one to sign requests, so it signs with the emulator's own.
LOCAL_DUMMY_CREDENTIALS = {
    "aws_access_key_id": EMULATOR_CREDENTIALS.access_key_id,
    "aws_secret_access_key": EMULATOR_CREDENTIALS.secret_access_key,
}


class CommandError(Exception):
    """An expected failure of a command: printed as one line, exits with ``exit_code``."""

    def __init__(self, message: str, exit_code: int = EXIT_FAILED) -> None:
        super().__init__(message)
        self.exit_code = exit_code


class TargetError(CommandError):
    """The platform cannot be found: no state file, no Pulumi CLI, an output missing (exit 2)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, EXIT_USAGE)


@dataclass(frozen=True)
class PlatformTarget:
    """One deployed (or local) platform: its stack outputs and how to reach its APIs."""

    stack: str
    region: str
    outputs: dict[str, Any]
    aws_endpoint_url: str | None = None  # local mode: every AWS client goes there
    api_url: str | None = None
    api_key: str | None = None

    @property
    def local(self) -> bool:
        return self.aws_endpoint_url is not None

    def output(self, key: str) -> Any:
        """A stack output; a missing or empty one is a :class:`TargetError` naming it and the stack."""
        value = self.outputs.get(key)
        if value is None or value == "":
            raise TargetError(
                f"stack {self.stack!r} has no output {key!r} (was it deployed with this version?)"
            )
        return value

    def optional_output(self, key: str) -> Any:
        return self.outputs.get(key)


# --- command-line options -----------------------------------------------------------------------------


def add_target_arguments(parser: argparse.ArgumentParser) -> None:
    """The options every operations command shares, so they mean the same thing everywhere."""
    group = parser.add_argument_group("target")
    group.add_argument(
        "--stack", default=DEFAULT_STACK, metavar="NAME", help="Pulumi stack name (default: dev)"
    )
    group.add_argument(
        "--local", action="store_true", help="operate the platform running on this machine (local mode)"
    )
    group.add_argument(
        "--state-file",
        type=Path,
        default=None,
        metavar="PATH",
        help=f"local mode's state file (default: {DEFAULT_STATE_DIR.name}/{STATE_FILE} in the repository)",
    )
    group.add_argument(
        "--outputs-file",
        type=Path,
        default=None,
        metavar="PATH",
        help="JSON from 'pulumi stack output --json --show-secrets' instead of running pulumi",
    )


def resolve_target(args: argparse.Namespace) -> PlatformTarget:
    """The target the options name (see the module docstring for the order)."""
    stack = str(getattr(args, "stack", None) or DEFAULT_STACK)
    if getattr(args, "local", False):
        return load_local_state(getattr(args, "state_file", None) or DEFAULT_STATE_DIR / STATE_FILE)
    outputs_file = getattr(args, "outputs_file", None)
    outputs = read_outputs_file(outputs_file) if outputs_file else pulumi_stack_outputs(stack)
    return target_from_outputs(stack, outputs)


# --- the three sources ----------------------------------------------------------------------------------


def load_local_state(path: Path) -> PlatformTarget:
    """Local mode's state file; every key must be there with the right type."""
    document = _read_json(
        path, f"no local platform state at {path}: start local mode first or pass --state-file"
    )
    if not isinstance(document, dict):
        raise TargetError(f"local state file {path} is not a JSON object")
    problems = [
        f"{key!r} missing" if key not in document else f"{key!r} is not a {_type_name(kind)}"
        for key, kind in LOCAL_STATE_KEYS.items()
        if not isinstance(document.get(key), kind)
    ]
    if problems:
        raise TargetError(f"local state file {path} is invalid: {'; '.join(problems)}")
    return PlatformTarget(
        stack=document["stack"],
        region=document["region"],
        outputs=dict(document["outputs"]),
        aws_endpoint_url=document["aws_endpoint_url"],
        api_url=document["api_url"],
        api_key=document["api_key"],
    )


def read_outputs_file(path: Path) -> dict[str, Any]:
    document = _read_json(path, f"outputs file {path} does not exist")
    if not isinstance(document, dict):
        raise TargetError(f"outputs file {path} is not a JSON object of stack outputs")
    return document


def pulumi_stack_outputs(stack: str) -> dict[str, Any]:
    """``pulumi stack output --json --show-secrets --stack <stack>`` in the Pulumi project."""
    executable = shutil.which("pulumi")
    if executable is None:
        raise TargetError(
            "the pulumi CLI is not installed (or not on PATH): install it, or pass --outputs-file "
            "with the JSON of 'pulumi stack output --json --show-secrets'"
        )
    command = [executable, "stack", "output", "--json", "--show-secrets", "--stack", stack]
    try:
        result = subprocess.run(
            command,
            cwd=PROJECT_ROOT,
            capture_output=True,
            text=True,
            check=False,
            timeout=PULUMI_TIMEOUT_SECONDS,
        )
    except subprocess.TimeoutExpired:
        raise TargetError(f"'pulumi stack output' for stack {stack!r} did not answer in time") from None
    if result.returncode != 0:
        last_line = next((line for line in reversed(result.stderr.splitlines()) if line.strip()), "")
        raise TargetError(
            f"'pulumi stack output --stack {stack}' failed: {last_line.strip() or result.returncode}"
        )
    try:
        outputs = json.loads(result.stdout)
    except json.JSONDecodeError:
        raise TargetError(f"'pulumi stack output --stack {stack}' did not print JSON") from None
    if not isinstance(outputs, dict):
        raise TargetError(f"'pulumi stack output --stack {stack}' did not print a JSON object")
    return outputs


def target_from_outputs(stack: str, outputs: Mapping[str, Any]) -> PlatformTarget:
    """A target on AWS: the region and API URL come from the outputs (the API key is looked up later)."""
    region = outputs.get("region") or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
    if not region:
        raise TargetError(f"stack {stack!r} has no output 'region' and no AWS_REGION is set")
    api_url = outputs.get("apiUrl")
    return PlatformTarget(
        stack=stack, region=str(region), outputs=dict(outputs), api_url=str(api_url) if api_url else None
    )


# --- clients and the API ----------------------------------------------------------------------------------


def client(target: PlatformTarget, service: str, config: Config | None = None) -> Any:
    """A boto3 client for ``service`` in the target's region (and, locally, at its emulator)."""
    kwargs: dict[str, Any] = {"region_name": target.region}
    if config is not None:
        kwargs["config"] = config
    if target.aws_endpoint_url:
        # The emulator's own credentials, never the user's: nothing of theirs goes to a local process,
        # and a missing AWS_PROFILE does not break a local command.
        session = boto3.session.Session(botocore_session=profile_free_session())
        return session.client(  # type: ignore[call-overload]
            service, endpoint_url=target.aws_endpoint_url, **LOCAL_DUMMY_CREDENTIALS, **kwargs
        )
    return boto3.client(service, **kwargs)  # type: ignore[call-overload]


def api_endpoint(target: PlatformTarget) -> tuple[str, str | None]:
    """The prediction API's base URL and the API key to send (``None`` when the stack has no key)."""
    url = target.api_url or target.output("apiUrl")
    if target.local:
        return str(url), target.api_key
    key_id = target.optional_output("apiKeyId")
    if not key_id:
        return str(url), None
    response = client(target, "apigateway").get_api_key(apiKey=str(key_id), includeValue=True)
    return str(url), response.get("value")


# --- one-line failures --------------------------------------------------------------------------------


def run_guarded(command: str, action: Callable[[], int]) -> int:
    """Run a command; expected failures become ``mlctl <command>: <message>`` on stderr."""
    try:
        return int(action())
    except CommandError as exc:
        return fail(command, str(exc), exc.exit_code)
    except ClientError as exc:
        error = exc.response.get("Error", {})
        operation = getattr(exc, "operation_name", "request")
        return fail(command, f"{operation} failed: {error.get('Code')}: {error.get('Message')}")
    except BotoCoreError as exc:  # no credentials, no network, an emulator that is down
        return fail(command, str(exc))
    except HandlerError as exc:  # registry and deployer errors carry a one-line message
        return fail(command, exc.message)


def fail(command: str, message: str, exit_code: int = EXIT_FAILED) -> int:
    print(f"mlctl {command}: {' '.join(message.split())}", file=sys.stderr)
    return exit_code


def _read_json(path: Path, missing: str) -> Any:
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise TargetError(missing) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise TargetError(f"cannot read {path}: {exc}") from None
    except json.JSONDecodeError as exc:
        raise TargetError(f"{path} is not valid JSON: {exc}") from None


def _type_name(kind: type | tuple[type, ...]) -> str:
    names: dict[type, str] = {str: "string", dict: "JSON object", type(None): "null"}
    kinds = kind if isinstance(kind, tuple) else (kind,)
    return " or ".join(names.get(k, k.__name__) for k in kinds)
