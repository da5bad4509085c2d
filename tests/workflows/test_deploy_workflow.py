"""The deploy pipeline: dev -> staging -> prod, OIDC only, official Pulumi action, and a job that
fails (stopping the pipeline) when ``mlctl deploy wait`` fails."""

from __future__ import annotations

import re
import stat
import subprocess
from pathlib import Path
from typing import Any

import pytest

from infra.stack_config import PROVISIONING_ALLOWANCE_SECONDS, deployment_wait_seconds, load_stack_config
from tests.workflows.conftest import DEPLOY_STAGES, workflow_files

# GitHub's default shell for `run:` on Linux runners.
GITHUB_BASH = ["bash", "--noprofile", "--norc", "-eo", "pipefail"]
STATUS_FUNCTIONS = re.compile(r"\b(always|failure|cancelled)\s*\(")
IGNORED_EXIT = re.compile(r"\|\|\s*(true|:|exit\s+0)\b|\bset\s+\+e\b")


def needs_of(job: dict[str, Any]) -> list[str]:
    needs = job.get("needs", [])
    return [needs] if isinstance(needs, str) else list(needs)


def environment_of(job: dict[str, Any]) -> str | None:
    environment = job.get("environment")
    return environment.get("name") if isinstance(environment, dict) else environment


def step_index(steps: list[dict[str, Any]], step_id: str) -> int:
    ids = [step.get("id") for step in steps]
    assert step_id in ids, f"no step with id {step_id!r}; ids: {ids}"
    return ids.index(step_id)


def runs_after_a_failure(step: dict[str, Any]) -> bool:
    """GitHub skips a step once an earlier one failed, unless its `if` uses a status function."""
    return bool(STATUS_FUNCTIONS.search(str(step.get("if", ""))))


def test_deploy_runs_on_main_and_by_hand(deploy_workflow: dict[str, Any]) -> None:
    # GIVEN the deploy workflow's triggers
    triggers = deploy_workflow["on"]

    # THEN it runs on pushes to main and on demand, never on pull requests
    assert triggers["push"]["branches"] == ["main"]
    assert "workflow_dispatch" in triggers
    assert "pull_request" not in triggers and "pull_request_target" not in triggers


def test_stages_chain_dev_then_staging_then_prod(deploy_workflow: dict[str, Any]) -> None:
    # GIVEN the deploy jobs
    jobs = deploy_workflow["jobs"]

    # THEN there is one per stack and one pushing its images, chained through `needs`: a stage
    # starts after the one before it and after its own images
    assert set(jobs) == set(DEPLOY_STAGES) | {f"images-{stage}" for stage in DEPLOY_STAGES}
    assert needs_of(jobs["dev"]) == ["images-dev"]
    assert needs_of(jobs["staging"]) == ["dev", "images-staging"]
    assert needs_of(jobs["prod"]) == ["staging", "images-prod"]
    # AND a stage's images are pushed only once the stage before it succeeded
    assert needs_of(jobs["images-dev"]) == []
    assert needs_of(jobs["images-staging"]) == ["dev"]
    assert needs_of(jobs["images-prod"]) == ["staging"]


@pytest.mark.parametrize("stage", DEPLOY_STAGES)
def test_each_stage_runs_in_its_environment(deploy_workflow: dict[str, Any], stage: str) -> None:
    # GIVEN one deploy job
    job = deploy_workflow["jobs"][stage]

    # THEN it runs in the GitHub environment of its stack (staging and prod: required reviewers),
    # deploys that stack, and never runs a `pulumi up` concurrently with another run
    assert environment_of(job) == stage
    assert job["env"]["STACK"] == stage
    assert job["concurrency"]["group"] == f"deploy-{stage}"
    assert job["concurrency"]["cancel-in-progress"] is False


@pytest.mark.parametrize("stage", DEPLOY_STAGES)
def test_aws_access_is_oidc_role_assumption(deploy_workflow: dict[str, Any], stage: str) -> None:
    # GIVEN one deploy job
    job = deploy_workflow["jobs"][stage]
    steps = job["steps"]

    # THEN it may request an OIDC token and only read the repository
    assert job["permissions"] == {"id-token": "write", "contents": "read"}
    # AND the credentials come from assuming the environment's deploy role, never from keys
    aws_steps = [
        s for s in steps if str(s.get("uses", "")).startswith("aws-actions/configure-aws-credentials@")
    ]
    assert len(aws_steps) == 1
    inputs = aws_steps[0]["with"]
    assert inputs["role-to-assume"] == "${{ vars.AWS_DEPLOY_ROLE_ARN }}"
    assert "aws-region" in inputs
    assert not {"aws-access-key-id", "aws-secret-access-key"} & set(inputs)
    # AND the credentials exist before the first Pulumi step
    first_pulumi = min(i for i, s in enumerate(steps) if str(s.get("uses", "")).startswith("pulumi/actions@"))
    assert steps.index(aws_steps[0]) < first_pulumi


