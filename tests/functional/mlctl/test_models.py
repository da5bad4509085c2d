"""``mlctl models list|show|approve|reject`` against the stack's model package group on moto."""

from __future__ import annotations

import json
from collections.abc import Callable

from handlers.common.contracts import TARGET_VARIANT_KEY
from tests.functional.mlctl.conftest import GROUP, LocalPlatform, Platform, Result, set_outputs


def test_list_shows_versions_newest_first(platform: Platform, mlctl: Callable[..., Result]) -> None:
    # GIVEN three versions: approved, rejected, pending
    platform.register(1)
    platform.register(2, status="Rejected")
    platform.register(3, status="Pending")

    # WHEN they are listed
    result = mlctl("models", "list", *platform.target)

    # THEN one row per version, newest first, with status, metrics and dataset version
    assert result.code == 0, result.err
    header, *rows = result.out.strip().splitlines()
    assert header.split() == ["VERSION", "STATUS", "CREATED", "METRICS", "DATASET"]
    assert [row.split()[:2] for row in rows] == [
        ["3", "PendingManualApproval"],
        ["2", "Rejected"],
        ["1", "Approved"],
    ]
    assert "accuracy=0.93" in rows[0] and "loss=0.27" in rows[0]
    assert rows[2].endswith("2024-06-01T00-00-00Z")


def test_list_filters_by_status_as_json(platform: Platform, mlctl: Callable[..., Result]) -> None:
    # GIVEN approved versions 1 and 3 and a rejected 2
    platform.register(1)
    platform.register(2, status="Rejected")
    platform.register(3)

    # WHEN only approved ones are listed as JSON
    result = mlctl("models", "list", "--status", "Approved", "--json", *platform.target)

    # THEN exactly those, newest first, with their metrics and dataset versions
    listed = json.loads(result.out)
    assert [(v["version"], v["status"]) for v in listed] == [(3, "Approved"), (1, "Approved")]
    assert listed[0]["metrics"] == {"accuracy": 0.93, "loss": 0.27}
    assert listed[1]["dataset_version"] == "2024-06-01T00-00-00Z"


def test_list_of_a_missing_group_is_one_line(platform: Platform, mlctl: Callable[..., Result]) -> None:
    # GIVEN outputs naming a group that does not exist
    set_outputs(platform, modelPackageGroupName="no-such-group")

    # WHEN listed THEN exit 1 with one line naming the group
    result = mlctl("models", "list", *platform.target)
    assert result.code == 1
    assert result.err.startswith("mlctl models list: model package group 'no-such-group' does not exist")
    assert len(result.err.strip().splitlines()) == 1


def test_show_has_metrics_hyperparameters_lineage_and_reason(
    platform: Platform, mlctl: Callable[..., Result]
) -> None:
    # GIVEN an approved version registered with lineage
    platform.register(1)
    platform.register(2)

    # WHEN version 2 is shown (text and JSON)
    text = mlctl("models", "show", "2", *platform.target)
    shown = json.loads(mlctl("models", "show", "2", "--json", *platform.target).out)

    # THEN both carry its metrics, hyperparameters, lineage and approval reason
    assert text.code == 0, text.err
    assert f"{GROUP}/2" in text.out
    assert "approval reason: run 2 passed review" in text.out
    assert "epochs=12" in text.out and "mlp-dev-train-run-2" in text.out
    assert shown["version"] == 2 and shown["status"] == "Approved"
    assert shown["metrics"]["accuracy"] == 0.92
    assert shown["hyperparameters"] == {"epochs": "12", "lr": "0.001"}
    assert shown["lineage"]["dataset_version"] == "2024-06-02T00-00-00Z"
    assert shown["lineage"]["code_version"] == "commit0002"
    assert shown["lineage"]["training_job"] == "mlp-dev-train-run-2"
    assert shown["approval_description"] == "run 2 passed review"


def test_show_of_an_unknown_version_fails_cleanly(platform: Platform, mlctl: Callable[..., Result]) -> None:
    # GIVEN one version WHEN version 9 is shown THEN exit 1, one line, no traceback
    platform.register(1)
    result = mlctl("models", "show", "9", *platform.target)
    assert result.code == 1
    assert result.err.startswith("mlctl models show: model version")
    assert "does not exist" in result.err and "Traceback" not in result.err


def test_approve_stores_the_reason(platform: Platform, mlctl: Callable[..., Result]) -> None:
    # GIVEN a pending version
    version = platform.register(1, status="Pending")

    # WHEN it is approved with a reason
    result = mlctl("models", "approve", "1", "--reason", "beats v0 on the holdout", *platform.target)

    # THEN the registry says Approved with that reason
    assert result.code == 0, result.err
    assert result.out.strip().splitlines() == [
        f"champion gate: nothing is served yet; {GROUP}/1 is the first",
        f"approved {GROUP}/1: beats v0 on the holdout",
    ]
    described = platform.registry.describe(version.arn)
    assert (described.status, described.approval_description) == ("Approved", "beats v0 on the holdout")


