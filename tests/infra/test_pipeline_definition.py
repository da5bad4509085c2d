"""The SageMaker training pipeline definition: steps, wiring, security settings, offline build."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import subprocess
import sys
import textwrap
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

import infra.pipeline_definition as pipeline_definition_module
from infra.pipeline_definition import PipelineDefinitionSpec, build_pipeline_definition
from infra.stack_config import TrainingConfig, load_stack_config

REPO = Path(__file__).resolve().parents[2]
KMS = "arn:aws:kms:us-east-1:111122223333:key/0b5e3c1e-1111-2222-3333-444455556666"
ROLE = "arn:aws:iam::111122223333:role/mlp-dev-sagemaker-execution"
METRICS = ({"Name": "validation:accuracy", "Regex": "val_accuracy=([0-9.]+)"},)

BASE = PipelineDefinitionSpec(
    pipeline_name="mlp-dev-training",
    region="us-east-1",
    role_arn=ROLE,
    raw_bucket="mlp-dev-raw-111122223333-us-east-1",
    processed_bucket="mlp-dev-processed-111122223333-us-east-1",
    artifacts_bucket="mlp-dev-artifacts-111122223333-us-east-1",
    kms_key_arn=KMS,
    code_uri="s3://mlp-dev-artifacts-111122223333-us-east-1/code/source-0123abcd.tar.gz",
    model_package_group_name="mlp-dev-digits",
    model_name="digits-cnn",
    inference_instance_type="ml.g4dn.xlarge",
    training=TrainingConfig(
        task="digits",
        instance_type="ml.g4dn.xlarge",
        instance_count=1,
        use_spot=True,
        max_runtime_seconds=86_400,
        max_wait_seconds=172_800,
        network_isolation=True,
        inter_container_encryption=True,
        evaluation_metric="accuracy",
        evaluation_threshold=0.9,
    ),
    metric_definitions=METRICS,
)
# Every setting that has two sides flipped: another region, a lower-is-better metric, no spot,
# no isolation or encryption, two instances.
ALT = replace(
    BASE,
    region="eu-west-1",
    training=BASE.training.model_copy(
        update={
            "evaluation_metric": "rmse",
            "evaluation_threshold": 0.25,
            "use_spot": False,
            "network_isolation": False,
            "inter_container_encryption": False,
            "instance_type": "ml.p3.2xlarge",
            "instance_count": 2,
        }
    ),
)


@pytest.fixture(scope="module")
def base_build() -> dict[str, Any]:
    """The base definition, plus what the process looked like around the build."""
    environ_before = dict(os.environ)
    root_handlers_before = list(logging.getLogger().handlers)
    text = build_pipeline_definition(BASE)
    return {
        "text": text,
        "environ_before": environ_before,
        "environ_after": dict(os.environ),
        "root_handlers_before": root_handlers_before,
        "root_handlers_after": list(logging.getLogger().handlers),
    }


@pytest.fixture(scope="module")
def base(base_build: dict[str, Any]) -> dict[str, Any]:
    return json.loads(base_build["text"])


@pytest.fixture(scope="module")
def alt() -> dict[str, Any]:
    return json.loads(build_pipeline_definition(ALT))


def all_steps(definition: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Every step by name, the condition's branches included."""
    found: dict[str, dict[str, Any]] = {}

    def visit(steps: list[dict[str, Any]]) -> None:
        for step in steps:
            found[step["Name"]] = step
            visit(step.get("Arguments", {}).get("IfSteps", []))
            visit(step.get("Arguments", {}).get("ElseSteps", []))

    visit(definition["Steps"])
    return found


def step(definition: dict[str, Any], name: str) -> dict[str, Any]:
    return all_steps(definition)[name]


def references(node: Any) -> set[str]:
    """Every ``{"Get": ...}`` reference (step properties, parameters, execution variables) in ``node``."""
    if isinstance(node, dict):
        found = {node["Get"]} if isinstance(node.get("Get"), str) else set()
        for value in node.values():
            found |= references(value)
        return found
    if isinstance(node, list):
        return set().union(*(references(item) for item in node)) if node else set()
    return set()


