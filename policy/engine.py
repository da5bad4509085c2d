"""Run the rule table over a plan (or any list of resources) and report violations and waivers."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from policy.catalog import RULES, STACK_RULES
from policy.rules import MANDATORY, Context, Resource, Severity
from policy.waivers import WAIVERS, Waiver

ENVIRONMENT_TAG = "ml-platform:environment"
PROVIDER_TYPE = "pulumi:providers:aws"


class PlannedLike(Protocol):
    """What the engine needs of ``infra.offline.PlannedResource``."""

    @property
    def urn(self) -> str: ...
    @property
    def type(self) -> str: ...
    @property
    def name(self) -> str: ...
    @property
    def custom(self) -> bool: ...
    @property
    def inputs(self) -> Mapping[str, Any]: ...


class PlanLike(Protocol):
    @property
    def stack(self) -> str: ...
    @property
    def resources(self) -> Sequence[Any]: ...


@dataclass(frozen=True)
class Violation:
    rule_id: str
    severity: Severity
    urn: str
    name: str
    type: str
    message: str
    waiver: str | None = None  # the documented reason, when waived


@dataclass
class PolicyReport:
    stack: str
    environment: str
    violations: list[Violation] = field(default_factory=list)  # not waived
    waived: list[Violation] = field(default_factory=list)

    @property
    def mandatory_failures(self) -> list[Violation]:
        return [v for v in self.violations if v.severity == MANDATORY]

    @property
    def advisories(self) -> list[Violation]:
        return [v for v in self.violations if v.severity != MANDATORY]

    @property
    def passed(self) -> bool:
        return not self.mandatory_failures


def environment_of(resources: Sequence[Resource], default: str = "dev") -> str:
    """The stack's environment: the AWS provider's default tag, else the stack name in the URNs."""
    for resource in resources:
        if not resource.type.startswith(PROVIDER_TYPE):
            continue
        tags: Any = resource.props.get("defaultTags")
        if isinstance(tags, str):
            try:
                tags = json.loads(tags)
            except ValueError:
                tags = {}
        value = (tags or {}).get("tags", {}).get(ENVIRONMENT_TAG) if isinstance(tags, Mapping) else None
        if value:
            return str(value)
    for resource in resources:
        parts = resource.urn.split("::")
        if parts and parts[0].startswith("urn:pulumi:"):
            return parts[0].removeprefix("urn:pulumi:")
    return default


def find_waiver(
    violation: Violation, environment: str, props: Mapping[str, Any], waivers: Iterable[Waiver] = WAIVERS
) -> Waiver | None:
    if violation.severity == MANDATORY:
        return None
    for waiver in waivers:
        if waiver.matches(violation.rule_id, violation.name, environment, props):
            return waiver
    return None


def check_resources(resources: Sequence[Resource], environment: str) -> list[tuple[Violation, Resource]]:
    """Every rule over every resource, waivers not applied."""
    found: list[tuple[Violation, Resource]] = []
    for resource in resources:
        ctx = Context(type=resource.type, name=resource.name, urn=resource.urn, environment=environment)
        for rule in RULES:
            if not rule.applies_to(resource.type):
                continue
            message = rule.check(resource.props, ctx)
            if message:
                violation = Violation(
                    rule.id, rule.severity, resource.urn, resource.name, resource.type, message
                )
                found.append((violation, resource))
    stack_ctx = Context(environment=environment)
    for stack_rule in STACK_RULES:
        for resource, message in stack_rule.check(resources, stack_ctx):
            violation = Violation(
                stack_rule.id, stack_rule.severity, resource.urn, resource.name, resource.type, message
            )
            found.append((violation, resource))
    return found


def to_resources(planned: Iterable[PlannedLike]) -> list[Resource]:
    return [Resource(type=r.type, name=r.name, urn=r.urn, props=r.inputs) for r in planned if r.custom]


def evaluate(
    resources: Iterable[PlannedLike], environment: str | None = None, stack: str = ""
) -> PolicyReport:
    """Every rule over the custom resources of a plan; advisory violations with a waiver are set apart."""
    converted = to_resources(resources)
    env = environment or environment_of(converted)
    report = PolicyReport(stack=stack, environment=env)
    for violation, resource in check_resources(converted, env):
        waiver = find_waiver(violation, env, resource.props)
        if waiver is None:
            report.violations.append(violation)
        else:
            report.waived.append(replace(violation, waiver=waiver.reason))
    return report


def evaluate_plan(plan: PlanLike) -> PolicyReport:
    return evaluate(plan.resources, stack=plan.stack)


def render(report: PolicyReport) -> str:
    """Text for ``mlctl plan``: failures first, then advisories, then waivers with their reasons."""
    lines = [
        f"policy pack ml-platform on {report.stack or '?'} ({report.environment}): "
        f"{len(report.mandatory_failures)} mandatory, {len(report.advisories)} advisory, "
        f"{len(report.waived)} waived"
    ]
    for title, violations in (
        ("MANDATORY", report.mandatory_failures),
        ("advisory", report.advisories),
        ("waived", report.waived),
    ):
        for v in violations:
            line = f"  [{title}] {v.rule_id} {v.name} ({v.type}): {v.message}"
            if v.waiver:
                line += f"\n      reason: {v.waiver}"
            lines.append(line)
    return "\n".join(lines)
