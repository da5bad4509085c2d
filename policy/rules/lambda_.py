"""Lambda: tracing, concurrency, runtime, environment, permissions, async failure handling, logs."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from policy.rules import MANDATORY, OURS, Context, Resource, Rule, StackRule, dig, number

FUNCTION = "aws:lambda/function:Function"
PERMISSION = "aws:lambda/permission:Permission"
EVENT_INVOKE_CONFIG = "aws:lambda/functionEventInvokeConfig:FunctionEventInvokeConfig"
LOG_GROUP = "aws:cloudwatch/logGroup:LogGroup"
SUPPORTED_RUNTIMES = frozenset(
    {"python3.10", "python3.11", "python3.12", "python3.13", "nodejs20.x", "nodejs22.x", "java17",
     "java21", "dotnet8", "ruby3.3", "ruby3.4", "provided.al2023", "provided.al2"}
)  # fmt: skip
# Principals that invoke a function asynchronously: their failures need a destination or a DLQ.
ASYNC_PRINCIPALS = frozenset({"events.amazonaws.com", "s3.amazonaws.com", "sns.amazonaws.com"})
SECRET_NAME = re.compile(r"(SECRET|PASSWORD|PASSWD|PRIVATE_KEY|ACCESS_KEY|API_KEY|TOKEN|CREDENTIAL)", re.I)
SECRET_VALUE = re.compile(r"(AKIA|ASIA)[A-Z0-9]{16}|-----BEGIN [A-Z ]*PRIVATE KEY-----")


def _tracing(props: Mapping[str, Any], _: Context) -> str | None:
    mode = dig(props, "tracingConfig", "mode")
    return None if mode == "Active" else f"X-Ray tracing mode is {mode!r}"


def _reserved_concurrency(props: Mapping[str, Any], _: Context) -> str | None:
    value = number(props.get("reservedConcurrentExecutions"))
    return None if value is not None and value >= 1 else "no reserved concurrency"


def _env_kms(props: Mapping[str, Any], _: Context) -> str | None:
    if not dig(props, "environment", "variables"):
        return None
    return None if props.get("kmsKeyArn") else "environment variables are not encrypted with a KMS key"


def _no_secrets(props: Mapping[str, Any], _: Context) -> str | None:
    variables = dig(props, "environment", "variables") or {}
    suspicious = sorted(
        str(name)
        for name, value in variables.items()
        if SECRET_NAME.search(str(name)) or SECRET_VALUE.search(str(value))
    )
    return f"environment looks like it holds secrets: {suspicious}" if suspicious else None


def _runtime(props: Mapping[str, Any], _: Context) -> str | None:
    if props.get("packageType") == "Image":
        return None
    runtime = props.get("runtime")
    return None if runtime in SUPPORTED_RUNTIMES else f"runtime {runtime!r} is not a supported runtime"


def _explicit(key: str, what: str) -> Any:
    def check(props: Mapping[str, Any], _: Context) -> str | None:
        return None if number(props.get(key)) else f"no explicit {what}"

    return check


def _permission_source_arn(props: Mapping[str, Any], _: Context) -> str | None:
    principal = str(props.get("principal", ""))
    if principal.endswith(".amazonaws.com") and not props.get("sourceArn"):
        return f"permission for {principal} has no sourceArn"
    return None


def _permission_principal(props: Mapping[str, Any], _: Context) -> str | None:
    return "permission grants invoke to '*'" if props.get("principal") == "*" else None


def _invoke_config_on_failure(props: Mapping[str, Any], _: Context) -> str | None:
    destination = dig(props, "destinationConfig", "onFailure", "destination")
    return None if destination else "async invoke config has no on-failure destination"


def _function_name(resource: Resource) -> str:
    return str(resource.props.get("name") or resource.name)


def _async_failures_handled(resources: Sequence[Resource], _: Context) -> list[tuple[Resource, str]]:
    async_targets = {
        str(r.props.get("function"))
        for r in resources
        if r.type == PERMISSION and r.props.get("principal") in ASYNC_PRINCIPALS
    }
    handled = {
        str(r.props.get("functionName"))
        for r in resources
        if r.type == EVENT_INVOKE_CONFIG and dig(r.props, "destinationConfig", "onFailure", "destination")
    }
    found = []
    for function in (r for r in resources if r.type == FUNCTION):
        name = _function_name(function)
        if (
            name in async_targets
            and name not in handled
            and not dig(function.props, "deadLetterConfig", "targetArn")
        ):
            found.append(
                (function, f"{name} is invoked asynchronously with no on-failure destination or DLQ")
            )
    return found


def _log_group_declared(resources: Sequence[Resource], _: Context) -> list[tuple[Resource, str]]:
    groups = {str(r.props.get("name")) for r in resources if r.type == LOG_GROUP}
    found = []
    for function in (r for r in resources if r.type == FUNCTION):
        group = dig(function.props, "loggingConfig", "logGroup") or f"/aws/lambda/{_function_name(function)}"
        if group not in groups:
            found.append((function, f"log group {group} is not declared (no retention, no KMS)"))
    return found


RULES = [
    Rule("lambda-tracing", "Functions trace with X-Ray (Active)", MANDATORY,
         ("CKV_AWS_50",), (FUNCTION,), _tracing),
    Rule("lambda-reserved-concurrency", "Functions reserve concurrency", MANDATORY,
         ("CKV_AWS_115",), (FUNCTION,), _reserved_concurrency),
    Rule("lambda-env-kms", "Environment variables are encrypted with a customer-managed key", MANDATORY,
         ("CKV_AWS_173",), (FUNCTION,), _env_kms),
    Rule("lambda-no-secrets-in-env", "No secrets in environment variables", MANDATORY,
         ("CKV_AWS_45",), (FUNCTION,), _no_secrets),
    Rule("lambda-supported-runtime", "Functions use a supported runtime", MANDATORY,
         ("CKV_AWS_363", "Lambda.2"), (FUNCTION,), _runtime),
    Rule("lambda-explicit-timeout", "Functions set an explicit timeout", MANDATORY,
         (OURS,), (FUNCTION,), _explicit("timeout", "timeout")),
    Rule("lambda-explicit-memory", "Functions set an explicit memory size", MANDATORY,
         (OURS,), (FUNCTION,), _explicit("memorySize", "memory size")),
    Rule("lambda-permission-source-arn", "Service permissions are scoped with a sourceArn", MANDATORY,
         ("CKV_AWS_364",), (PERMISSION,), _permission_source_arn),
    Rule("lambda-permission-no-wildcard", "No permission lets '*' invoke a function", MANDATORY,
         ("CKV_AWS_301", "Lambda.1"), (PERMISSION,), _permission_principal),
    Rule("lambda-invoke-config-on-failure", "Async invoke configs name an on-failure destination",
         MANDATORY, ("CKV_AWS_116",), (EVENT_INVOKE_CONFIG,), _invoke_config_on_failure),
]  # fmt: skip

STACK_RULES = [
    StackRule("lambda-async-on-failure",
              "Functions invoked asynchronously (EventBridge, S3, SNS) have an on-failure destination or DLQ",
              MANDATORY, ("CKV_AWS_116",), _async_failures_handled),
    StackRule("lambda-log-group", "Each function's log group is declared (so it has retention and KMS)",
              MANDATORY, ("CKV_AWS_338", "CKV_AWS_158"), _log_group_declared),
]  # fmt: skip