def join_values(node: dict[str, Any]) -> list[Any]:
    return node["Std:Join"]["Values"]


def parameter(definition: dict[str, Any], name: str) -> dict[str, Any]:
    (found,) = (p for p in definition["Parameters"] if p["Name"] == name)
    return found


def channel(definition: dict[str, Any], name: str) -> dict[str, Any]:
    (found,) = (
        c for c in step(definition, "Train")["Arguments"]["InputDataConfig"] if c["ChannelName"] == name
    )
    return found


# --- shape and wiring -------------------------------------------------------------------------


def test_definition_has_exactly_the_pipeline_steps(base: dict[str, Any]) -> None:
    # GIVEN the base spec's definition
    # WHEN listing its steps, the condition's branches included
    steps = all_steps(base)
    # THEN it holds exactly prepare, train, evaluate, the gate, register and fail, in that order at the top
    assert {name: s["Type"] for name, s in steps.items()} == {
        "Prepare": "Processing",
        "Train": "Training",
        "Evaluate": "Processing",
        "CheckEvaluation": "Condition",
        "RegisterModel": "RegisterModel",
        "Fail": "Fail",
    }
    assert [s["Name"] for s in base["Steps"]] == ["Prepare", "Train", "Evaluate", "CheckEvaluation"]
    gate = step(base, "CheckEvaluation")["Arguments"]
    assert [s["Name"] for s in gate["IfSteps"]] == ["RegisterModel"]
    assert [s["Name"] for s in gate["ElseSteps"]] == ["Fail"]


def test_train_consumes_the_prepared_splits(base: dict[str, Any]) -> None:
    # GIVEN the Train step's channels
    dataset = "Steps.Prepare.ProcessingOutputConfig.Outputs['dataset'].S3Output.S3Uri"
    # THEN train, validation and the manifest come from Prepare's output, each under its own key
    for name, suffix in (("train", "train"), ("validation", "validation"), ("manifest", "manifest.json")):
        uri = channel(base, name)["DataSource"]["S3DataSource"]["S3Uri"]
        assert join_values(uri)[0] == {"Get": dataset}
        assert suffix in join_values(uri)
    # AND the code channel is the source tarball
    assert channel(base, "code")["DataSource"]["S3DataSource"]["S3Uri"] == BASE.code_uri


def test_prepare_reads_the_raw_data_and_writes_per_execution(base: dict[str, Any]) -> None:
    # GIVEN the Prepare step
    args = step(base, "Prepare")["Arguments"]
    (raw,) = (i for i in args["ProcessingInputs"] if i["InputName"] == "raw")
    (dataset,) = args["ProcessingOutputConfig"]["Outputs"]
    # THEN it reads all of InputDataUri and writes under the execution id in the processed bucket
    assert references(raw) == {"Parameters.InputDataUri"}
    assert join_values(dataset["S3Output"]["S3Uri"]) == [
        f"s3://{BASE.processed_bucket}/processed",
        {"Get": "Execution.PipelineExecutionId"},
    ]
    # AND runs the platform's preparer as a module of the code tarball for the spec's task
    arguments = args["AppSpecification"]["ContainerArguments"]
    assert arguments[:2] == ["-m", "training_jobs.prepare"]
    assert arguments[arguments.index("--task") + 1] == "digits"
    assert args["AppSpecification"]["ContainerEntrypoint"][-1].endswith("/source-0123abcd.tar.gz")
    # AND its manifest is a property file: the registration reads the dataset version from it
    assert step(base, "Prepare")["PropertyFiles"] == [
        {"FilePath": "manifest.json", "OutputName": "dataset", "PropertyFileName": "DatasetManifest"}
    ]


