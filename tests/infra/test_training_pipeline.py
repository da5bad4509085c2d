"""The TrainingPipeline component: the pipeline resource, its scoped role, its code and its triggers."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from handlers.common.instance_types import has_gpu
from infra.offline import Plan, PlannedResource
from infra.source_bundle import build_folder_bundle
from infra.stack_config import load_stack_config, project_root, read_stack_values
from tests.infra.conftest import as_list, cached_plan, policy_document

# Actions AWS cannot scope to a resource; the only ones allowed on "*", each with a reason in the code.
UNSCOPABLE_ACTIONS = {"ecr:GetAuthorizationToken", "cloudwatch:PutMetricData"}


def pipeline(plan: Plan) -> PlannedResource:
    (resource,) = plan.of_type("aws:sagemaker/pipeline:Pipeline")
    return resource


def definition(plan: Plan) -> dict[str, Any]:
    return json.loads(pipeline(plan).inputs["pipelineDefinition"])


def execution_policy(plan: Plan) -> dict[str, Any]:
    return dict(policy_document(plan.named("training-execution-policy")))


def statements(plan: Plan) -> list[dict[str, Any]]:
    return list(execution_policy(plan)["Statement"])


def test_the_pipeline_runs_as_its_own_role(stack_plan: Plan) -> None:
    role = stack_plan.named("training-execution-role")
    assert pipeline(stack_plan).inputs["roleArn"] == role.outputs["arn"]
    trust = json.loads(role.inputs["assumeRolePolicy"])
    (statement,) = trust["Statement"]
    assert statement["Principal"] == {"Service": "sagemaker.amazonaws.com"}
    assert statement["Condition"] == {"StringEquals": {"aws:SourceAccount": "123456789012"}}


def test_the_definition_trains_on_the_configured_gpu_instances(stack_plan: Plan) -> None:
    parameters = {p["Name"]: p for p in definition(stack_plan)["Parameters"]}
    expected = {"dev": "ml.g4dn.xlarge", "prod": "ml.p3.2xlarge"}[stack_plan.stack]
    assert parameters["TrainingInstanceType"]["DefaultValue"] == expected


def registered_container(plan: Plan) -> tuple[dict[str, Any], dict[str, Any]]:
    """The RegisterModel step's inference specification and its one container."""
    register = next(
        step
        for outer in definition(plan)["Steps"]
        for step in outer.get("Arguments", {}).get("IfSteps", [])
        if step["Type"] == "RegisterModel"
    )["Arguments"]["InferenceSpecification"]
    (container,) = register["Containers"]
    return register, container


@pytest.mark.parametrize("stack", ["dev", "staging", "prod"])
def test_registered_versions_carry_the_image_for_the_serving_instance_family(stack: str) -> None:
    # GIVEN a stack's serving instance type and the version its pipeline registers
    serving = load_stack_config(stack).serving.instance_type
    plan = cached_plan(stack)
    register, container = registered_container(plan)
    # THEN the image is the platform's model server image of that family (CPU or GPU), as the stack
    # exports it, and the version names the serving instance type: a CPU endpoint never gets the
    # CUDA image
    family = "gpu" if has_gpu(serving) else "cpu"
    assert container["Image"] == plan.outputs["servingImages"][family]
    assert container["Image"].rsplit(":", 1)[0].endswith(f"/mlp-{stack}/serving-{family}")
    assert register["SupportedRealtimeInferenceInstanceTypes"] == [serving]
    # AND the serving container's environment carries the stack's precision
    assert container["Environment"] == {"MODEL_SERVER_PRECISION": "float32"}


def test_with_the_dlc_versions_carry_sagemakers_image_for_the_family(plan_with: Callable[..., Plan]) -> None:
    # GIVEN the dev stack (CPU serving) with serving.container: sagemaker-dlc
    serving = read_stack_values("dev")["ml-platform:serving"]
    plan = plan_with(**{"ml-platform:serving": {**serving, "container": "sagemaker-dlc"}})
    _, container = registered_container(plan)
    # THEN versions register with SageMaker's PyTorch CPU inference image, as before the platform's
    assert "/pytorch-inference:" in container["Image"] and "-cpu-" in container["Image"]


def test_the_image_check_above_sees_both_families() -> None:
    # The stacks above serve on both kinds, so the check compares real pairs either way.
    assert {has_gpu(load_stack_config(stack).serving.instance_type) for stack in ("dev", "prod")} == {
        False,
        True,
    }