def test_no_long_lived_aws_keys_in_any_workflow() -> None:
    # GIVEN every workflow file as text
    for path in workflow_files():
        text = path.read_text()

        # THEN none names an AWS access key (only OIDC role assumption)
        assert "AWS_ACCESS_KEY_ID" not in text, path.name
        assert "AWS_SECRET_ACCESS_KEY" not in text, path.name
        assert "aws-access-key-id" not in text, path.name


def test_the_workflow_default_token_is_read_only(deploy_workflow: dict[str, Any]) -> None:
    # GIVEN the workflow-level permissions
    # THEN jobs get only what they ask for
    assert deploy_workflow["permissions"] == {"contents": "read"}


@pytest.mark.parametrize("stage", DEPLOY_STAGES)
def test_pulumi_runs_through_the_official_action(deploy_workflow: dict[str, Any], stage: str) -> None:
    # GIVEN one deploy job's steps
    steps = deploy_workflow["jobs"][stage]["steps"]

    # WHEN its Pulumi steps are picked out
    pulumi_steps = [s for s in steps if str(s.get("uses", "")).startswith("pulumi/actions@")]

    # THEN they are `preview` then `up` of this stack, with the backend token, and nothing ignored
    assert [s["with"]["command"] for s in pulumi_steps] == ["preview", "up"]
    assert all(s["with"]["stack-name"] == stage for s in pulumi_steps)
    assert all(s["env"]["PULUMI_ACCESS_TOKEN"] == "${{ secrets.PULUMI_ACCESS_TOKEN }}" for s in pulumi_steps)
    assert all("continue-on-error" not in s and "continue-on-error" not in s["with"] for s in pulumi_steps)
    # AND no shell step deploys around the action
    scripts = " ".join(str(s.get("run", "")) for s in steps)
    assert not re.search(r"pulumi\s+(up|preview|destroy)\b", scripts)


@pytest.mark.parametrize("stage", DEPLOY_STAGES)
def test_a_failed_deploy_wait_cannot_be_ignored(deploy_workflow: dict[str, Any], stage: str) -> None:
    # GIVEN one deploy job and its deploy-wait step
    job = deploy_workflow["jobs"][stage]
    steps = job["steps"]
    wait_at = step_index(steps, "deploy-wait")
    wait = steps[wait_at]

    # THEN the step runs `mlctl deploy wait` for this stack after `pulumi up`
    assert re.search(r"\bmlctl deploy wait\b", wait["run"])
    assert '--stack "$STACK"' in wait["run"]
    assert "--timeout" in wait["run"]
    up_at = next(i for i, s in enumerate(steps) if s.get("with", {}).get("command") == "up")
    assert up_at < wait_at
    # AND nothing turns its failure into a success
    assert "continue-on-error" not in wait
    assert "continue-on-error" not in job
    assert not IGNORED_EXIT.search(wait["run"]), wait["run"]
    assert wait.get("shell", "bash") == "bash"
    assert "shell" not in job.get("defaults", {}).get("run", {})
    assert "shell" not in deploy_workflow.get("defaults", {}).get("run", {})


@pytest.mark.parametrize("stage", DEPLOY_STAGES)
def test_a_smoke_request_follows_a_successful_wait_only(deploy_workflow: dict[str, Any], stage: str) -> None:
    # GIVEN one deploy job's steps
    steps = deploy_workflow["jobs"][stage]["steps"]
    wait_at = step_index(steps, "deploy-wait")
    smoke_at = step_index(steps, "smoke")
    smoke = steps[smoke_at]

    # THEN the smoke step comes after the wait, sends a request, and is skipped when the wait failed
    assert smoke_at > wait_at
    assert "--smoke" in smoke["run"] and "--no-smoke" not in smoke["run"]
    assert not runs_after_a_failure(smoke), smoke.get("if")
    assert "continue-on-error" not in smoke
    assert not IGNORED_EXIT.search(smoke["run"])


@pytest.mark.parametrize("stage", DEPLOY_STAGES)
def test_the_wait_covers_the_stacks_blue_green_schedule(deploy_workflow: dict[str, Any], stage: str) -> None:
    # GIVEN the stack's deployment settings and the job's timeouts
    job = deploy_workflow["jobs"][stage]
    needed = deployment_wait_seconds(load_stack_config(stage).deployment) + PROVISIONING_ALLOWANCE_SECONDS
    wait_timeout = int(job["env"]["DEPLOY_TIMEOUT_SECONDS"])

    # THEN `mlctl deploy wait` waits long enough for provisioning, every bake and the termination
    # wait, and the job itself lives longer than the wait (so the wait, not the runner, decides)
    assert wait_timeout >= needed
    assert job["timeout-minutes"] * 60 > wait_timeout