def test_evaluate_consumes_the_model_and_the_test_split(base: dict[str, Any]) -> None:
    # GIVEN the Evaluate step
    evaluate = step(base, "Evaluate")
    inputs = {i["InputName"]: i["S3Input"]["S3Uri"] for i in evaluate["Arguments"]["ProcessingInputs"]}
    # THEN it reads the training job's model artifact and Prepare's test split
    assert inputs["model"] == {"Get": "Steps.Train.ModelArtifacts.S3ModelArtifacts"}
    assert "test" in join_values(inputs["test"])
    assert references(inputs["test"]) == {
        "Steps.Prepare.ProcessingOutputConfig.Outputs['dataset'].S3Output.S3Uri"
    }
    # AND publishes evaluation.json of its "evaluation" output as the EvaluationReport property file
    assert evaluate["PropertyFiles"] == [
        {"FilePath": "evaluation.json", "OutputName": "evaluation", "PropertyFileName": "EvaluationReport"}
    ]
    outputs = [o["OutputName"] for o in evaluate["Arguments"]["ProcessingOutputConfig"]["Outputs"]]
    assert outputs == ["evaluation"]


def test_register_uses_the_trained_model_and_the_evaluation_report(base: dict[str, Any]) -> None:
    # GIVEN the register step
    register = step(base, "RegisterModel")["Arguments"]
    (container,) = register["InferenceSpecification"]["Containers"]
    # THEN the model data is Train's artifact and the metrics point at Evaluate's report
    assert container["ModelDataUrl"] == {"Get": "Steps.Train.ModelArtifacts.S3ModelArtifacts"}
    statistics = register["ModelMetrics"]["ModelQuality"]["Statistics"]
    assert join_values(statistics["S3Uri"]) == [
        {"Get": "Steps.Evaluate.ProcessingOutputConfig.Outputs['evaluation'].S3Output.S3Uri"},
        "evaluation.json",
    ]
    assert register["ModelPackageGroupName"] == BASE.model_package_group_name
    # AND records what started the run, for lineage back to the data and the job
    properties = register["CustomerMetadataProperties"]
    report = {"Get": "Steps.Evaluate.PropertyFiles.EvaluationReport"}
    manifest = {"Get": "Steps.Prepare.PropertyFiles.DatasetManifest"}
    assert {k: v for k, v in properties.items() if not k.startswith(("metric.", "direction."))} == {
        "model": "digits-cnn",
        "task": "digits",
        "trigger-dataset-version": {"Get": "Parameters.DatasetVersion"},
        "dataset-version": {"Std:JsonGet": {"Path": "dataset_version", "PropertyFile": manifest}},
        "training-job": {"Get": "Steps.Train.TrainingJobName"},
        "hyperparameter.epochs": {"Get": "Parameters.TrainingEpochs"},
    }
    # AND each metric evaluate.py reports, as a string, so the champion gate can compare versions
    assert {k: v for k, v in properties.items() if k.startswith("metric.")} == {
        f"metric.{name}": {
            "Std:Join": {
                "On": "",
                "Values": [{"Std:JsonGet": {"Path": f"metrics.{name}.value", "PropertyFile": report}}],
            }
        }
        for name in ("accuracy", "precision", "recall", "f1")
    }
    # AND which way each is better, as the report states it
    assert {k: v for k, v in properties.items() if k.startswith("direction.")} == {
        f"direction.{name}": {"Std:JsonGet": {"Path": f"metrics.{name}.direction", "PropertyFile": report}}
        for name in ("accuracy", "precision", "recall", "f1")
    }


# --- parameters, gate and registration -----------------------------------------------------------


def test_parameters_and_their_defaults(base: dict[str, Any]) -> None:
    # GIVEN the definition's parameters
    defaults = {p["Name"]: (p["Type"], p["DefaultValue"]) for p in base["Parameters"]}
    # THEN each has the documented type and default
    assert defaults == {
        "DatasetVersion": ("String", "latest"),
        "InputDataUri": ("String", f"s3://{BASE.raw_bucket}/raw/"),
        "EvaluationThreshold": ("Float", 0.9),
        "ModelApprovalStatus": ("String", "PendingManualApproval"),
        "TrainingInstanceType": ("String", "ml.g4dn.xlarge"),
        # digits' own default (training_jobs/tasks.py); an execution may train longer or shorter
        "TrainingEpochs": ("String", "12"),
    }


