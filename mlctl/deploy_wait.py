"""``mlctl deploy wait``: block a CI deploy stage until the deployment has landed, then smoke-test it.

Success means the endpoint is ``InService`` **on the expected config** and one request through the
HTTPS API answers 200. Everything else exits 1 with one line: ``Failed``, ``RollingBack``,
``UpdateRollbackFailed``, ``OutOfService``, ``InService`` on another config (SageMaker rolled a
blue/green update back on its own, the trap an "InService?" check misses), a timeout, or a smoke
request that does not answer 200.

The expected config is, in order: ``--expected-config``; with ``--model-version N``, the
``ml-platform:expected-config`` tag once the deployer has tagged the endpoint with version N (until
then, approval -> EventBridge -> deployer may still be on its way, so it waits); otherwise the
endpoint's ``ml-platform:expected-config`` tag, the deployer's record of what it deployed last.
"""

from __future__ import annotations

import argparse
import base64
import json
import time
from collections.abc import Callable
from typing import Any

from botocore.exceptions import ClientError

from handlers.common.contracts import INPUT_SCHEMA_FILE, INPUT_SCHEMA_KEY
from handlers.common.errors import ConfigurationError
from handlers.common.input_schema import (
    SCHEMA_URI_ENV,
    AnyInputSchema,
    ImageInputSchema,
    TabularInputSchema,
    TextInputSchema,
    load_input_schema,
)
from handlers.deployer.gate import endpoint_tags
from handlers.deployer.plan import TAG_EXPECTED_CONFIG, TAG_MODEL_PACKAGE, TAG_MODEL_VERSION
from handlers.deployer.verify import DeploymentVerified, describe_endpoint_state, evaluate_endpoint
from handlers.registry.client import ModelRegistry
from mlctl.invoke import post_to_target, predict_url
from mlctl.targets import (
    EXIT_OK,
    EXIT_USAGE,
    CommandError,
    PlatformTarget,
    add_target_arguments,
    api_endpoint,
    client,
    resolve_target,
    run_guarded,
)

DEFAULT_TIMEOUT_SECONDS = 3600.0  # a canary with two 10-minute bakes plus GPU provisioning fits
DEFAULT_POLL_SECONDS = 30.0
HEARTBEAT_SECONDS = 60.0  # CI runners kill jobs that print nothing for too long
SMOKE_TEXT = "mlctl deploy wait smoke request"
MAX_SMOKE_ANSWER_CHARS = 500

Say = Callable[[str], None]


