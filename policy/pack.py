"""Build the ``pulumi_policy`` pack from the rule table (``__main__.py`` calls :func:`build_pack`)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from pulumi_policy import (
    EnforcementLevel,
    Policy,
    PolicyPack,
    ReportViolation,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    StackValidationArgs,
    StackValidationPolicy,
)

from policy.catalog import RULES, STACK_RULES
from policy.engine import Violation, environment_of, find_waiver
from policy.rules import MANDATORY, Context, Resource, Rule, StackRule

PACK_NAME = "ml-platform"


def _level(severity: str) -> EnforcementLevel:
    return EnforcementLevel.MANDATORY if severity == MANDATORY else EnforcementLevel.ADVISORY


def _description(rule: Rule | StackRule) -> str:
    return f"{rule.description} [{', '.join(rule.references)}]"


def _environment(urn: str, provider_props: Mapping[str, Any] | None) -> str:
    provider = Resource(type="pulumi:providers:aws", name="", urn=urn, props=provider_props or {})
    return environment_of([provider])


def _resource_validator(rule: Rule) -> Callable[[ResourceValidationArgs, ReportViolation], None]:
    def validate(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
        if not rule.applies_to(args.resource_type):
            return
        provider = getattr(args, "provider", None)
        environment = _environment(args.urn, getattr(provider, "props", None))
        ctx = Context(type=args.resource_type, name=args.name, urn=args.urn, environment=environment)
        message = rule.check(args.props, ctx)
        if not message:
            return
        violation = Violation(rule.id, rule.severity, args.urn, args.name, args.resource_type, message)
        if find_waiver(violation, environment, args.props) is None:
            report_violation(message, None)

    return validate


def _stack_validator(rule: StackRule) -> Callable[[StackValidationArgs, ReportViolation], None]:
    def validate(args: StackValidationArgs, report_violation: ReportViolation) -> None:
        resources = [
            Resource(type=r.resource_type, name=r.name, urn=r.urn, props=r.props) for r in args.resources
        ]
        environment = environment_of(resources)
        for resource, message in rule.check(resources, Context(environment=environment)):
            violation = Violation(rule.id, rule.severity, resource.urn, resource.name, resource.type, message)
            if find_waiver(violation, environment, resource.props) is None:
                report_violation(message, resource.urn)

    return validate


def build_policies() -> list[Policy]:
    policies: list[Policy] = [
        ResourceValidationPolicy(
            name=rule.id,
            description=_description(rule),
            validate=_resource_validator(rule),
            enforcement_level=_level(rule.severity),
        )
        for rule in RULES
    ]
    policies += [
        StackValidationPolicy(
            name=rule.id,
            description=_description(rule),
            validate=_stack_validator(rule),
            enforcement_level=_level(rule.severity),
        )
        for rule in STACK_RULES
    ]
    return policies


def build_pack() -> PolicyPack:
    return PolicyPack(PACK_NAME, policies=build_policies(), enforcement_level=EnforcementLevel.ADVISORY)