def test_registration_waits_for_manual_approval_by_default(base: dict[str, Any]) -> None:
    # GIVEN the register step
    register = step(base, "RegisterModel")["Arguments"]
    # THEN its status is the parameter, which defaults to PendingManualApproval
    assert register["ModelApprovalStatus"] == {"Get": "Parameters.ModelApprovalStatus"}
    assert parameter(base, "ModelApprovalStatus")["DefaultValue"] == "PendingManualApproval"


@pytest.mark.parametrize(("variant", "metric"), [("base", "accuracy"), ("alt", "rmse")])
def test_gate_compares_the_metric_in_the_direction_the_report_states(
    request: pytest.FixtureRequest, variant: str, metric: str
) -> None:
    # GIVEN the condition of a stack gated on a higher-is-better (accuracy) or lower-is-better (rmse) metric
    definition = request.getfixturevalue(variant)
    conditions = step(definition, "CheckEvaluation")["Arguments"]["Conditions"]
    report = {"Get": "Steps.Evaluate.PropertyFiles.EvaluationReport"}
    value = {"Std:JsonGet": {"Path": f"metrics.{metric}.value", "PropertyFile": report}}
    direction = {"Std:JsonGet": {"Path": f"metrics.{metric}.direction", "PropertyFile": report}}
    threshold = {"Get": "Parameters.EvaluationThreshold"}
    # THEN both directions are read from the report, not from the metric's name: "higher" needs
    # value >= threshold, "lower" needs value <= threshold (all conditions must hold; no And exists)
    assert conditions == [
        {
            "Type": "Or",
            "Conditions": [
                {"Type": "Equals", "LeftValue": direction, "RightValue": "lower"},
                {"Type": "GreaterThanOrEqualTo", "LeftValue": value, "RightValue": threshold},
            ],
        },
        {
            "Type": "Or",
            "Conditions": [
                {"Type": "Equals", "LeftValue": direction, "RightValue": "higher"},
                {"Type": "LessThanOrEqualTo", "LeftValue": value, "RightValue": threshold},
            ],
        },
    ]


@pytest.mark.parametrize("variant", ["base", "alt"])
def test_fail_message_names_the_metric_and_threshold(request: pytest.FixtureRequest, variant: str) -> None:
    # GIVEN the Fail step
    definition = request.getfixturevalue(variant)
    metric = "accuracy" if variant == "base" else "rmse"
    message = step(definition, "Fail")["Arguments"]["ErrorMessage"]
    text = " ".join(v for v in join_values(message) if isinstance(v, str))
    # THEN it names the metric, where the direction comes from and the threshold parameter
    assert f"{metric} on the test split does not meet" in text
    assert "direction evaluation.json states" in text
    assert {"Get": "Parameters.EvaluationThreshold"} in join_values(message)


# --- training job settings -----------------------------------------------------------------------


def test_training_resources_come_from_the_spec(base: dict[str, Any], alt: dict[str, Any]) -> None:
    # GIVEN two specs with different instance types and counts
    for definition, spec in ((base, BASE), (alt, ALT)):
        resources = step(definition, "Train")["Arguments"]["ResourceConfig"]
        # THEN the instance type is the parameter, defaulting to the spec's GPU type,
        # and the count is the spec's
        assert resources["InstanceType"] == {"Get": "Parameters.TrainingInstanceType"}
        assert parameter(definition, "TrainingInstanceType")["DefaultValue"] == spec.training.instance_type
        assert resources["InstanceCount"] == spec.training.instance_count


def test_spot_training_waits_at_least_the_runtime_and_checkpoints(base: dict[str, Any]) -> None:
    # GIVEN spot training in the spec
    args = step(base, "Train")["Arguments"]
    stopping = args["StoppingCondition"]
    # THEN spot is on, the wait covers the runtime, and checkpoints go to the artifacts bucket per execution
    assert args["EnableManagedSpotTraining"] is True
    assert stopping["MaxRuntimeInSeconds"] == 86_400
    assert stopping["MaxWaitTimeInSeconds"] >= stopping["MaxRuntimeInSeconds"]
    checkpoint = args["CheckpointConfig"]
    assert checkpoint["LocalPath"] == "/opt/ml/checkpoints"
    assert join_values(checkpoint["S3Uri"]) == [
        f"s3://{BASE.artifacts_bucket}/checkpoints",
        {"Get": "Execution.PipelineExecutionId"},
        "",
    ]