def add_deploy_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``mlctl deploy wait`` on ``commands``."""
    deploy = commands.add_parser("deploy", help="follow deployments of the stack's endpoint")
    actions = deploy.add_subparsers(dest="deploy_command", required=True, metavar="ACTION")
    wait = actions.add_parser(
        "wait",
        help="wait until the endpoint serves the expected config, then send a smoke request",
        description="For CI deploy stages: exit 0 once the endpoint is InService on the expected config "
        "and a smoke request through the HTTPS API answers 200; exit 1 on a failure, a rollback or a "
        "timeout.",
    )
    which = wait.add_mutually_exclusive_group()
    which.add_argument(
        "--expected-config", metavar="NAME", help="the endpoint config that must end up serving"
    )
    which.add_argument(
        "--model-version",
        type=int,
        metavar="N",
        help="wait for the deployer's deployment of this registry version",
    )
    wait.add_argument(
        "--timeout",
        type=float,
        default=DEFAULT_TIMEOUT_SECONDS,
        metavar="SECONDS",
        help="seconds (default 3600)",
    )
    wait.add_argument(
        "--poll",
        type=float,
        default=DEFAULT_POLL_SECONDS,
        metavar="SECONDS",
        help="seconds between checks (default 30)",
    )
    wait.add_argument(
        "--smoke",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="send one request through the HTTPS API once the endpoint is verified (default: on)",
    )
    wait.add_argument(
        "--smoke-body", metavar="JSON", help="the smoke request (default: built from the input schema)"
    )
    add_target_arguments(wait)
    wait.set_defaults(handler=_wait)


def _wait(args: argparse.Namespace) -> int:
    def action() -> int:
        if args.timeout < 0 or args.poll < 0:
            raise CommandError("--timeout and --poll must not be negative", EXIT_USAGE)
        smoke_body = _parse_smoke_body(args.smoke_body) if args.smoke and args.smoke_body else None
        target = resolve_target(args)
        sagemaker = client(target, "sagemaker")
        endpoint = str(target.output("endpointName"))
        clock = time.monotonic
        started = clock()

        def say(message: str) -> None:
            print(f"[{clock() - started:6.0f}s] {message}", flush=True)

        verified = wait_for_deployment(
            sagemaker,
            endpoint,
            expected_config=args.expected_config,
            model_version=args.model_version,
            timeout_seconds=args.timeout,
            poll_seconds=args.poll,
            say=say,
            clock=clock,
        )
        if args.smoke:
            body = smoke_body if smoke_body is not None else default_smoke_body(target, sagemaker, endpoint)
            smoke_test(target, body, say)
        say(f"deployed: {verified.endpoint} serves {verified.config_name}")
        return EXIT_OK

    return run_guarded("deploy wait", action)


def wait_for_deployment(
    sagemaker: Any,
    endpoint: str,
    *,
    expected_config: str | None = None,
    model_version: int | None = None,
    timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS,
    poll_seconds: float = DEFAULT_POLL_SECONDS,
    say: Say = print,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> DeploymentVerified:
    """Poll DescribeEndpoint until the endpoint is InService on the expected config.

    Raises ``DeploymentFailedError`` (failed or rolled back) or :class:`CommandError` (timeout, or
    nothing says which config to expect).
    """
    deadline = clock() + timeout_seconds
    last_line, last_said = "", float("-inf")
    checks = 0
    while True:
        checks += 1
        state = describe_endpoint_state(sagemaker, endpoint)
        if state is None:
            line = f"endpoint {endpoint} does not exist yet"
        else:
            expected, waiting = _expected_config(sagemaker, state.arn, expected_config, model_version)
            if expected is None:
                line = f"endpoint {endpoint} is {state.status} on {state.config_name}; {waiting}"
            else:
                verified = evaluate_endpoint(state, expected)  # raises on a failure or a rollback
                if verified is not None:
                    say(f"endpoint {endpoint} is InService on {expected} ({checks} checks)")
                    return DeploymentVerified(
                        verified.endpoint, verified.config_name, verified.status, checks
                    )
                towards = f" towards {state.pending_config}" if state.pending_config else ""
                line = f"endpoint {endpoint} is {state.status}{towards}; expecting {expected}"
        now = clock()
        if line != last_line or now - last_said >= HEARTBEAT_SECONDS:
            say(line)
            last_line, last_said = line, now
        remaining = deadline - now
        if remaining <= 0:
            raise CommandError(f"timed out after {timeout_seconds:.0f} s ({checks} checks): {line}")
        sleep(min(poll_seconds, remaining))


def _expected_config(
    sagemaker: Any, arn: str | None, explicit: str | None, model_version: int | None
) -> tuple[str | None, str]:
    """The config to expect now, or ``None`` and what is being waited for."""
    if explicit:
        return explicit, ""
    tags = endpoint_tags(sagemaker, arn)
    expected = tags.get(TAG_EXPECTED_CONFIG)
    if model_version is not None:
        deployed = tags.get(TAG_MODEL_VERSION)
        if deployed == str(model_version) and expected:
            return expected, ""
        last = f"its last deployment is version {deployed}" if deployed else "it has no deployment recorded"
        return None, f"waiting for the deployer to deploy version {model_version} ({last})"
    if not expected:
        raise CommandError(
            f"the endpoint has no {TAG_EXPECTED_CONFIG} tag (not deployed by the deployer): "
            "pass --expected-config or --model-version"
        )
    return expected, ""


# --- the smoke request ------------------------------------------------------------------------------------


def smoke_test(target: PlatformTarget, body: bytes, say: Say) -> None:
    """One POST to ``/v1/predict``; anything but 200 is a failed deployment."""
    url, key = api_endpoint(target)
    answer = post_to_target(target, predict_url(url), body, key)
    text = " ".join(answer.body.split())[:MAX_SMOKE_ANSWER_CHARS]
    if answer.status != 200:
        raise CommandError(f"smoke request to {predict_url(url)} answered HTTP {answer.status}: {text}")
    say(f"smoke request: HTTP 200 {text}")


def default_smoke_body(target: PlatformTarget, sagemaker: Any, endpoint: str) -> bytes:
    """A one-instance request built from the model's input schema."""
    schema = _input_schema(target, sagemaker, endpoint)
    if schema is None:
        raise CommandError(
            "the endpoint is deployed, but no input schema was found to build a smoke request: "
            "pass --smoke-body JSON or --no-smoke"
        )
    return json.dumps({"instances": [sample_instance(schema)]}).encode()


