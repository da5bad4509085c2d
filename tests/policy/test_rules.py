"""Each rule: a good fixture passes, and one change to it makes exactly that rule fire."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from policy.catalog import ALL_RULES, RULES, STACK_RULES
from policy.rules import Context, Resource
from tests.policy.fixtures import CASES, GOOD, STACK_CASES, good_stack, mutated

PROD = "prod"


def fired(type_: str, props: dict, environment: str = PROD) -> set[str]:
    ctx = Context(type=type_, name="fixture", urn="urn:fixture", environment=environment)
    return {rule.id for rule in RULES if rule.applies_to(type_) and rule.check(props, ctx)}


def stack_fired(resources: list[Resource]) -> dict[str, set[str]]:
    ctx = Context(environment=PROD)
    found: dict[str, set[str]] = {}
    for rule in STACK_RULES:
        for resource, _ in rule.check(resources, ctx):
            found.setdefault(rule.id, set()).add(resource.name)
    return found


def test_every_rule_has_a_fixture_case():
    # GIVEN the rule table and the fixture tables
    resource_ids = {rule.id for rule in RULES}
    stack_ids = {rule.id for rule in STACK_RULES}
    # WHEN they are compared
    # THEN every rule has exactly one case, and no case names a rule that does not exist
    assert set(CASES) == resource_ids
    assert set(STACK_CASES) == stack_ids


@pytest.mark.parametrize("type_", sorted(GOOD))
def test_good_fixture_passes_every_rule_of_its_type(type_):
    # GIVEN the good properties of a resource type
    props = copy.deepcopy(GOOD[type_])
    # WHEN every rule applying to the type checks them (as prod: the strictest environment)
    # THEN none fires
    assert fired(type_, props) == set()


@pytest.mark.parametrize("rule_id", sorted(CASES))
def test_changing_the_property_fires_exactly_this_rule(rule_id):
    # GIVEN a rule's resource type and the one change that breaks it
    type_, mutation = CASES[rule_id]
    rule = next(r for r in RULES if r.id == rule_id)
    assert rule.applies_to(type_)
    # WHEN the good props, so changed, are checked
    props = mutated(type_, mutation)
    # THEN exactly this rule fires on the resource, and its message says something
    assert fired(type_, props) == {rule_id}
    ctx = Context(type=type_, name="fixture", environment=PROD)
    assert (rule.check(props, ctx) or "").strip()


def test_good_stack_passes_every_stack_rule():
    # GIVEN buckets with all companions, a function with its log group and failure destination, a WAF
    # WHEN the stack rules run
    # THEN none fires
    assert stack_fired(good_stack()) == {}


@pytest.mark.parametrize("rule_id", sorted(STACK_CASES))
def test_removing_a_companion_resource_fires_exactly_this_stack_rule(rule_id):
    # GIVEN the good stack without one companion resource
    removed, named = STACK_CASES[rule_id]
    resources = [r for r in good_stack() if r.name != removed]
    assert len(resources) == len(good_stack()) - 1
    # WHEN the stack rules run
    found = stack_fired(resources)
    # THEN only this rule fires, on the resources it names
    assert found == {rule_id: set(named.split())}


@pytest.mark.parametrize(
    ("type_", "change"),
    [
        (
            "aws:sagemaker/endpointConfiguration:EndpointConfiguration",
            "productionVariants.0.initialInstanceCount",
        ),
        ("aws:cloudwatch/logGroup:LogGroup", "retentionInDays"),
        ("aws:appautoscaling/target:Target", "minCapacity"),
    ],
)
def test_prod_only_rules_do_not_fire_in_dev(type_, change):
    # GIVEN props that break a prod-only threshold (one instance, 30-day logs)
    props = copy.deepcopy(GOOD[type_])
    *parents, leaf = change.split(".")
    node = props
    for part in parents:
        node = node[int(part)] if isinstance(node, list) else node[part]
    node[leaf] = 1 if leaf != "retentionInDays" else 30
    # WHEN checked as dev and as prod
    # THEN dev passes and prod fails
    assert fired(type_, props, environment="dev") == set()
    assert fired(type_, props, environment=PROD) != set()


def test_rule_table_meta():
    # GIVEN the whole rule table
    ids = [rule.id for rule in ALL_RULES]
    # THEN it has at least 60 rules, unique ids, each with a description, references and a severity
    assert len(ids) >= 60
    assert len(ids) == len(set(ids))
    for rule in ALL_RULES:
        assert rule.description.strip(), rule.id
        assert rule.references and all(ref.strip() for ref in rule.references), rule.id
        assert rule.severity in ("mandatory", "advisory"), rule.id


def test_rules_cover_every_promised_service():
    # GIVEN the services RELIABILITY.md promises rules for
    prefixes = ("s3-", "kms-", "sagemaker-", "lambda-", "apigw-", "iam-", "cw-", "sns-", "sqs-", "events-",
                "budget-")  # fmt: skip
    # THEN each has at least one rule
    ids = [rule.id for rule in ALL_RULES]
    for prefix in prefixes:
        assert any(rule_id.startswith(prefix) for rule_id in ids), prefix


def test_training_step_nested_in_a_condition_is_checked():
    # GIVEN a pipeline whose only training step sits in a Condition step's IfSteps, without output KMS
    import json

    from tests.policy.fixtures import PIPELINE_DEFINITION

    definition: dict[str, Any] = copy.deepcopy(PIPELINE_DEFINITION)
    train = definition["Steps"].pop(1)
    del train["Arguments"]["OutputDataConfig"]["KmsKeyId"]
    definition["Steps"].append({"Name": "Gate", "Type": "Condition", "Arguments": {"IfSteps": [train]}})
    props = {"pipelineName": "p", "pipelineDefinition": json.dumps(definition)}
    # WHEN the pipeline rules check it
    # THEN the nested step is found and exactly the output-KMS rule fires
    assert fired("aws:sagemaker/pipeline:Pipeline", props) == {"sagemaker-training-output-kms"}