# --- behaviour: the deploy-wait script under GitHub's shell, with fake tools -----------------------------


def fake_tool(folder: Path, name: str, body: str) -> None:
    path = folder / name
    path.write_text(f"#!/usr/bin/env bash\n{body}\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)


def run_step_script(
    script: str, job_env: dict[str, str], tmp_path: Path, mlctl_exit: int
) -> tuple[subprocess.CompletedProcess[str], str]:
    """Run a `run:` script as GitHub does, with fake `pulumi` and `mlctl` first on PATH."""
    bin_dir = tmp_path / "bin"
    runner_temp = tmp_path / "runner-temp"
    bin_dir.mkdir()
    runner_temp.mkdir()
    calls = tmp_path / "mlctl-calls.txt"
    fake_tool(bin_dir, "pulumi", "echo '{}'")
    fake_tool(bin_dir, "mlctl", f'echo "$*" >> "{calls}"\nexit {mlctl_exit}')
    env = {
        **job_env,
        "PATH": f"{bin_dir}:/usr/bin:/bin",
        "RUNNER_TEMP": str(runner_temp),
        "HOME": str(tmp_path),
    }
    script_file = tmp_path / "step.sh"
    script_file.write_text(script)
    result = subprocess.run(
        [*GITHUB_BASH, str(script_file)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    return result, calls.read_text() if calls.exists() else ""


def plain_job_env(deploy_workflow: dict[str, Any], stage: str) -> dict[str, str]:
    job = deploy_workflow["jobs"][stage]
    wait = job["steps"][step_index(job["steps"], "deploy-wait")]
    merged = {**deploy_workflow.get("env", {}), **job.get("env", {}), **wait.get("env", {})}
    # Expressions (secrets, vars) are GitHub's to fill in; the fakes need none of them.
    return {key: str(value) for key, value in merged.items() if "${{" not in str(value)}


@pytest.mark.parametrize("stage", DEPLOY_STAGES)
def test_the_job_fails_when_mlctl_deploy_wait_fails(
    deploy_workflow: dict[str, Any], stage: str, tmp_path: Path
) -> None:
    # GIVEN the deploy-wait step's script, and an `mlctl` that fails as a rolled-back deployment does
    steps = deploy_workflow["jobs"][stage]["steps"]
    wait_at = step_index(steps, "deploy-wait")
    script = steps[wait_at]["run"]
    assert "${{" not in script, "the script must take its values from env:, not from expressions"

    # WHEN the step runs under GitHub's shell
    result, calls = run_step_script(script, plain_job_env(deploy_workflow, stage), tmp_path, mlctl_exit=1)

    # THEN the step fails: mlctl was asked to wait for this stack, and its exit status is the step's
    assert result.returncode != 0, result.stdout + result.stderr
    assert f"deploy wait --stack {stage} " in calls
    assert (tmp_path / "runner-temp" / "outputs.json").read_text().strip() == "{}"
    # AND every later step (the smoke request among them) is skipped: none runs after a failure
    later = steps[wait_at + 1 :]
    assert any(step.get("id") == "smoke" for step in later)
    assert [step.get("name") for step in later if runs_after_a_failure(step)] == []


@pytest.mark.parametrize("stage", DEPLOY_STAGES)
def test_the_step_passes_when_mlctl_deploy_wait_passes(
    deploy_workflow: dict[str, Any], stage: str, tmp_path: Path
) -> None:
    # GIVEN the same script, and an `mlctl` that reports a verified deployment
    steps = deploy_workflow["jobs"][stage]["steps"]
    script = steps[step_index(steps, "deploy-wait")]["run"]

    # WHEN the step runs under GitHub's shell
    result, calls = run_step_script(script, plain_job_env(deploy_workflow, stage), tmp_path, mlctl_exit=0)

    # THEN it succeeds (so the failure above comes from mlctl's exit status, not a broken script),
    # passing the outputs file and the stage's timeout
    assert result.returncode == 0, result.stdout + result.stderr
    timeout = deploy_workflow["jobs"][stage]["env"]["DEPLOY_TIMEOUT_SECONDS"]
    assert f"--outputs-file {tmp_path / 'runner-temp' / 'outputs.json'}" in calls
    assert f"--timeout {timeout}" in calls