def test_on_demand_training_has_no_spot_wait(alt: dict[str, Any]) -> None:
    # GIVEN a spec without spot
    args = step(alt, "Train")["Arguments"]
    # THEN spot is off and there is no wait time (SageMaker rejects one without spot)
    assert args["EnableManagedSpotTraining"] is False
    assert "MaxWaitTimeInSeconds" not in args["StoppingCondition"]
    assert args["StoppingCondition"]["MaxRuntimeInSeconds"] == ALT.training.max_runtime_seconds


def test_every_job_encrypts_volumes_and_outputs_with_the_key(
    base: dict[str, Any], alt: dict[str, Any]
) -> None:
    # GIVEN the training and processing jobs (base trains on g4dn, with local NVMe; alt on p3, without)
    train = step(base, "Train")["Arguments"]
    # THEN training output uses the stack's key, and the volume too where SageMaker accepts a key:
    # it refuses VolumeKmsKeyId for instance types whose storage is local NVMe (hardware-encrypted)
    assert train["OutputDataConfig"]["KmsKeyId"] == KMS
    assert "VolumeKmsKeyId" not in train["ResourceConfig"]
    assert step(alt, "Train")["Arguments"]["ResourceConfig"]["VolumeKmsKeyId"] == KMS
    assert join_values(train["OutputDataConfig"]["S3OutputPath"])[0] == f"s3://{BASE.artifacts_bucket}/models"
    # AND so do both processing jobs
    for name in ("Prepare", "Evaluate"):
        args = step(base, name)["Arguments"]
        assert args["ProcessingOutputConfig"]["KmsKeyId"] == KMS
        assert args["ProcessingResources"]["ClusterConfig"]["VolumeKmsKeyId"] == KMS
        assert args["StoppingCondition"]["MaxRuntimeInSeconds"] == BASE.processing_max_runtime_seconds


@pytest.mark.parametrize(("variant", "flag"), [("base", True), ("alt", False)])
def test_isolation_and_inter_container_encryption_follow_the_spec(
    request: pytest.FixtureRequest, variant: str, flag: bool
) -> None:
    # GIVEN a spec with isolation and encryption on (base) or off (alt)
    definition = request.getfixturevalue(variant)
    train = step(definition, "Train")["Arguments"]
    # THEN the training job carries both flags as configured
    assert train["EnableNetworkIsolation"] is flag
    assert train["EnableInterContainerTrafficEncryption"] is flag
    # AND so do the processing jobs
    for name in ("Prepare", "Evaluate"):
        network = step(definition, name)["Arguments"]["NetworkConfig"]
        assert network == {"EnableInterContainerTrafficEncryption": flag, "EnableNetworkIsolation": flag}


def test_metric_definitions_and_hyperparameters_are_carried_over(base: dict[str, Any]) -> None:
    # GIVEN the Train step
    args = step(base, "Train")["Arguments"]
    # THEN SageMaker scrapes the given metrics and train.py gets its task and the execution's epochs
    assert args["AlgorithmSpecification"]["MetricDefinitions"] == list(METRICS)
    hyperparameters = args["HyperParameters"]
    assert {k: v for k, v in hyperparameters.items() if not k.startswith("sagemaker_")} == {
        "task": "digits",
        "epochs": {"Get": "Parameters.TrainingEpochs"},
    }


def test_every_job_runs_as_the_role(base: dict[str, Any]) -> None:
    # GIVEN every job step
    jobs = [s for s in all_steps(base).values() if s["Type"] in ("Processing", "Training")]
    # THEN each names the pipeline's role
    assert [s["Name"] for s in jobs] == ["Prepare", "Train", "Evaluate"]
    assert {s["Arguments"]["RoleArn"] for s in jobs} == {ROLE}


