"""The registry client on moto: register, list, approve, reject, lineage, and the deploy gate."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import pytest

from handlers.registry.client import APPROVED, PENDING, REJECTED, ModelRegistry, ModelVersion
from handlers.registry.errors import (
    ModelGroupNotFoundError,
    ModelNotApprovedError,
    ModelVersionNotFoundError,
    RegistryInputError,
)
from tests.functional.registry.conftest import ARTIFACTS, GROUP, IMAGE, TRAINING_JOB

Register = Callable[..., ModelVersion]


def test_register_records_artifact_metrics_and_lineage(register: Register) -> None:
    # GIVEN an empty group WHEN a training run registers its model
    version = register(run=1)

    # THEN it is version 1, pending approval, with everything a reviewer needs
    assert version.version == 1
    assert version.group == GROUP
    assert version.status == PENDING
    assert not version.approved
    assert version.artifact_uri == f"{ARTIFACTS}/run-1/model.tar.gz"
    assert version.image_uri == IMAGE
    assert version.metrics == {"accuracy": pytest.approx(0.91), "loss": pytest.approx(0.29)}
    assert version.evaluation_report_uri == f"{ARTIFACTS}/run-1/evaluation/evaluation.json"
    assert version.dataset_version == "2024-06-01T00-00-00Z"
    assert version.hyperparameters == {"epochs": "11", "lr": "0.001"}


def test_list_versions_is_newest_first_with_status_and_dataset(
    registry: ModelRegistry, register: Register
) -> None:
    # GIVEN three registered versions, the second approved
    for run in (1, 2, 3):
        register(run=run)
    registry.approve(registry.describe(GROUP, 2).arn, "best on the holdout")

    # WHEN the versions are listed
    versions = registry.list_versions(GROUP)

    # THEN newest first, each with its own status, metrics and dataset version
    assert [v.version for v in versions] == [3, 2, 1]
    assert [v.status for v in versions] == [PENDING, APPROVED, PENDING]
    assert [v.dataset_version for v in versions] == [f"2024-06-0{run}T00-00-00Z" for run in (3, 2, 1)]
    assert versions[0].metrics["accuracy"] == pytest.approx(0.93)


def test_approve_stores_the_reason_and_keeps_the_metadata(
    registry: ModelRegistry, register: Register
) -> None:
    # GIVEN a pending version
    version = register(run=1)

    # WHEN it is approved with a reason
    approved = registry.approve(version.arn, "accuracy 0.91 >= 0.90; reviewed")

    # THEN the registry, read afresh, says Approved with the reason, and lineage survived the update
    again = ModelRegistry(registry._client).describe(version.arn)
    assert approved.status == again.status == APPROVED
    assert again.approval_description == "accuracy 0.91 >= 0.90; reviewed"
    assert again.dataset_version == "2024-06-01T00-00-00Z"
    assert again.metrics["accuracy"] == pytest.approx(0.91)


def test_reject_stores_the_reason(sagemaker: Any, registry: ModelRegistry, register: Register) -> None:
    # GIVEN a pending version
    version = register(run=1)

    # WHEN it is rejected with a reason
    registry.reject(version.arn, "latency p99 regressed by 40 ms")

    # THEN SageMaker itself holds the status and the reason
    raw = sagemaker.describe_model_package(ModelPackageName=version.arn)
    assert raw["ModelApprovalStatus"] == REJECTED
    assert raw["ApprovalDescription"] == "latency p99 regressed by 40 ms"
    assert registry.describe(version.arn).approval_description == "latency p99 regressed by 40 ms"


@pytest.mark.parametrize("reason", ["", "   "])
def test_reject_without_a_reason_is_refused(registry: ModelRegistry, register: Register, reason: str) -> None:
    # GIVEN a pending version
    version = register(run=1)

    # WHEN it is rejected without a reason THEN the registry refuses, and nothing changed
    with pytest.raises(RegistryInputError, match="reason"):
        registry.reject(version.arn, reason)
    assert registry.describe(version.arn).status == PENDING


def test_latest_approved_is_the_highest_approved_version(registry: ModelRegistry, register: Register) -> None:
    # GIVEN versions 1..3 where 1 and 2 are approved and 3 rejected
    versions = [register(run=run) for run in (1, 2, 3)]
    assert registry.latest_approved(GROUP) is None  # nothing approved yet
    registry.approve(versions[0].arn)
    registry.approve(versions[1].arn, "better")
    registry.reject(versions[2].arn, "worse")

    # WHEN the latest approved version is asked for
    latest = registry.latest_approved(GROUP)

    # THEN it is version 2, not the newer rejected one
    assert latest is not None
    assert latest.version == 2
    assert latest.arn == versions[1].arn


def test_lineage_leads_back_to_the_dataset_version(registry: ModelRegistry, register: Register) -> None:
    # GIVEN two runs, the second approved
    register(run=1)
    version = registry.approve(register(run=2).arn, "ok")

    # WHEN its lineage is asked for (by ARN)
    lineage = registry.lineage(version.arn)

    # THEN it names the dataset, the code, the training job and the artifact
    assert lineage.dataset_version == "2024-06-02T00-00-00Z"
    assert lineage.code_version == "commit0002"
    assert lineage.training_job == TRAINING_JOB
    assert lineage.artifact_uri == f"{ARTIFACTS}/run-2/model.tar.gz"
    assert lineage.version == 2


def test_describe_by_group_and_number_matches_describe_by_arn(
    registry: ModelRegistry, register: Register
) -> None:
    first, second = register(run=1), register(run=2)

    assert registry.describe(GROUP, 2).arn == second.arn
    assert registry.describe(GROUP, 1) == registry.describe(first.arn)


@pytest.mark.parametrize("status", ["pending", "rejected"])
def test_an_unapproved_version_can_never_be_deployed(
    registry: ModelRegistry, register: Register, status: str
) -> None:
    # GIVEN a pending or a rejected version
    version = register(run=1)
    if status == "rejected":
        registry.reject(version.arn, "drift on the new data")

    # WHEN the deploy gate checks it THEN it fails, naming the version and its status
    with pytest.raises(ModelNotApprovedError) as caught:
        registry.require_approved(version)
    expected = PENDING if status == "pending" else REJECTED
    assert caught.value.status == expected
    assert caught.value.arn == version.arn
    assert f"{GROUP}/1 is {expected}" in caught.value.message
    if status == "rejected":
        assert "drift on the new data" in caught.value.message


def test_the_gate_rereads_the_registry(registry: ModelRegistry, register: Register) -> None:
    # GIVEN a copy of a version taken while it was approved
    stale = registry.approve(register(run=1).arn, "ok")
    assert registry.require_approved(stale).status == APPROVED

    # WHEN it is rejected afterwards THEN the stale copy no longer passes the gate
    registry.reject(stale.arn, "rolled back by on-call")
    with pytest.raises(ModelNotApprovedError):
        registry.require_approved(stale)


def test_missing_versions_and_groups_are_domain_errors(registry: ModelRegistry, register: Register) -> None:
    register(run=1)

    with pytest.raises(ModelVersionNotFoundError):
        registry.describe(GROUP, 7)
    with pytest.raises(ModelGroupNotFoundError):
        registry.list_versions("no-such-group")
    with pytest.raises(ModelGroupNotFoundError):
        registry.describe("no-such-group", 1)


def test_non_finite_metrics_are_refused(register: Register) -> None:
    with pytest.raises(RegistryInputError, match="finite"):
        register(run=1, metrics={"accuracy": math.nan})