def test_no_statement_allows_every_action(stack_plan: Plan) -> None:
    for statement in statements(stack_plan):
        actions = as_list(statement["Action"])
        assert "*" not in actions and not any(action.endswith(":*") for action in actions)


def test_only_unscopable_actions_use_a_wildcard_resource(stack_plan: Plan) -> None:
    for statement in statements(stack_plan):
        if "*" in as_list(statement["Resource"]):
            assert set(as_list(statement["Action"])) <= UNSCOPABLE_ACTIONS, statement["Sid"]


def test_data_access_is_limited_to_this_stacks_buckets(stack_plan: Plan) -> None:
    own_buckets = set(stack_plan.outputs["bucketArns"].values())
    for statement in statements(stack_plan):
        for resource in as_list(statement["Resource"]):
            if resource.startswith("arn:aws:s3:::"):
                bucket_arn = resource.split("/")[0]
                assert bucket_arn in own_buckets, f"{statement['Sid']} reaches {resource}"


def test_raw_data_is_read_only(stack_plan: Plan) -> None:
    raw = stack_plan.outputs["bucketArns"]["raw"]
    for statement in statements(stack_plan):
        touches_raw = any(str(r).startswith(raw) for r in as_list(statement["Resource"]))
        writes = {"s3:PutObject", "s3:DeleteObject"} & set(as_list(statement["Action"]))
        assert not (touches_raw and writes), statement["Sid"]


def test_the_key_and_registry_are_this_stacks(stack_plan: Plan) -> None:
    by_sid = {s["Sid"]: s for s in statements(stack_plan)}
    assert by_sid["UseStackKey"]["Resource"] == stack_plan.outputs["kmsKeyArn"]
    group = stack_plan.outputs["modelPackageGroupName"]
    assert sorted(by_sid["RegisterModels"]["Resource"]) == sorted(
        [
            f"arn:aws:sagemaker:us-east-1:123456789012:model-package-group/{group}",
            f"arn:aws:sagemaker:us-east-1:123456789012:model-package/{group}/*",
        ]
    )


def test_images_are_pulled_only_from_the_repositories_the_definition_names(stack_plan: Plan) -> None:
    by_sid = {s["Sid"]: s for s in statements(stack_plan)}
    repositories = as_list(by_sid["PullImages"]["Resource"])
    assert repositories
    assert all(r.startswith("arn:aws:ecr:us-east-1:") for r in repositories)
    # SageMaker's framework images for the jobs, and the stack's serving image the version registers
    serving = {r.outputs["arn"] for r in stack_plan.of_type("aws:ecr/repository:Repository")}
    assert all(":repository/pytorch-" in r or r in serving for r in repositories)


def test_the_role_may_pass_only_itself_and_only_to_sagemaker(stack_plan: Plan) -> None:
    by_sid = {s["Sid"]: s for s in statements(stack_plan)}
    assert (
        by_sid["PassOwnRoleToJobs"]["Resource"] == stack_plan.named("training-execution-role").outputs["arn"]
    )
    assert by_sid["PassOwnRoleToJobs"]["Condition"] == {
        "StringEquals": {"iam:PassedToService": "sagemaker.amazonaws.com"}
    }


def test_no_managed_policies_are_attached(stack_plan: Plan) -> None:
    assert stack_plan.of_type("aws:iam/rolePolicyAttachment:RolePolicyAttachment") == []
    for role in stack_plan.of_type("aws:iam/role:Role"):
        assert not role.inputs.get("managedPolicyArns")


def test_the_code_is_uploaded_encrypted_under_a_content_addressed_key(stack_plan: Plan) -> None:
    code = stack_plan.named("training-code")
    assert code.inputs["bucket"] == stack_plan.outputs["bucketNames"]["artifacts"]
    assert code.inputs["key"].startswith("code/training/") and code.inputs["key"].endswith(
        "/sourcedir.tar.gz"
    )
    assert code.inputs["serverSideEncryption"] == "aws:kms"
    assert code.inputs["kmsKeyId"] == stack_plan.outputs["kmsKeyArn"]
    assert code.inputs["key"] in json.dumps(definition(stack_plan))