@pytest.mark.parametrize(("variant", "spec"), [("base", BASE), ("alt", ALT)])
def test_images_are_the_sdks_for_the_region(
    request: pytest.FixtureRequest, variant: str, spec: PipelineDefinitionSpec
) -> None:
    from sagemaker.core import image_uris

    def expected(instance_type: str, scope: str) -> str:
        return image_uris.retrieve(
            "pytorch",
            spec.region,
            version=spec.framework_version,
            py_version=spec.py_version,
            instance_type=instance_type,
            image_scope=scope,
        )

    # GIVEN a spec for us-east-1 (base) or eu-west-1 (alt)
    definition = request.getfixturevalue(variant)
    train_image = step(definition, "Train")["Arguments"]["AlgorithmSpecification"]["TrainingImage"]
    (container,) = step(definition, "RegisterModel")["Arguments"]["InferenceSpecification"]["Containers"]
    # THEN training, processing and inference images are the SDK's for that region: GPU for training
    assert train_image == expected(spec.training.instance_type, "training")
    assert "gpu" in train_image
    assert f".{spec.region}." in train_image
    assert container["Image"] == expected(spec.inference_instance_type, "inference")
    for name in ("Prepare", "Evaluate"):
        image = step(definition, name)["Arguments"]["AppSpecification"]["ImageUri"]
        assert image == expected(spec.processing_instance_type, "training")


def test_no_image_account_id_is_written_in_our_code() -> None:
    # GIVEN the module's source
    source = (REPO / "infra" / "pipeline_definition.py").read_text()
    # THEN it holds no 12-digit AWS account id: images come from the SDK's table
    assert re.search(r"\b\d{12}\b", source) is None


@pytest.mark.parametrize("variant", ["base", "alt"])
def test_the_built_in_task_trains_in_script_mode_like_a_teams_code(
    request: pytest.FixtureRequest, variant: str
) -> None:
    # GIVEN the Train step of a built-in task
    args = step(request.getfixturevalue(variant), "Train")["Arguments"]
    hyperparameters = args["HyperParameters"]
    # THEN the image's own toolkit runs the platform bundle's train.py (no launcher of our own),
    # one worker per GPU under torchrun
    assert "ContainerEntrypoint" not in args["AlgorithmSpecification"]
    assert hyperparameters["sagemaker_program"] == "train.py"
    assert hyperparameters["sagemaker_submit_directory"] == "/opt/ml/input/data/code/source-0123abcd.tar.gz"
    assert hyperparameters["sagemaker_torch_distributed_enabled"] == "true"
    # AND the bundle arrives as the "code" channel, so it works under network isolation
    code = channel(request.getfixturevalue(variant), "code")
    assert code["DataSource"]["S3DataSource"]["S3Uri"] == BASE.code_uri


# --- a team's own code and data ---------------------------------------------------------------------

TEAM_CODE = "s3://mlp-dev-artifacts-111122223333-us-east-1/code/training/feedc0de/sourcedir.tar.gz"
TEAM = replace(
    BASE,
    model_name="churn",
    source_code_uri=TEAM_CODE,
    training=TrainingConfig.model_validate(
        {
            "source": {
                "dir": "examples/tabular-classifier/src",
                "entryPoint": "train.py",
                "evaluate": "evaluate.py",
            },
            "hyperparameters": {"epochs": 40, "learning-rate": 0.01, "balanced": True},
            "dataset": {"format": "csv", "target": "churned", "categorical": ["contract"]},
            "evaluationMetric": "macro_f1",
            "evaluationThreshold": 0.6,
        }
    ),
)


@pytest.fixture(scope="module")
def team() -> dict[str, Any]:
    return json.loads(build_pipeline_definition(TEAM))


def test_a_teams_entry_point_runs_from_its_own_bundle_with_its_hyperparameters(team: dict[str, Any]) -> None:
    # GIVEN a stack with the team's source folder
    args = step(team, "Train")["Arguments"]
    # THEN script mode runs the team's entry point from the team's bundle, with its hyperparameters
    # (epochs through the execution's parameter, whose default is the configured value)
    assert args["HyperParameters"] == {
        "epochs": {"Get": "Parameters.TrainingEpochs"},
        "learning-rate": "0.01",
        "balanced": "true",
        "sagemaker_program": "train.py",
        "sagemaker_submit_directory": "/opt/ml/input/data/code/sourcedir.tar.gz",
        "sagemaker_region": "us-east-1",
        "sagemaker_container_log_level": "20",
    }
    assert channel(team, "code")["DataSource"]["S3DataSource"]["S3Uri"] == TEAM_CODE
    assert parameter(team, "TrainingEpochs")["DefaultValue"] == "40"


