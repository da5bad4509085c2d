"""A version approved without the champion gate (the console) is compared before it is deployed."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from handlers.registry import champion
from handlers.registry.client import ModelRegistry
from tests.functional.deployer.conftest import (
    ENDPOINT,
    ENDPOINT_ARN,
    Approved,
    Split,
    SplitClient,
    approval_event,
    emitted_metrics,
    endpoint_description,
    handle,
)


@pytest.fixture
def served_config(approved: Approved, split: Split) -> str:
    """Version 1 (accuracy 0.95) deployed and served, all on moto; the name of its config."""
    split(stubbed=())
    result = handle(approval_event(approved(run=1, accuracy=0.95)))
    assert result["status"] == "created"
    return str(result["expected_config"])


def endpoint_serving(split: Split, config_name: str, *, update: bool) -> SplitClient:
    """The endpoint InService on ``config_name``, and an UpdateEndpoint answer if ``update``."""
    client, stubber = split(stubbed=("describe_endpoint", "update_endpoint"))
    described = endpoint_description("InService", config_name)
    stubber.add_response("describe_endpoint", described, {"EndpointName": ENDPOINT})
    if update:
        stubber.add_response("update_endpoint", {"EndpointArn": ENDPOINT_ARN})
    return client


def test_a_worse_version_approved_in_the_console_is_rejected_not_deployed(
    moto_sagemaker: Any, approved: Approved, split: Split, served_config: str, capsys: Any
) -> None:
    # GIVEN version 2, worse than the served version 1 by more than the margin, approved directly
    worse = approved(run=2, accuracy=0.80)
    client = endpoint_serving(split, served_config, update=False)
    models_before = len(moto_sagemaker.list_models()["Models"])

    # WHEN its approval event reaches the deployer
    result = handle(approval_event(worse))

    # THEN it is refused with the comparison as the reason, rejected in the registry, and nothing
    # was created or updated
    assert result["status"] == "refused" and "accuracy 0.95->0.8" in result["reason"]
    registered = ModelRegistry(moto_sagemaker).describe(worse.arn)
    assert registered.status == "Rejected" and "accuracy 0.95->0.8" in (registered.approval_description or "")
    assert registered.customer_metadata["comparison.decision"] == champion.REFUSE
    assert registered.customer_metadata["comparison.champion"].endswith("/1")
    assert "update_endpoint" not in client.names()
    assert len(moto_sagemaker.list_models()["Models"]) == models_before
    assert "DeploymentRefused" in {name for name, _ in emitted_metrics(capsys.readouterr().out)}


def test_a_version_within_the_margin_is_compared_then_deployed(
    moto_sagemaker: Any, approved: Approved, split: Split, served_config: str
) -> None:
    # GIVEN version 2 within the margin (0.02) of version 1, approved directly
    challenger = approved(run=2, accuracy=0.94)
    client = endpoint_serving(split, served_config, update=True)

    # WHEN its approval event reaches the deployer
    result = handle(approval_event(challenger))

    # THEN the comparison is recorded on it and the endpoint is updated to it (moto, unlike
    # SageMaker, also resets the approval status of a package whose metadata changes: not checked)
    assert result["status"] == "updated" and "update_endpoint" in client.names()
    recorded = ModelRegistry(moto_sagemaker).describe(challenger.arn)
    assert recorded.customer_metadata["comparison.decision"] == champion.PROMOTE


def test_the_margin_comes_from_the_deployer_settings(
    approved: Approved, split: Split, served_config: str, deploy_env: Callable[..., None]
) -> None:
    # GIVEN a stack whose promotion margin is wider than the drop from 0.95 to 0.80
    deploy_env(PROMOTION_MARGIN="0.2")
    challenger = approved(run=2, accuracy=0.80)
    endpoint_serving(split, served_config, update=True)
    # WHEN / THEN it is deployed
    assert handle(approval_event(challenger))["status"] == "updated"


def test_a_version_whose_gate_was_skipped_on_purpose_is_deployed_as_approved(
    moto_sagemaker: Any, approved: Approved, split: Split, served_config: str
) -> None:
    # GIVEN a worse version 2 approved with the gate skipped on purpose (mlctl models approve
    # --skip-champion-gate records it, then approves)
    pending = approved(run=2, accuracy=0.80, status="PendingManualApproval")
    champion.record_skip(moto_sagemaker, pending.arn, "hotfix for a data bug")
    worse = ModelRegistry(moto_sagemaker).approve(pending.arn, "hotfix")
    client = endpoint_serving(split, served_config, update=True)

    # WHEN its approval event reaches the deployer THEN it is deployed, not compared again
    assert handle(approval_event(worse))["status"] == "updated"
    recorded = ModelRegistry(moto_sagemaker).describe(worse.arn).customer_metadata
    assert recorded["comparison.decision"] == champion.SKIPPED
    assert recorded["comparison.reason"] == "hotfix for a data bug"
    assert "update_endpoint" in client.names()


def test_a_rejected_served_version_is_no_champion_so_a_rollback_deploys(
    moto_sagemaker: Any, approved: Approved, split: Split, served_config: str
) -> None:
    # GIVEN the served version 1 rejected (mlctl models rollback rejects it first) and an older,
    # worse version that was never compared
    older = approved(run=2, accuracy=0.80)
    served = ModelRegistry(moto_sagemaker).list_versions(older.group, status="Approved")
    ModelRegistry(moto_sagemaker).reject(next(v.arn for v in served if v.version == 1), "bad in production")
    endpoint_serving(split, served_config, update=True)

    # WHEN the older version's approval event reaches the deployer THEN it is deployed
    assert handle(approval_event(older))["status"] == "updated"
    assert "comparison.decision" not in ModelRegistry(moto_sagemaker).describe(older.arn).customer_metadata
