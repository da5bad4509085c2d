"""API Gateway (REST): logging, tracing, auth, validation, throttling, caching, TLS, WAF."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from policy.rules import ADVISORY, MANDATORY, OURS, Context, Resource, Rule, StackRule, dig, number

STAGE = "aws:apigateway/stage:Stage"
METHOD = "aws:apigateway/method:Method"
METHOD_SETTINGS = "aws:apigateway/methodSettings:MethodSettings"
INTEGRATION = "aws:apigateway/integration:Integration"
USAGE_PLAN = "aws:apigateway/usagePlan:UsagePlan"
DOMAIN_NAME = "aws:apigateway/domainName:DomainName"
WAF_ASSOCIATION = "aws:wafv2/webAclAssociation:WebAclAssociation"
WEB_ACL = "aws:wafv2/webAcl:WebAcl"
BODY_METHODS = ("POST", "PUT", "PATCH")
MAX_INTEGRATION_TIMEOUT_MS = 29000


def _access_logging(props: Mapping[str, Any], _: Context) -> str | None:
    return (
        None if dig(props, "accessLogSettings", "destinationArn") else "stage has no access log destination"
    )


def _access_log_json(props: Mapping[str, Any], _: Context) -> str | None:
    log_format = dig(props, "accessLogSettings", "format")
    if log_format is None:
        return None
    # $context values may be unquoted (e.g. a JSON-escaped message): substitute before parsing.
    sample = str(log_format).replace("$context.error.messageString", '"m"')
    try:
        json.loads(sample)
    except ValueError:
        return "access log format is not JSON"
    return None


def _xray(props: Mapping[str, Any], _: Context) -> str | None:
    return None if props.get("xrayTracingEnabled") is True else "X-Ray tracing is off"


def _cache_encrypted(props: Mapping[str, Any], _: Context) -> str | None:
    if props.get("cacheClusterEnabled") is True and props.get("cacheClusterEncrypted") is False:
        return "cache cluster is not encrypted"
    return None


def _method_auth(props: Mapping[str, Any], _: Context) -> str | None:
    if props.get("httpMethod") == "OPTIONS":
        return None
    if props.get("authorization", "NONE") != "NONE" or props.get("apiKeyRequired") is True:
        return None
    return f"{props.get('httpMethod')} needs neither an authorizer nor an API key"


def _request_validation(props: Mapping[str, Any], _: Context) -> str | None:
    if props.get("httpMethod") in BODY_METHODS and not props.get("requestValidatorId"):
        return f"{props.get('httpMethod')} has no request validator"
    return None


def _settings(props: Mapping[str, Any]) -> Mapping[str, Any]:
    settings = props.get("settings")
    return settings if isinstance(settings, Mapping) else {}


def _throttling(props: Mapping[str, Any], _: Context) -> str | None:
    settings = _settings(props)
    rate, burst = number(settings.get("throttlingRateLimit")), number(settings.get("throttlingBurstLimit"))
    if rate is None or burst is None or rate <= 0 or burst <= 0:
        return "stage methods have no throttling rate and burst limits"
    return None


def _data_trace_off(props: Mapping[str, Any], _: Context) -> str | None:
    return "data trace logs full requests" if _settings(props).get("dataTraceEnabled") is True else None


def _execution_logging(props: Mapping[str, Any], _: Context) -> str | None:
    level = _settings(props).get("loggingLevel")
    return None if level in ("ERROR", "INFO") else f"execution logging level is {level!r}"


def _method_cache_encrypted(props: Mapping[str, Any], _: Context) -> str | None:
    settings = _settings(props)
    if settings.get("cachingEnabled") is True and settings.get("cacheDataEncrypted") is not True:
        return "cached responses are not encrypted"
    return None


def _integration_timeout(props: Mapping[str, Any], _: Context) -> str | None:
    timeout = number(props.get("timeoutMilliseconds"))
    if timeout is None or timeout > MAX_INTEGRATION_TIMEOUT_MS:
        return f"integration timeout {timeout} ms is unset or above {MAX_INTEGRATION_TIMEOUT_MS}"
    return None


def _usage_plan_throttle(props: Mapping[str, Any], _: Context) -> str | None:
    rate = number(dig(props, "throttleSettings", "rateLimit"))
    return None if rate else "usage plan does not throttle its keys"


def _tls_policy(props: Mapping[str, Any], _: Context) -> str | None:
    policy = props.get("securityPolicy")
    return None if policy == "TLS_1_2" else f"security policy {policy!r} allows TLS below 1.2"


def _web_acl_rules(props: Mapping[str, Any], _: Context) -> str | None:
    return None if props.get("rules") else "web ACL has no rules"


def _stage_has_waf(resources: Sequence[Resource], _: Context) -> list[tuple[Resource, str]]:
    protected = " ".join(str(r.props.get("resourceArn", "")) for r in resources if r.type == WAF_ASSOCIATION)
    return [
        (stage, f"stage {stage.props.get('stageName')} has no WAF web ACL")
        for stage in resources
        if stage.type == STAGE and f"/stages/{stage.props.get('stageName')}" not in protected
    ]


RULES = [
    Rule("apigw-access-logging", "Stages write access logs", MANDATORY,
         ("CKV_AWS_76", "AwsSolutions-APIG1"), (STAGE,), _access_logging),
    Rule("apigw-access-log-json", "The access log format is JSON", MANDATORY,
         ("CKV_AWS_76",), (STAGE,), _access_log_json),
    Rule("apigw-xray", "Stages trace with X-Ray", MANDATORY,
         ("CKV_AWS_73", "APIGateway.3"), (STAGE,), _xray),
    Rule("apigw-stage-cache-encrypted", "A stage cache cluster is encrypted", MANDATORY,
         ("CKV_AWS_120", "APIGateway.5"), (STAGE,), _cache_encrypted),
    Rule("apigw-method-auth", "Every method requires an authorizer, IAM or an API key", MANDATORY,
         ("CKV_AWS_59", "AwsSolutions-APIG4"), (METHOD,), _method_auth),
    Rule("apigw-request-validation", "POST/PUT/PATCH methods validate requests", MANDATORY,
         ("CKV2_AWS_53", "AwsSolutions-APIG2"), (METHOD,), _request_validation),
    Rule("apigw-throttling", "Stage methods have throttling rate and burst limits", MANDATORY,
         ("APIGWDefaultThrottling",), (METHOD_SETTINGS,), _throttling),
    Rule("apigw-data-trace-off", "Data trace (full request logging) is off", MANDATORY,
         ("CKV_AWS_276",), (METHOD_SETTINGS,), _data_trace_off),
    Rule("apigw-execution-logging", "Execution logging at ERROR or INFO", MANDATORY,
         ("APIGateway.1", "AwsSolutions-APIG6"), (METHOD_SETTINGS,), _execution_logging),
    Rule("apigw-cache-data-encrypted", "Cached method responses are encrypted", MANDATORY,
         ("CKV_AWS_308", "APIGateway.5"), (METHOD_SETTINGS,), _method_cache_encrypted),
    Rule("apigw-integration-timeout", "Integrations set a timeout within API Gateway's 29 s", MANDATORY,
         (OURS,), (INTEGRATION,), _integration_timeout),
    Rule("apigw-usage-plan-throttle", "Usage plans throttle their API keys", MANDATORY,
         (OURS,), (USAGE_PLAN,), _usage_plan_throttle),
    Rule("apigw-tls-policy", "Custom domain names require TLS 1.2", MANDATORY,
         ("CKV_AWS_206",), (DOMAIN_NAME,), _tls_policy),
    Rule("waf-web-acl-rules", "Web ACLs have at least one rule", MANDATORY,
         ("WAF.10",), (WEB_ACL,), _web_acl_rules),
]  # fmt: skip

STACK_RULES = [
    StackRule("apigw-waf", "Every stage is protected by a WAF web ACL", ADVISORY,
              ("CKV2_AWS_29", "APIGateway.4"), _stage_has_waf),
]  # fmt: skip