def test_a_teams_data_goes_through_the_generic_preparer_with_its_declared_schema(
    team: dict[str, Any],
) -> None:
    app = step(team, "Prepare")["Arguments"]["AppSpecification"]
    arguments = app["ContainerArguments"]
    # THEN the platform bundle's preparer runs with the team's columns
    assert app["ContainerEntrypoint"][-1].endswith("/source-0123abcd.tar.gz")
    assert arguments[:2] == ["-m", "training_jobs.prepare"]
    declared = dict(zip(arguments[6::2], arguments[7::2], strict=True))
    assert declared == {
        "--format": "csv",
        "--problem": "classification",
        "--target": "churned",
        "--categorical": "contract",
    }


def test_a_teams_evaluation_script_writes_the_report_the_gate_and_registration_read(
    team: dict[str, Any],
) -> None:
    evaluate = step(team, "Evaluate")["Arguments"]
    # THEN Evaluate runs the team's script from the team's bundle
    assert evaluate["AppSpecification"]["ContainerArguments"][0] == "evaluate.py"
    assert evaluate["AppSpecification"]["ContainerEntrypoint"][-1].endswith("/sourcedir.tar.gz")
    # AND the preparer's input schema and baseline come along, for the launcher to publish them
    inputs = {i["InputName"]: i for i in evaluate["ProcessingInputs"]}
    assert {"serving-input-schema", "serving-baseline"} <= set(inputs)
    assert all(len(item) <= 256 for item in evaluate["AppSpecification"]["ContainerEntrypoint"])
    # AND the registration records the gate's metric, its direction and no built-in task
    properties = step(team, "RegisterModel")["Arguments"]["CustomerMetadataProperties"]
    assert {"metric.macro_f1", "direction.macro_f1", "model"} <= set(properties)
    assert "task" not in properties and properties["model"] == "churn"


def test_a_teams_model_without_an_evaluation_script_is_scored_by_the_generic_evaluator() -> None:
    # GIVEN a team's stack that leaves evaluation to the platform
    source = TEAM.training.source
    assert source is not None
    training = TEAM.training.model_copy(update={"source": source.model_copy(update={"evaluate": None})})
    evaluate = step(json.loads(build_pipeline_definition(replace(TEAM, training=training))), "Evaluate")
    app = evaluate["Arguments"]["AppSpecification"]
    # THEN the platform bundle's evaluator runs, told the problem and given the dataset's manifest
    assert app["ContainerEntrypoint"][-1].endswith("/source-0123abcd.tar.gz")
    arguments = app["ContainerArguments"]
    assert arguments[:2] == ["-m", "training_jobs.evaluate"]
    assert arguments[arguments.index("--problem") + 1] == "classification"
    manifest = arguments[arguments.index("--manifest") + 1]
    inputs = {i["InputName"]: i["S3Input"] for i in evaluate["Arguments"]["ProcessingInputs"]}
    assert inputs["manifest"]["LocalPath"] + "/manifest.json" == manifest
    assert join_values(inputs["manifest"]["S3Uri"])[-1] == "manifest.json"


def test_a_team_stack_without_its_bundle_is_refused() -> None:
    with pytest.raises(ValueError, match="source_code_uri"):
        replace(TEAM, source_code_uri=None)


# --- reproducible and offline --------------------------------------------------------------------


def test_two_builds_give_identical_json(base_build: dict[str, Any]) -> None:
    # GIVEN the same spec built twice
    again = build_pipeline_definition(BASE)
    # THEN the text is byte-identical
    assert again == base_build["text"]


def test_build_restores_the_process_environment_and_logging(base_build: dict[str, Any]) -> None:
    # GIVEN the environment and root logger before and after a build
    # THEN the switches set for the build are gone and nothing else changed
    assert base_build["environ_after"] == base_build["environ_before"]
    assert base_build["root_handlers_after"] == base_build["root_handlers_before"]