def test_reject_stores_the_reason(platform: Platform, mlctl: Callable[..., Result]) -> None:
    # GIVEN an approved version
    version = platform.register(1)

    # WHEN it is rejected
    result = mlctl("models", "reject", "1", "--reason", "bias found in review", *platform.target)

    # THEN it is Rejected with the reason, and its metadata survived the update
    assert result.code == 0, result.err
    described = platform.registry.describe(version.arn)
    assert (described.status, described.approval_description) == ("Rejected", "bias found in review")
    assert described.dataset_version == "2024-06-01T00-00-00Z"


def test_reject_with_a_blank_reason_is_refused(platform: Platform, mlctl: Callable[..., Result]) -> None:
    # GIVEN an approved version WHEN rejected with a blank reason
    version = platform.register(1)
    result = mlctl("models", "reject", "1", "--reason", "  ", *platform.target)

    # THEN nothing changes and the error says a reason is needed
    assert result.code == 1
    assert "needs a reason" in result.err
    assert platform.registry.describe(version.arn).status == "Approved"


def test_registry_commands_work_in_local_mode(
    local_platform: LocalPlatform, mlctl: Callable[..., Result]
) -> None:
    # GIVEN local mode (an emulator named by the state file) with a pending version
    local_platform.registry.register(GROUP, "s3://artifacts/run-1/model.tar.gz", "image:latest")

    # WHEN it is approved and listed through --local
    approved = mlctl("models", "approve", "1", *local_platform.target)
    listed = json.loads(mlctl("models", "list", "--json", *local_platform.target).out)

    # THEN the emulator's registry changed
    assert approved.code == 0, approved.err
    assert [(v["version"], v["status"]) for v in listed] == [(1, "Approved")]


def test_approve_for_a_variant_records_it_with_the_approval(
    platform: Platform, mlctl: Callable[..., Result]
) -> None:
    # GIVEN a pending version (the dev stack has one variant, "primary")
    version = platform.register(1, status="Pending")

    # WHEN it is approved for a variant the stack does not have THEN one line names the variants
    wrong = mlctl("models", "approve", "1", "--variant", "green", *platform.target)
    assert wrong.code == 1 and "Traceback" not in wrong.err
    assert wrong.err.strip() == "mlctl models approve: --variant green: the dev endpoint has variants primary"
    assert platform.registry.describe(version.arn).status == "PendingManualApproval"

    # WHEN it is approved for its variant THEN the approval carries it, metrics kept, for the deployer
    result = mlctl("models", "approve", "1", "--variant", "primary", *platform.target)
    assert result.code == 0, result.err
    described = platform.registry.describe(version.arn)
    assert described.status == "Approved"
    assert described.customer_metadata[TARGET_VARIANT_KEY] == "primary"
    assert described.metrics == version.metrics


def test_approve_refuses_a_challenger_worse_than_the_served_version(
    platform: Platform, mlctl: Callable[..., Result]
) -> None:
    # GIVEN version 1 approved and a retrained version 2 that is clearly worse on the held-out set
    platform.register(1, metrics={"accuracy": 0.93, "loss": 0.2})
    challenger = platform.register(2, status="Pending", metrics={"accuracy": 0.81, "loss": 0.5})
    # WHEN someone approves it
    result = mlctl("models", "approve", "2", "--reason", "looks fine", *platform.target)
    # THEN the champion gate refuses: exit 1, one line, and the version is Rejected with the reason
    assert result.code == 1 and "Traceback" not in result.err
    assert "rejected by the champion gate" in result.err and "accuracy 0.93->0.81" in result.err
    described = platform.registry.describe(challenger.arn)
    assert described.status == "Rejected"
    assert described.customer_metadata["comparison.decision"] == "refuse"
    assert described.customer_metadata["comparison.champion"] == f"{GROUP}/1"


def test_approve_promotes_a_challenger_within_the_margin_and_records_why(
    platform: Platform, mlctl: Callable[..., Result]
) -> None:
    platform.register(1, metrics={"accuracy": 0.93, "loss": 0.2})
    challenger = platform.register(2, status="Pending", metrics={"accuracy": 0.925, "loss": 0.21})
    result = mlctl("models", "approve", "2", *platform.target)
    assert result.code == 0, result.err
    assert "champion gate" in result.out and "promoted: within margin 0.02" in result.out
    described = platform.registry.describe(challenger.arn)
    assert described.status == "Approved"
    assert described.customer_metadata["comparison.decision"] == "promote"


def test_the_gate_can_be_skipped_explicitly(platform: Platform, mlctl: Callable[..., Result]) -> None:
    platform.register(1, metrics={"accuracy": 0.93})
    challenger = platform.register(2, status="Pending", metrics={"accuracy": 0.5})
    result = mlctl("models", "approve", "2", "--skip-champion-gate", "--reason", "hotfix", *platform.target)
    assert result.code == 0, result.err
    described = platform.registry.describe(challenger.arn)
    assert described.status == "Approved"
    # recorded, so the deployer deploys it as approved instead of comparing it itself
    assert described.customer_metadata["comparison.decision"] == "skipped"
    assert described.customer_metadata["comparison.reason"] == "hotfix"
