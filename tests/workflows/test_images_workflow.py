"""The images workflow: both model server images built with the official docker actions, pushed
with OIDC credentials under their content-hash tags (skipped when the tag exists), and called by
every deploy stage before its ``pulumi up``, which gets the tags the way the program reads them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from infra.images import IMAGE_KINDS, TAG_ENV, image_tag, repository_name
from infra.stack_config import load_stack_config
from tests.workflows.conftest import DEPLOY_STAGES, REPO_ROOT, load_workflow
from tests.workflows.test_deploy_workflow import GITHUB_BASH, fake_tool, step_index

IMAGES_WORKFLOW = "./.github/workflows/images.yml"


@pytest.fixture(scope="module")
def images_workflow() -> dict[str, Any]:
    return load_workflow("images.yml")


def push_steps(images_workflow: dict[str, Any]) -> list[dict[str, Any]]:
    return list(images_workflow["jobs"]["push"]["steps"])


def uses(step: dict[str, Any]) -> str:
    return str(step.get("uses", ""))


def run_script(
    script: str, env: dict[str, str], tmp_path: Path, *, cwd: Path, tools: dict[str, str] | None = None
) -> tuple[subprocess.CompletedProcess[str], dict[str, str]]:
    """Run a `run:` script as GitHub does; returns the result and what it wrote to GITHUB_OUTPUT."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    for name, body in (tools or {}).items():
        fake_tool(bin_dir, name, body)
    output = tmp_path / "github-output"
    output.write_text("")
    script_file = tmp_path / "step.sh"
    script_file.write_text(script)
    python_dir = str(Path(sys.executable).parent)
    result = subprocess.run(
        [*GITHUB_BASH, str(script_file)],
        cwd=cwd,
        env={
            **env,
            "PATH": f"{bin_dir}:{python_dir}:/usr/bin:/bin",
            "GITHUB_OUTPUT": str(output),
            "HOME": str(tmp_path),
            "PYTHONPATH": str(REPO_ROOT),
        },
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    outputs = dict(line.split("=", 1) for line in output.read_text().splitlines() if "=" in line)
    return result, outputs


# --- shape ----------------------------------------------------------------------------------------------


def test_it_is_a_reusable_workflow_taking_the_stack_and_giving_the_tags(
    images_workflow: dict[str, Any],
) -> None:
    # GIVEN the workflow's trigger
    call = images_workflow["on"]["workflow_call"]

    # THEN callers name the stack and the environment holding its push role, and get both tags
    assert call["inputs"]["stack"]["required"] is True
    assert call["inputs"]["environment"]["required"] is True
    assert set(call["outputs"]) == {f"{kind}-tag" for kind in IMAGE_KINDS}
    assert list(images_workflow["on"]) == ["workflow_call"]
    assert images_workflow["permissions"] == {"contents": "read"}


def test_both_images_are_built_from_their_dockerfiles_with_the_official_actions(
    images_workflow: dict[str, Any],
) -> None:
    # GIVEN the push job: a matrix over the image kinds
    job = images_workflow["jobs"]["push"]
    steps = push_steps(images_workflow)
    build = next(step for step in steps if uses(step).startswith("docker/build-push-action@"))

    # THEN each kind is built with buildx from docker/serving-<kind>.Dockerfile over the repository
    assert job["strategy"]["matrix"]["kind"] == list(IMAGE_KINDS)
    assert any(uses(step).startswith("docker/setup-buildx-action@") for step in steps)
    assert build["with"]["file"] == "docker/serving-${{ matrix.kind }}.Dockerfile"
    assert build["with"]["context"] == "."
    for kind in IMAGE_KINDS:
        assert (REPO_ROOT / "docker" / f"serving-{kind}.Dockerfile").is_file()
    # AND pushed as one plain image under the content-hash tag (SageMaker pulls no attestation index)
    assert build["with"]["push"] is True
    assert build["with"]["provenance"] is False
    assert build["with"]["sbom"] is False
    assert build["with"]["tags"].endswith(":${{ env.TAG }}")
    assert "needs.tags.outputs.gpu-tag" in job["env"]["TAG"]
    assert "needs.tags.outputs.cpu-tag" in job["env"]["TAG"]


def test_the_push_uses_oidc_credentials_and_the_ecr_login_action(images_workflow: dict[str, Any]) -> None:
    # GIVEN the push job and its steps
    job = images_workflow["jobs"]["push"]
    steps = push_steps(images_workflow)
    credentials = next(s for s in steps if uses(s).startswith("aws-actions/configure-aws-credentials@"))
    login_at = next(i for i, s in enumerate(steps) if uses(s).startswith("aws-actions/amazon-ecr-login@"))
    build_at = next(i for i, s in enumerate(steps) if uses(s).startswith("docker/build-push-action@"))

    # THEN the role comes from the stack's images environment through OIDC, before login and build
    assert job["permissions"] == {"id-token": "write", "contents": "read"}
    assert job["environment"] == "${{ inputs.environment }}"
    assert credentials["with"]["role-to-assume"] == "${{ vars.AWS_IMAGES_ROLE_ARN }}"
    assert steps.index(credentials) < login_at < build_at
    assert steps[build_at]["with"]["tags"].startswith("${{ steps.ecr.outputs.registry }}/")
    # AND two runs never race to push one immutable tag
    assert job["concurrency"]["cancel-in-progress"] is False
    assert "inputs.stack" in job["concurrency"]["group"] and "matrix.kind" in job["concurrency"]["group"]


def test_building_and_pushing_are_skipped_when_the_tag_exists(images_workflow: dict[str, Any]) -> None:
    # GIVEN the steps after the existence check
    steps = push_steps(images_workflow)
    check_at = step_index(steps, "exists")
    docker_steps = [s for s in steps if uses(s).startswith("docker/")]

    # THEN every docker step comes after the check and runs only when the tag is missing
    assert docker_steps
    for step in docker_steps:
        assert steps.index(step) > check_at
        assert step["if"] == "steps.exists.outputs.exists == 'false'"


# --- behaviour: the scripts under GitHub's shell ----------------------------------------------------------


def test_the_tag_step_writes_the_programs_tags(images_workflow: dict[str, Any], tmp_path: Path) -> None:
    # GIVEN the tags job's script, run in the repository
    steps = images_workflow["jobs"]["tags"]["steps"]
    script = steps[step_index(steps, "tags")]["run"]

    # WHEN it runs under GitHub's shell
    result, outputs = run_script(script, {}, tmp_path, cwd=REPO_ROOT)

    # THEN it outputs the tags the Pulumi program serves (infra.images.image_tag)
    assert result.returncode == 0, result.stderr
    assert outputs == {f"{kind}-tag": image_tag(kind) for kind in IMAGE_KINDS}


@pytest.mark.parametrize("kind", IMAGE_KINDS)
def test_the_repository_step_names_the_stacks_repository(
    images_workflow: dict[str, Any], tmp_path: Path, kind: str
) -> None:
    # GIVEN the repository step's script, for the dev stack
    steps = push_steps(images_workflow)
    script = steps[step_index(steps, "repository")]["run"]

    # WHEN it runs
    result, outputs = run_script(script, {"STACK": "dev", "KIND": kind}, tmp_path, cwd=REPO_ROOT)

    # THEN it names the repository the program creates for that stack and image
    assert result.returncode == 0, result.stderr
    assert outputs == {"name": repository_name(load_stack_config("dev").name_prefix, kind)}


EXISTS_CASES = {
    "pushed": ("exit 0", 0, "true"),
    "not-pushed": (
        "echo 'An error occurred (ImageNotFoundException) when calling DescribeImages' >&2; exit 254",
        0,
        "false",
    ),
    "no-repository": (
        "echo 'An error occurred (RepositoryNotFoundException) when calling DescribeImages' >&2; exit 254",
        1,
        None,
    ),
    "denied": ("echo 'An error occurred (AccessDeniedException)' >&2; exit 254", 1, None),
}


@pytest.mark.parametrize("case", EXISTS_CASES)
def test_the_existence_check_reads_ecrs_answer(
    images_workflow: dict[str, Any], tmp_path: Path, case: str
) -> None:
    # GIVEN the existence check's script and an `aws` that answers as ECR does in this case
    steps = push_steps(images_workflow)
    script = steps[step_index(steps, "exists")]["run"]
    aws_body, expected_exit, expected_exists = EXISTS_CASES[case]
    calls = tmp_path / "aws-calls.txt"
    env = {"REPOSITORY": "mlp-dev/serving-cpu", "TAG": "0123abcd"}

    # WHEN it runs
    result, outputs = run_script(
        script, env, tmp_path, cwd=tmp_path, tools={"aws": f'echo "$*" >> "{calls}"\n{aws_body}'}
    )

    # THEN it asked for exactly that tag, and: an existing tag skips the build, a missing one builds,
    # anything else (no repository, no permission) fails the job rather than build blind
    assert "ecr describe-images --repository-name mlp-dev/serving-cpu --image-ids imageTag=0123abcd" in (
        calls.read_text()
    )
    assert (result.returncode != 0) == bool(expected_exit), result.stdout + result.stderr
    assert outputs.get("exists") == expected_exists
    if case == "no-repository":
        assert "pulumi up creates it" in result.stdout


# --- the deploy pipeline calls it ------------------------------------------------------------------------


@pytest.mark.parametrize("stage", DEPLOY_STAGES)
def test_each_stage_pushes_its_images_before_pulumi_up_and_passes_the_tags(
    deploy_workflow: dict[str, Any], stage: str
) -> None:
    # GIVEN the stage's images job and deploy job
    images = deploy_workflow["jobs"][f"images-{stage}"]
    job = deploy_workflow["jobs"][stage]

    # THEN the images job calls this workflow for the stage's stack, with OIDC allowed
    assert images["uses"] == IMAGES_WORKFLOW
    assert images["with"] == {"stack": stage, "environment": f"{stage}-images"}
    assert images["permissions"] == {"id-token": "write", "contents": "read"}
    # AND the deploy job (whose steps include pulumi up) waits for it
    assert f"images-{stage}" in ([job["needs"]] if isinstance(job["needs"], str) else job["needs"])
    # AND hands its tags to the program under the names the program reads
    for kind in IMAGE_KINDS:
        assert job["env"][TAG_ENV[kind]] == f"${{{{ needs.images-{stage}.outputs.{kind}-tag }}}}"
