"""The three stacks: each loads, and staging sits between dev and prod."""

from __future__ import annotations

import pytest

from infra.stack_config import (
    ApiAuth,
    DeploymentStrategy,
    Environment,
    RollbackAlarm,
    StackConfig,
    available_stacks,
    load_stack_config,
)
from tests.workflows.conftest import DEPLOY_STAGES

BOTH_ROLLBACK_ALARMS = {RollbackAlarm.ERROR_RATE_5XX, RollbackAlarm.MODEL_LATENCY_P99}


@pytest.fixture(scope="module")
def stacks() -> dict[str, StackConfig]:
    return {stack: load_stack_config(stack) for stack in DEPLOY_STAGES}


EXAMPLE_PREFIX = "example-"  # the stacks of examples/ (docs/bring-your-own-model.md)


def test_the_pipeline_deploys_exactly_the_stacks_in_the_repository() -> None:
    # GIVEN the Pulumi.<stack>.yaml files, less the examples' (planned in CI, deployed by hand)
    # THEN they are the pipeline's stages: no stack is left out of CI, none is missing
    deployed = [stack for stack in available_stacks() if not stack.startswith(EXAMPLE_PREFIX)]
    assert deployed == sorted(DEPLOY_STAGES)
    assert [stack for stack in available_stacks() if stack.startswith(EXAMPLE_PREFIX)] == ["example-churn"]


@pytest.mark.parametrize("stack", DEPLOY_STAGES)
def test_each_stack_loads_with_consistent_names(stacks: dict[str, StackConfig], stack: str) -> None:
    # GIVEN one stack's validated configuration
    config = stacks[stack]

    # THEN its environment and names follow the stack's name
    assert config.environment is Environment(stack)
    assert config.name_prefix == f"mlp-{stack}"
    assert config.tags["cost-center"] == f"ml-{stack}"


def test_staging_is_between_dev_and_prod(stacks: dict[str, StackConfig]) -> None:
    # GIVEN the three stacks
    dev, staging, prod = (stacks[name] for name in DEPLOY_STAGES)

    # THEN staging's capacity, log retention and budget sit between dev's and prod's
    assert dev.serving.min_instances <= staging.serving.min_instances <= prod.serving.min_instances
    assert dev.serving.max_instances <= staging.serving.max_instances <= prod.serving.max_instances
    assert dev.log_retention_days < staging.log_retention_days < prod.log_retention_days
    assert dev.budget.monthly_usd is not None and staging.budget.monthly_usd is not None
    assert prod.budget.monthly_usd is not None
    assert dev.budget.monthly_usd < staging.budget.monthly_usd < prod.budget.monthly_usd


def test_staging_rehearses_prod_deployments(stacks: dict[str, StackConfig]) -> None:
    # GIVEN the staging and prod stacks
    staging, prod = stacks["staging"], stacks["prod"]

    # THEN staging serves on the same GPU instance type and deploys blue/green with traffic shifting,
    # rolling back on both of prod's alarms, behind the WAF
    assert staging.serving.gpu and staging.serving.instance_type == prod.serving.instance_type
    assert staging.deployment.strategy in {DeploymentStrategy.CANARY, DeploymentStrategy.LINEAR}
    assert set(staging.deployment.rollback_alarms) >= BOTH_ROLLBACK_ALARMS
    assert staging.api.waf


def test_staging_keeps_the_non_prod_savings(stacks: dict[str, StackConfig]) -> None:
    # GIVEN the staging and prod stacks
    staging, prod = stacks["staging"], stacks["prod"]

    # THEN staging scales down off hours and uses API keys; prod does neither
    assert staging.serving.off_hours is not None
    assert staging.serving.off_hours.instances < staging.serving.min_instances
    assert prod.serving.off_hours is None
    assert staging.api.auth is ApiAuth.API_KEY
    assert prod.api.auth is ApiAuth.IAM


def test_prod_keeps_the_production_rules(stacks: dict[str, StackConfig]) -> None:
    # GIVEN the prod stack
    prod = stacks["prod"]

    # THEN it has at least two instances, a canary with both rollback alarms, a year of logs, a budget
    assert prod.serving.min_instances >= 2
    assert prod.deployment.strategy is DeploymentStrategy.CANARY
    assert set(prod.deployment.rollback_alarms) >= BOTH_ROLLBACK_ALARMS
    assert prod.log_retention_days >= 365
    assert prod.budget.monthly_usd is not None and prod.budget.monthly_usd > 0
