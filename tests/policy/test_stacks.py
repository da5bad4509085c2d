"""Every example stack, every resource, through the same rules as ``pulumi preview --policy-pack``."""

from __future__ import annotations

import pytest

from infra.stack_config import available_stacks
from policy.catalog import ALL_RULES, rule_by_id
from policy.engine import PolicyReport, evaluate_plan, render
from policy.waivers import WAIVERS
from tests.infra.conftest import cached_plan

STACKS = available_stacks()
# Mandatory violations of the program itself, reported to the infra owners with the fix (they are
# not waivable). Each entry: (rule id, resource logical name) -> what to change in infra/.


def report_for(stack: str) -> PolicyReport:
    return evaluate_plan(cached_plan(stack))


def test_there_are_example_stacks():
    # GIVEN the repository's Pulumi.<stack>.yaml files
    # THEN at least dev and prod are checked below
    assert {"dev", "prod"} <= set(STACKS)


@pytest.mark.parametrize("stack", STACKS)
def test_no_mandatory_violation(stack):
    # GIVEN the offline plan of an example stack
    report = report_for(stack)
    # WHEN every rule has checked every resource
    # THEN no mandatory rule fails
    assert report.mandatory_failures == [], render(report)


@pytest.mark.parametrize("stack", STACKS)
def test_every_advisory_violation_is_waived_with_a_reason(stack):
    # GIVEN the offline plan of an example stack
    report = report_for(stack)
    # THEN no advisory violation is left open, and every waived one carries its reason
    assert report.advisories == [], render(report)
    assert all(v.waiver and len(v.waiver) > 20 for v in report.waived)
    assert all(rule_by_id(v.rule_id).severity == "advisory" for v in report.waived)


def test_waivers_name_existing_advisory_rules_with_reasons():
    # GIVEN the documented waivers
    ids = {rule.id: rule for rule in ALL_RULES}
    for waiver in WAIVERS:
        # THEN each names an existing advisory rule and says why
        assert waiver.rule_id in ids, waiver.rule_id
        assert ids[waiver.rule_id].severity == "advisory", waiver.rule_id
        assert len(waiver.reason) > 40, waiver.rule_id


def test_prod_stage_is_not_waived_for_waf():
    # GIVEN the prod plan (WAF on by config)
    report = report_for("prod")
    # THEN the WAF rule neither fails nor is waived there: the stage really has a web ACL
    assert not [v for v in report.violations + report.waived if v.rule_id == "apigw-waf"]


def test_removing_a_property_from_a_planned_resource_fires_its_rule():
    # GIVEN the real dev plan, with tracing removed from one function's inputs
    plan = cached_plan("dev")
    function = plan.named("api-predict-api")
    stripped = {k: v for k, v in function.inputs.items() if k != "tracingConfig"}
    resources = [r if r is not function else _with_inputs(r, stripped) for r in plan.resources]
    # WHEN the engine evaluates the plan so changed
    from policy.engine import evaluate

    report = evaluate(resources, stack="dev")
    baseline = report_for("dev")
    # THEN exactly one new failure appears: lambda-tracing on that function
    new = set(report.mandatory_failures) - set(baseline.mandatory_failures)
    assert {(v.rule_id, v.name) for v in new} == {("lambda-tracing", "api-predict-api")}


def test_render_lists_failures_waivers_and_reasons():
    # GIVEN the dev report
    text = render(report_for("dev"))
    # THEN the summary line and every waived rule with its reason are in the text
    assert text.startswith("policy pack ml-platform on dev (dev):")
    assert "[waived] s3-sse-kms-cmk data-lake-access-logs-encryption" in text
    assert "reason: S3 server access logging cannot deliver" in text


def _with_inputs(resource, inputs):
    from dataclasses import replace

    return replace(resource, inputs=inputs)
