"""ServingImages: every stack's plan declares the two model server repositories, locked down, and
serves the images under the tags this checkout hashes to."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

import infra.images
from infra.images import IMAGE_KINDS, TAG_ENV, ImageTagError, checkout_tags, image_tag
from infra.offline import Plan, PlannedResource
from infra.stack_config import available_stacks, load_stack_config
from tests.infra.conftest import cached_plan

REPOSITORY = "aws:ecr/repository:Repository"
PULL = {"ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer", "ecr:BatchCheckLayerAvailability"}


@pytest.fixture(params=available_stacks(), scope="module")
def any_stack_plan(request: pytest.FixtureRequest) -> Plan:
    """Every Pulumi.<stack>.yaml of the repository, the examples' included."""
    return cached_plan(request.param)


def repositories(plan: Plan) -> dict[str, PlannedResource]:
    return {r.inputs["name"].rsplit("-", 1)[-1]: r for r in plan.of_type(REPOSITORY)}


def attached(plan: Plan, type_: str, repository: PlannedResource) -> PlannedResource:
    (resource,) = [r for r in plan.of_type(type_) if r.inputs["repository"] == repository.outputs["name"]]
    return resource


def test_every_stack_has_one_repository_per_serving_image(any_stack_plan: Plan) -> None:
    # GIVEN a stack's plan
    prefix = load_stack_config(any_stack_plan.stack).name_prefix
    # THEN it declares the CPU and the GPU image's repositories, named after the stack
    found = repositories(any_stack_plan)
    assert set(found) == set(IMAGE_KINDS)
    assert {kind: r.inputs["name"] for kind, r in found.items()} == {
        kind: f"{prefix}/serving-{kind}" for kind in IMAGE_KINDS
    }


def test_repositories_are_encrypted_with_the_stack_key_scanned_and_immutable(any_stack_plan: Plan) -> None:
    for repository in repositories(any_stack_plan).values():
        inputs = repository.inputs
        # THEN each is encrypted with the stack's own KMS key (not the AWS-managed one)
        assert inputs["encryptionConfigurations"] == [
            {"encryptionType": "KMS", "kmsKey": any_stack_plan.outputs["kmsKeyArn"]}
        ]
        # AND scanned on push, and a tag can never be moved to other content
        assert inputs["imageScanningConfiguration"] == {"scanOnPush": True}
        assert inputs["imageTagMutability"] == "IMMUTABLE"


def test_untagged_images_expire_and_tagged_ones_stay(any_stack_plan: Plan) -> None:
    for repository in repositories(any_stack_plan).values():
        policy = json.loads(
            attached(any_stack_plan, "aws:ecr/lifecyclePolicy:LifecyclePolicy", repository).inputs["policy"]
        )
        (rule,) = policy["rules"]
        # THEN the only rule expires untagged images (a deployed tag is never removed)
        assert rule["selection"]["tagStatus"] == "untagged"
        assert rule["selection"]["countType"] == "sinceImagePushed"
        assert rule["action"] == {"type": "expire"}


def test_sagemaker_may_pull_for_this_account_only(any_stack_plan: Plan) -> None:
    for repository in repositories(any_stack_plan).values():
        resource = attached(any_stack_plan, "aws:ecr/repositoryPolicy:RepositoryPolicy", repository)
        (statement,) = json.loads(resource.inputs["policy"])["Statement"]
        # THEN the one statement lets SageMaker pull, only when acting for this account
        assert statement["Effect"] == "Allow"
        assert statement["Principal"] == {"Service": "sagemaker.amazonaws.com"}
        assert set(statement["Action"]) == PULL
        assert statement["Condition"] == {"StringEquals": {"aws:SourceAccount": "123456789012"}}


def test_the_stack_serves_the_images_under_this_checkouts_tags(any_stack_plan: Plan) -> None:
    # GIVEN the images the stack exports (the pipeline registers, the deployer serves, mlctl reads)
    images: dict[str, Any] = any_stack_plan.outputs["servingImages"]
    found = repositories(any_stack_plan)
    # THEN each is its repository's URL and the content hash of its Dockerfile and files
    assert images == {
        kind: f"{found[kind].outputs['repositoryUrl']}:{image_tag(kind)}" for kind in IMAGE_KINDS
    }
    assert any_stack_plan.outputs["servingImageRepositories"] == {
        kind: found[kind].outputs["repositoryUrl"] for kind in IMAGE_KINDS
    }


# --- the tags CI says it pushed ------------------------------------------------------------------------


@pytest.fixture
def fresh_tags(monkeypatch: pytest.MonkeyPatch) -> Any:
    checkout_tags.cache_clear()
    yield monkeypatch
    checkout_tags.cache_clear()


def test_the_tags_ci_pushed_are_accepted_when_they_are_this_checkouts(fresh_tags: Any) -> None:
    # GIVEN the environment the deploy workflow gives pulumi up: the tags its images job pushed
    for kind in IMAGE_KINDS:
        fresh_tags.setenv(TAG_ENV[kind], image_tag(kind))
    # THEN the program serves them
    assert checkout_tags() == {kind: image_tag(kind) for kind in IMAGE_KINDS}


def test_tags_of_another_commit_stop_the_program_naming_the_variable(fresh_tags: Any) -> None:
    # GIVEN a GPU tag the images job computed from other content
    fresh_tags.setenv(TAG_ENV["cpu"], image_tag("cpu"))
    fresh_tags.setenv(TAG_ENV["gpu"], "0" * 32)
    # THEN the program refuses to serve an image nobody pushed
    with pytest.raises(ImageTagError, match=rf"{TAG_ENV['gpu']}=0{{32}} is not this checkout's gpu image"):
        checkout_tags()


def test_the_plan_stops_on_a_wrong_pushed_tag(fresh_tags: Any) -> None:
    # GIVEN a CPU tag that is not this checkout's
    fresh_tags.setenv(TAG_ENV["cpu"], "f" * 32)
    # WHEN the program runs (uncached: this plan must really run)
    from infra.offline import run_offline

    # THEN it stops before declaring anything that would serve that image
    with pytest.raises(Exception, match=TAG_ENV["cpu"]):
        run_offline("dev")


def test_the_module_names_no_account_or_registry() -> None:
    # GIVEN the component's source
    source = Path(str(infra.images.__file__)).read_text()
    # THEN no registry host is written there: repository URLs come from the repositories
    assert ".dkr.ecr." not in source
    assert re.search(r"\b\d{12}\b", source) is None