def test_build_makes_no_network_call_without_credentials(base_build: dict[str, Any]) -> None:
    # GIVEN a fresh interpreter with no AWS credentials, AWS endpoints and proxies on a closed port,
    # and every socket connection and name lookup recorded and refused
    script = textwrap.dedent(
        """
        import hashlib, json, socket, sys
        attempts = []
        def refuse(*args, **kwargs):
            attempts.append(repr(args[1:3] if len(args) > 1 else args))
            raise OSError("network disabled in this test")
        socket.socket.connect = refuse
        socket.getaddrinfo = refuse
        from tests.infra.test_pipeline_definition import BASE
        from infra.pipeline_definition import build_pipeline_definition
        text = build_pipeline_definition(BASE)
        print(json.dumps({"attempts": attempts, "sha256": hashlib.sha256(text.encode()).hexdigest()}))
        """
    )
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "SAGEMAKER_"))}
    environ |= {
        "AWS_ENDPOINT_URL": "http://127.0.0.1:9",
        "HTTPS_PROXY": "http://127.0.0.1:9",
        "HTTP_PROXY": "http://127.0.0.1:9",
        "HOME": str(REPO / "tests" / "infra"),  # no ~/.aws or ~/.config/sagemaker
    }
    # WHEN it builds the definition
    result = subprocess.run(
        [sys.executable, "-c", script],
        check=False,
        cwd=REPO,
        env=environ,
        capture_output=True,
        text=True,
        timeout=120,
    )
    # THEN it succeeds without opening any connection, and gives the same JSON as this process
    assert result.returncode == 0, result.stderr[-3000:]
    outcome = json.loads(result.stdout.strip().splitlines()[-1])
    assert outcome["attempts"] == []
    assert outcome["sha256"] == hashlib.sha256(base_build["text"].encode()).hexdigest()


# --- the spec refuses what SageMaker would reject later -------------------------------------------


@pytest.mark.parametrize("code_uri", ["/home/me/source.tar.gz", "s3://bucket/source.zip"])
def test_spec_rejects_code_that_is_not_an_s3_tarball(code_uri: str) -> None:
    # GIVEN a code location the launcher could not unpack
    # WHEN building the spec
    # THEN it fails naming the setting
    with pytest.raises(ValueError, match="code_uri"):
        replace(BASE, code_uri=code_uri)


def test_the_spec_reads_the_stack_training_section_as_it_is() -> None:
    # GIVEN the dev stack's training section (the one place these settings are written)
    training = load_stack_config("dev").training
    # WHEN the program builds the spec from it
    spec = replace(BASE, training=training)
    # THEN the definition's settings are that section's, not copies that could drift
    assert spec.training is training
    assert spec.metric_json_path == f"metrics.{training.evaluation_metric}.value"
    assert spec.builtin_task == training.task


# --- the built definition is kept by content -------------------------------------------------------


def test_a_definition_built_before_is_read_back_and_a_changed_spec_is_built(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, base_build: dict[str, Any]
) -> None:
    # GIVEN an empty cache, and a build that counts its calls
    monkeypatch.setattr(pipeline_definition_module, "CACHE_DIR", tmp_path)
    builds: list[PipelineDefinitionSpec] = []
    real_build = pipeline_definition_module.build_pipeline_definition

    def counted(spec: PipelineDefinitionSpec) -> str:
        builds.append(spec)
        return real_build(spec)

    monkeypatch.setattr(pipeline_definition_module, "build_pipeline_definition", counted)
    # WHEN the same spec is asked for twice, then a spec with another threshold
    first = pipeline_definition_module.pipeline_definition(BASE)
    second = pipeline_definition_module.pipeline_definition(BASE)
    changed = replace(BASE, training=BASE.training.model_copy(update={"evaluation_threshold": 0.5}))
    third = pipeline_definition_module.pipeline_definition(changed)
    # THEN the first is the build's own text, the second is read back without building, the third is built
    assert first == second == base_build["text"]
    assert builds == [BASE, changed]
    assert json.loads(third)["Parameters"] != json.loads(first)["Parameters"]
