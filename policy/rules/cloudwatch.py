"""CloudWatch logs and alarms, EventBridge targets, budgets."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from policy.rules import ADVISORY, MANDATORY, OURS, Context, Rule, as_list, dig, number

LOG_GROUP = "aws:cloudwatch/logGroup:LogGroup"
ALARM = "aws:cloudwatch/metricAlarm:MetricAlarm"
EVENT_TARGET = "aws:cloudwatch/eventTarget:EventTarget"
BUDGET = "aws:budgets/budget:Budget"
PROD_MIN_RETENTION_DAYS = 365
MAX_EVENT_RETRIES = 3


def _retention(props: Mapping[str, Any], _: Context) -> str | None:
    days = number(props.get("retentionInDays"))
    return None if days else "log group keeps logs forever (no retention)"


def _prod_retention(props: Mapping[str, Any], ctx: Context) -> str | None:
    days = number(props.get("retentionInDays"))
    if ctx.is_prod and days and days < PROD_MIN_RETENTION_DAYS:
        return f"prod log retention {days:g} days < {PROD_MIN_RETENTION_DAYS}"
    return None


def _log_kms(props: Mapping[str, Any], _: Context) -> str | None:
    return None if props.get("kmsKeyId") else "log group is not encrypted with a KMS key"


def _alarm_actions(props: Mapping[str, Any], _: Context) -> str | None:
    return None if as_list(props.get("alarmActions")) else "alarm has no ALARM action"


def _actions_enabled(props: Mapping[str, Any], _: Context) -> str | None:
    return "alarm actions are disabled" if props.get("actionsEnabled") is False else None


def _dimensions(props: Mapping[str, Any], _: Context) -> str | None:
    queries = [q for q in as_list(props.get("metricQueries")) if isinstance(q, Mapping)]
    if queries:
        bare = [
            str(q.get("id"))
            for q in queries
            if q.get("metric") is not None and not dig(q, "metric", "dimensions")
        ]
        return f"metric queries without dimensions: {bare}" if bare else None
    return None if props.get("dimensions") else "alarm metric has no dimensions"


def _target_retry(props: Mapping[str, Any], _: Context) -> str | None:
    attempts = number(dig(props, "retryPolicy", "maximumRetryAttempts"))
    if attempts is None or attempts > MAX_EVENT_RETRIES:
        return f"target retries are unbounded or above {MAX_EVENT_RETRIES} (default: 185 for 24 h)"
    return None


def _budget_notifications(props: Mapping[str, Any], _: Context) -> str | None:
    for notification in as_list(props.get("notifications")):
        if isinstance(notification, Mapping) and (
            notification.get("subscriberSnsTopicArns") or notification.get("subscriberEmailAddresses")
        ):
            return None
    return "budget notifies nobody"


def _budget_limit(props: Mapping[str, Any], _: Context) -> str | None:
    return None if number(props.get("limitAmount")) else "budget has no limit amount"


RULES = [
    Rule("cw-log-retention", "Log groups set a retention", MANDATORY,
         ("CKV_AWS_66",), (LOG_GROUP,), _retention),
    Rule("cw-log-retention-prod", "Prod log groups keep logs at least 365 days", MANDATORY,
         ("CKV_AWS_338",), (LOG_GROUP,), _prod_retention),
    Rule("cw-log-kms", "Log groups are encrypted with KMS", MANDATORY,
         ("CKV_AWS_158",), (LOG_GROUP,), _log_kms),
    Rule("cw-alarm-action", "Every alarm has an ALARM action", MANDATORY,
         ("CloudWatch.15",), (ALARM,), _alarm_actions),
    Rule("cw-alarm-actions-enabled", "Alarm actions are enabled", MANDATORY,
         ("CloudWatch.17",), (ALARM,), _actions_enabled),
    Rule("cw-alarm-dimensions", "Alarm metrics name their dimensions", MANDATORY,
         (OURS,), (ALARM,), _dimensions),
    Rule("events-target-retry", "EventBridge targets bound their retries", ADVISORY,
         (OURS,), (EVENT_TARGET,), _target_retry),
    Rule("budget-notifications", "Budgets notify a subscriber", MANDATORY,
         (OURS,), (BUDGET,), _budget_notifications),
    Rule("budget-limit", "Budgets set a limit amount", MANDATORY,
         (OURS,), (BUDGET,), _budget_limit),
]  # fmt: skip