@pytest.mark.parametrize(
    ("trigger", "dataset_version"), [("schedule", "latest"), ("new-data", "$.detail.object.version-id")]
)
def test_both_triggers_start_the_pipeline_with_a_dataset_version(
    stack_plan: Plan, trigger: str, dataset_version: str
) -> None:
    target = stack_plan.named(f"training-{trigger}-target")
    assert target.inputs["arn"] == pipeline(stack_plan).outputs["arn"]
    assert target.inputs["sagemakerPipelineTarget"]["pipelineParameterLists"] == [
        {"name": "DatasetVersion", "value": dataset_version}
    ]
    assert target.inputs["roleArn"] == stack_plan.named("training-trigger-role").outputs["arn"]


def test_the_schedule_comes_from_config(plan_with) -> None:
    plan = plan_with(**{"ml-platform:training": {"schedule": "rate(1 day)", "instanceType": "ml.g5.2xlarge"}})
    assert plan.named("training-schedule").inputs["scheduleExpression"] == "rate(1 day)"
    parameters = {p["Name"]: p for p in definition(plan)["Parameters"]}
    assert parameters["TrainingInstanceType"]["DefaultValue"] == "ml.g5.2xlarge"


def test_new_data_means_objects_created_under_raw_in_this_stacks_raw_bucket(stack_plan: Plan) -> None:
    pattern = json.loads(stack_plan.named("training-new-data").inputs["eventPattern"])
    assert pattern["detail-type"] == ["Object Created"]
    assert pattern["detail"]["bucket"]["name"] == [stack_plan.outputs["bucketNames"]["raw"]]
    assert pattern["detail"]["object"]["key"] == [{"prefix": "raw/"}]


def test_new_raw_data_starts_the_training_pipeline_and_nothing_else(stack_plan: Plan) -> None:
    # GIVEN every EventBridge rule of the plan that reacts to objects created in the raw bucket
    raw = stack_plan.outputs["bucketNames"]["raw"]
    raw_rules = [
        rule
        for rule in stack_plan.of_type("aws:cloudwatch/eventRule:EventRule")
        if "eventPattern" in rule.inputs
        and json.loads(rule.inputs["eventPattern"]).get("detail", {}).get("bucket", {}).get("name") == [raw]
    ]
    # THEN the training pipeline's new-data rule is the only one, and the pipeline its only target:
    # Prepare validates raw data in the tasks' own formats, so nothing else reads it first
    assert [rule.name for rule in raw_rules] == ["training-new-data"]
    targets = [
        target.inputs["arn"]
        for target in stack_plan.of_type("aws:cloudwatch/eventTarget:EventTarget")
        if target.inputs["rule"] == raw_rules[0].inputs["name"]
    ]
    assert targets == [pipeline(stack_plan).outputs["arn"]]


def test_the_trigger_role_may_only_start_this_pipeline(stack_plan: Plan) -> None:
    (statement,) = policy_document(stack_plan.named("training-trigger-policy"))["Statement"]
    assert statement["Action"] == "sagemaker:StartPipelineExecution"
    assert statement["Resource"] == pipeline(stack_plan).outputs["arn"]


# --- a team's own code (examples/tabular-classifier through its stack) ----------------------------------


def test_a_team_stack_plans_its_own_code_bundle_and_entry_point() -> None:
    # GIVEN the example team's stack (training.source points at its folder)
    plan = cached_plan("example-churn")
    config = load_stack_config("example-churn")
    assert config.training.source is not None
    # THEN the team's folder is uploaded as its own content-addressed, encrypted bundle
    expected = build_folder_bundle(project_root() / config.training.source.dir)
    team_code = plan.named("training-source-code")
    assert team_code.inputs["key"] == expected.s3_key
    assert team_code.inputs["serverSideEncryption"] == "aws:kms"
    # AND the pipeline's Train step runs that bundle's entry point in script mode
    train = next(s for s in definition(plan)["Steps"] if s["Name"] == "Train")["Arguments"]
    code = next(c for c in train["InputDataConfig"] if c["ChannelName"] == "code")
    assert code["DataSource"]["S3DataSource"]["S3Uri"].endswith(expected.s3_key)
    assert train["HyperParameters"]["sagemaker_program"] == config.training.source.entry_point
    # AND Evaluate runs the team's evaluation script from the same bundle
    evaluate = next(s for s in definition(plan)["Steps"] if s["Name"] == "Evaluate")["Arguments"]
    assert evaluate["AppSpecification"]["ContainerArguments"][0] == config.training.source.evaluate
    assert evaluate["AppSpecification"]["ContainerEntrypoint"][-1].endswith("sourcedir.tar.gz")