def sample_instance(schema: AnyInputSchema) -> Any:
    """One instance the schema accepts (the training means, or zeros, for tabular features)."""
    if isinstance(schema, TextInputSchema):
        return {"text": SMOKE_TEXT[: schema.max_chars]}
    if isinstance(schema, TabularInputSchema):
        return list(schema.means) if schema.means is not None else [0.0] * len(schema.feature_names)
    if isinstance(schema, ImageInputSchema):
        return {"b64": base64.b64encode(bytes(schema.pixel_count)).decode("ascii")}
    raise CommandError(f"no smoke sample for input schema {type(schema).__name__}")


def _input_schema(target: PlatformTarget, sagemaker: Any, endpoint: str) -> AnyInputSchema | None:
    # The prediction API's own schema first: it is what validates the smoke request.
    function = target.optional_output("predictApiFunctionName")
    if function and not target.local:
        configuration = client(target, "lambda").get_function_configuration(FunctionName=str(function))
        variables = (configuration.get("Environment") or {}).get("Variables") or {}
        try:
            return load_input_schema(variables, lambda: client(target, "s3"))
        except ConfigurationError:
            pass  # no schema configured there; the model package may carry one
    # The schema the deployer published for the API (the same file the API reads), then the one
    # the served version's evaluation step wrote next to its report.
    buckets = target.optional_output("bucketNames")
    if isinstance(buckets, dict) and buckets.get("artifacts"):
        schema = _schema_at(target, f"s3://{buckets['artifacts']}/{INPUT_SCHEMA_KEY}")
        if schema is not None:
            return schema
    state = describe_endpoint_state(sagemaker, endpoint)
    package = endpoint_tags(sagemaker, state.arn if state else None).get(TAG_MODEL_PACKAGE)
    report = ModelRegistry(sagemaker).describe(package).evaluation_report_uri if package else None
    if not report:
        return None
    return _schema_at(target, f"{report.rsplit('/', 1)[0]}/{INPUT_SCHEMA_FILE}")


def _schema_at(target: PlatformTarget, uri: str) -> AnyInputSchema | None:
    """The input schema at ``uri``; None where there is none."""
    try:
        return load_input_schema({SCHEMA_URI_ENV: uri}, lambda: client(target, "s3"))
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in {"NoSuchKey", "404", "NoSuchBucket", "AccessDenied"}:
            return None
        raise
    except ConfigurationError as exc:
        raise CommandError(f"the input schema at {uri} is unusable: {exc.message}") from None


def _parse_smoke_body(text: str) -> bytes:
    # Checked before waiting: a typo should not cost a whole deployment's wait.
    try:
        json.loads(text)
    except json.JSONDecodeError as exc:
        raise CommandError(f"--smoke-body is not valid JSON: {exc}", EXIT_USAGE) from None
    return text.encode("utf-8")
