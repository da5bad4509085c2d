"""Lint every IAM policy document the program declares with parliament (duo-labs).

Parliament checks identity policies: role inline policies (``RolePolicy``), managed policies
(``Policy``) and a ``Role``'s ``inlinePolicies``. Trust policies (``Role.assumeRolePolicy``)
and resource policies (bucket, topic, queue and key policies) are linted too, with
``include_community_auditors`` off; parliament has no notion of a ``Principal`` and so raises
resource-policy-only false positives there, which :data:`IGNORED` lists one by one with the reason.
Nothing is ignored in bulk: an ignore names the finding id and the statement (or action) it is for.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from policy.engine import PlannedLike
from policy.rules import as_document

# (resource type, property holding the document, kind)
DOCUMENT_SOURCES: tuple[tuple[str, str, str], ...] = (
    ("aws:iam/rolePolicy:RolePolicy", "policy", "identity"),
    ("aws:iam/policy:Policy", "policy", "identity"),
    ("aws:iam/role:Role", "assumeRolePolicy", "trust"),
    ("aws:s3/bucketPolicy:BucketPolicy", "policy", "resource"),
    ("aws:sns/topicPolicy:TopicPolicy", "policy", "resource"),
    ("aws:sqs/queuePolicy:QueuePolicy", "policy", "resource"),
    ("aws:kms/key:Key", "policy", "resource"),
)


@dataclass(frozen=True)
class Ignore:
    """A parliament finding we know to be wrong here: finding id, where, and why."""

    issue: str
    kind: str  # identity | trust | resource
    detail_contains: str  # the action or statement the ignore is for, as parliament reports it
    reason: str


IGNORED: tuple[Ignore, ...] = (
    Ignore(
        "RESOURCE_STAR",
        "identity",
        "ecr:GetAuthorizationToken",
        "ecr:GetAuthorizationToken has no resource type: AWS accepts only Resource '*'.",
    ),
    Ignore(
        "RESOURCE_STAR",
        "identity",
        "xray:Put",
        "X-Ray trace writes (PutTraceSegments, PutTelemetryRecords) have no resource type: AWS accepts "
        "only Resource '*'.",
    ),
    Ignore(
        "RESOURCE_STAR",
        "identity",
        "cloudwatch:PutMetricData",
        "PutMetricData has no resource type; it is narrowed by a cloudwatch:namespace condition.",
    ),
    Ignore(
        "RESOURCE_STAR",
        "resource",
        "kms:",
        "In a key policy Resource '*' means this key (the only resource a key policy can name).",
    ),
    Ignore(
        "MALFORMED",
        "trust",
        "Statement contains neither Resource nor NotResource",
        "A trust policy is a resource policy on the role: it has a Principal and never a Resource.",
    ),
    Ignore(
        "MISMATCHED_TYPE",
        "resource",
        "ArnLike requires a value of type Arn",
        "kms:EncryptionContext:aws:logs:arn holds a log group ARN; ArnLike on it is the form AWS "
        "documents for CloudWatch Logs encryption. Parliament types every encryption-context key as String.",
    ),
    Ignore(
        "UNKNOWN_CONDITION_FOR_ACTION",
        "resource",
        "Unknown condition kms:EncryptionContext:aws:logs:arn for action kms:Describe",
        "The key policy statement for CloudWatch Logs is AWS's documented one (kms:Describe* under the "
        "encryption-context condition). The condition never holds for Describe*, so that part is inert "
        "(it grants nothing more); dropping kms:Describe* from the statement is a possible tidy-up.",
    ),
    Ignore(
        "RESOURCE_MISMATCH",
        "identity",
        '"action": "logs:DescribeLogGroups"',
        "The Service Authorization Reference lists the log-group resource type for DescribeLogGroups; "
        "parliament's bundled IAM definitions predate it and still require '*'.",
    ),
)


@dataclass(frozen=True)
class Finding:
    resource: str
    type: str
    kind: str
    issue: str
    detail: str
    ignored_because: str | None = None


def _documents(resources: Iterable[PlannedLike]) -> Iterable[tuple[PlannedLike, str, Mapping[str, Any]]]:
    sources = {type_: (key, kind) for type_, key, kind in DOCUMENT_SOURCES}
    for resource in resources:
        if resource.type not in sources:
            continue
        key, kind = sources[resource.type]
        document = as_document(resource.inputs.get(key))
        if document is not None:
            yield resource, kind, document
        if resource.type == "aws:iam/role:Role":
            for inline in resource.inputs.get("inlinePolicies") or []:
                inline_document = as_document(inline.get("policy")) if isinstance(inline, Mapping) else None
                if inline_document is not None:
                    yield resource, "identity", inline_document


def _ignore_for(issue: str, kind: str, detail: str) -> Ignore | None:
    """The ignore for a finding; a finding listing several actions needs an ignore for each one."""
    candidates = [ignore for ignore in IGNORED if ignore.issue == issue and ignore.kind == kind]
    try:
        parsed = json.loads(detail)
    except ValueError:
        parsed = None
    if isinstance(parsed, list) and parsed and all(isinstance(item, str) for item in parsed):
        matched = []
        for item in parsed:
            ignore = next((i for i in candidates if i.detail_contains in item), None)
            if ignore is None:
                return None
            matched.append(ignore)
        return matched[0]
    return next((ignore for ignore in candidates if ignore.detail_contains in detail), None)


def _analyze(document: Mapping[str, Any]) -> list[tuple[str, str]]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # parliament imports pkg_resources, which warns
        from parliament import analyze_policy_string  # noqa: PLC0415

    analyzed = analyze_policy_string(json.dumps(document))
    return [(str(f.issue), json.dumps(f.detail, sort_keys=True, default=str)) for f in analyzed.findings]


def lint(resources: Iterable[PlannedLike]) -> list[Finding]:
    """Parliament's findings on every policy document, each either open or ignored with a reason."""
    findings = []
    for resource, kind, document in _documents(resources):
        for issue, detail in _analyze(document):
            ignore = _ignore_for(issue, kind, detail)
            findings.append(
                Finding(resource.name, resource.type, kind, issue, detail, ignore.reason if ignore else None)
            )
    return findings


def open_findings(resources: Iterable[PlannedLike]) -> list[Finding]:
    return [finding for finding in lint(resources) if finding.ignored_because is None]
