"""KMS keys, and the SNS topics and SQS queues they encrypt."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from policy.rules import (
    ADVISORY,
    MANDATORY,
    Context,
    Rule,
    as_document,
    has_tls_only_deny,
    is_public_allow,
    number,
    statements,
)

KEY = "aws:kms/key:Key"
TOPIC = "aws:sns/topic:Topic"
TOPIC_POLICY = "aws:sns/topicPolicy:TopicPolicy"
QUEUE = "aws:sqs/queue:Queue"
QUEUE_POLICY = "aws:sqs/queuePolicy:QueuePolicy"
MIN_DELETION_WINDOW_DAYS = 30


def _rotation(props: Mapping[str, Any], _: Context) -> str | None:
    return None if props.get("enableKeyRotation") is True else "key rotation is off"


def _policy_defined(props: Mapping[str, Any], _: Context) -> str | None:
    return None if as_document(props.get("policy")) else "the key has no explicit key policy"


def _no_public(props: Mapping[str, Any], _: Context) -> str | None:
    for statement in statements(as_document(props.get("policy"))):
        if is_public_allow(statement):
            return f"statement {statement.get('Sid', '?')!r} allows Principal '*' without a condition"
    return None


def _deletion_window(props: Mapping[str, Any], _: Context) -> str | None:
    days = number(props.get("deletionWindowInDays"))
    if days is None or days < MIN_DELETION_WINDOW_DAYS:
        return f"deletion window {days} days is shorter than {MIN_DELETION_WINDOW_DAYS}"
    return None


def _kms_master_key(what: str) -> Any:
    def check(props: Mapping[str, Any], _: Context) -> str | None:
        key = str(props.get("kmsMasterKeyId") or "")
        if not key:
            return f"{what} is not encrypted with KMS"
        if key in ("alias/aws/sns", "alias/aws/sqs"):
            return f"{what} uses the AWS-managed key {key}, not a customer-managed one"
        return None

    return check


def _tls_only(props: Mapping[str, Any], _: Context) -> str | None:
    return None if has_tls_only_deny(as_document(props.get("policy"))) else "policy does not deny non-TLS use"


RULES = [
    Rule("kms-rotation", "Customer-managed keys rotate yearly", MANDATORY,
         ("CKV_AWS_7", "KMS.4"), (KEY,), _rotation),
    Rule("kms-key-policy", "The key has an explicit key policy", MANDATORY,
         ("CKV2_AWS_64",), (KEY,), _policy_defined),
    Rule("kms-no-public-principal", "The key policy allows no unconditioned Principal '*'", MANDATORY,
         ("CKV_AWS_33",), (KEY,), _no_public),
    Rule("kms-deletion-window", "Scheduled key deletion waits at least 30 days", ADVISORY,
         ("KMS.3",), (KEY,), _deletion_window),
    Rule("sns-kms", "Topics are encrypted with a customer-managed KMS key", MANDATORY,
         ("CKV_AWS_26", "SNS.1"), (TOPIC,), _kms_master_key("topic")),
    Rule("sns-tls-only", "Topic policy denies publishing without TLS", MANDATORY,
         ("AwsSolutions-SNS3",), (TOPIC_POLICY,), _tls_only),
    Rule("sns-no-public-principal", "Topic policy allows no unconditioned Principal '*'", MANDATORY,
         ("SNS.4",), (TOPIC_POLICY,), _no_public),
    Rule("sqs-kms", "Queues are encrypted with a customer-managed KMS key", MANDATORY,
         ("CKV_AWS_27", "SQS.1"), (QUEUE,), _kms_master_key("queue")),
    Rule("sqs-tls-only", "Queue policy denies use without TLS", MANDATORY,
         ("AwsSolutions-SQS4",), (QUEUE_POLICY,), _tls_only),
    Rule("sqs-no-public-principal", "Queue policy allows no unconditioned Principal '*'", MANDATORY,
         ("CKV_AWS_72", "SQS.3"), (QUEUE_POLICY,), _no_public),
]  # fmt: skip
