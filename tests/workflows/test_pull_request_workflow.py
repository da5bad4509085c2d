"""The pull-request checks: `make test`, then the offline plan and policy report of every stack."""

from __future__ import annotations

from typing import Any

from infra.stack_config import available_stacks


def test_runs_on_pull_requests_with_a_read_only_token(pull_request_workflow: dict[str, Any]) -> None:
    # GIVEN the workflow's triggers and permissions
    # THEN it runs on pull requests, reads the repository and nothing else
    assert "pull_request" in pull_request_workflow["on"]
    assert "pull_request_target" not in pull_request_workflow["on"]
    assert pull_request_workflow["permissions"] == {"contents": "read"}
    for job in pull_request_workflow["jobs"].values():
        assert "permissions" not in job


def test_a_new_push_cancels_the_previous_checks_of_that_pull_request(
    pull_request_workflow: dict[str, Any],
) -> None:
    # GIVEN the workflow's concurrency settings
    concurrency = pull_request_workflow["concurrency"]

    # THEN runs are grouped per pull request, and a newer one cancels the older one
    assert "github.event.pull_request.number" in concurrency["group"]
    assert concurrency["cancel-in-progress"] is True


def test_runs_make_test_on_python_3_11(pull_request_workflow: dict[str, Any]) -> None:
    # GIVEN the workflow's steps, all jobs together
    steps = [step for job in pull_request_workflow["jobs"].values() for step in job["steps"]]

    # THEN the checks are exactly the README's `make test` (lint, types, tests), on Python 3.11
    assert any(step.get("run") == "make test" for step in steps)
    pythons = {step["with"]["python-version"] for step in steps if "setup-python" in step.get("uses", "")}
    assert pythons == {"3.11"}
    # AND nothing here gets cloud credentials
    assert not any("configure-aws-credentials" in step.get("uses", "") for step in steps)


def test_plans_every_stack_offline(pull_request_workflow: dict[str, Any]) -> None:
    # GIVEN the plan job: a matrix over stacks
    plan = pull_request_workflow["jobs"]["plan"]
    stacks = plan["strategy"]["matrix"]["stack"]

    # THEN every Pulumi.<stack>.yaml in the repository is planned, one stack failing not hiding another
    assert sorted(stacks) == available_stacks()
    assert plan["strategy"]["fail-fast"] is False
    # AND the plan (which ends with the policy report) runs per stack
    scripts = [step.get("run", "") for step in plan["steps"]]
    assert any('mlctl plan --stack "${{ matrix.stack }}"' in script for script in scripts)
