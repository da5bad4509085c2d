"""The pipeline definition language as the local executor reads it: parameters, expressions,
conditions, step order, and what it refuses."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest

from emulator.pipelines import (
    ExecutionRecord,
    PipelineExecutor,
    StepFailure,
    _Context,
    evaluate_condition,
    follow_path,
    in_dependency_order,
    parameter_values,
    resolve,
)
from handlers.common.s3_uri import S3Uri

DECLARED = [
    {"Name": "Threshold", "Type": "Float", "DefaultValue": 0.9},
    {"Name": "Epochs", "Type": "String", "DefaultValue": "12"},
    {"Name": "Count", "Type": "Integer", "DefaultValue": 1},
]


class FakeS3:
    def __init__(self, objects: dict[tuple[str, str], Any]) -> None:
        self.objects = objects

    def get_object(self, Bucket: str, Key: str) -> dict[str, Any]:  # noqa: N803 - boto3's names
        return {"Body": io.BytesIO(json.dumps(self.objects[(Bucket, Key)]).encode())}


def context(**properties: Any) -> _Context:
    return _Context(
        parameters=parameter_values(DECLARED),
        execution={"PipelineExecutionId": "abc123"},
        properties=properties,
        property_files={("Evaluate", "Report"): S3Uri("b", "eval/abc123/evaluation.json")},
    )


def test_parameters_take_overrides_typed_as_declared_and_keep_the_defaults() -> None:
    values = parameter_values(
        DECLARED, [{"Name": "Threshold", "Value": "0.5"}, {"Name": "Count", "Value": "3"}]
    )
    assert values == {"Threshold": 0.5, "Epochs": "12", "Count": 3}


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ([{"Name": "Treshold", "Value": "0.5"}], "unknown pipeline parameters: Treshold"),
        ([{"Name": "Threshold", "Value": "high"}], "Threshold: 'high' is not a Float"),
    ],
)
def test_a_bad_override_fails_naming_the_parameter(overrides: list[dict[str, str]], message: str) -> None:
    with pytest.raises(StepFailure, match=message):
        parameter_values(DECLARED, overrides)


def test_expressions_resolve_as_sagemaker_resolves_them() -> None:
    # GIVEN a step that ran and a property file it wrote
    ctx = context(
        Prepare={"ProcessingOutputConfig": {"Outputs": {"dataset": {"S3Output": {"S3Uri": "s3://p/x"}}}}}
    )
    s3 = FakeS3({("b", "eval/abc123/evaluation.json"): {"metrics": {"accuracy": {"value": 0.93}}}})
    value = {
        "uri": {"Std:Join": {"On": "/", "Values": [
            {"Get": "Steps.Prepare.ProcessingOutputConfig.Outputs['dataset'].S3Output.S3Uri"}, "train", ""]}},
        "run": {"Std:Join": {"On": "-", "Values": ["run", {"Get": "Execution.PipelineExecutionId"}]}},
        "score": {"Std:JsonGet": {"PropertyFile": {"Get": "Steps.Evaluate.PropertyFiles.Report"},
                                  "Path": "metrics.accuracy.value"}},
        "text": {"Std:Join": {"On": "", "Values": [{"Get": "Parameters.Threshold"}]}},
        "plain": ["a", {"Get": "Parameters.Epochs"}],
    }  # fmt: skip
    # THEN each is replaced by its value, and plain values stay as they are
    assert resolve(value, ctx, s3) == {
        "uri": "s3://p/x/train/",
        "run": "run-abc123",
        "score": 0.93,
        "text": "0.9",
        "plain": ["a", "12"],
    }


@pytest.mark.parametrize(
    ("reference", "message"),
    [
        ("Parameters.Nope", "no pipeline parameter 'Nope'"),
        ("Steps.Train.ModelArtifacts.S3ModelArtifacts", "step 'Train' has no properties yet"),
        ("Steps.Prepare.ProcessingOutputConfig.Outputs['other'].S3Output.S3Uri", "no 'other' here"),
        ("Execution.CurrentDateTime", "not available locally"),
    ],
)
def test_an_unresolvable_reference_fails_the_step_saying_which(reference: str, message: str) -> None:
    ctx = context(Prepare={"ProcessingOutputConfig": {"Outputs": {"dataset": {}}}})
    with pytest.raises(StepFailure, match=message):
        resolve({"Get": reference}, ctx, FakeS3({}))


def test_paths_take_names_keys_and_indexes() -> None:
    document = {"a": {"b": [{"c": 1}, {"c": 2}]}, "d": {"x": {"y": 3}}}
    assert follow_path(document, "a.b[1].c") == 2
    assert follow_path(document, "d['x'].y") == 3
    assert follow_path(document, "d[0].y") == 3  # a dict keyed by name also answers by position


THRESHOLD = {"Get": "Parameters.Threshold"}


@pytest.mark.parametrize(
    ("condition", "outcome"),
    [
        ({"Type": "GreaterThanOrEqualTo", "LeftValue": 0.93, "RightValue": THRESHOLD}, True),
        ({"Type": "LessThanOrEqualTo", "LeftValue": 0.93, "RightValue": THRESHOLD}, False),
        ({"Type": "Equals", "LeftValue": {"Get": "Parameters.Epochs"}, "RightValue": "12"}, True),
        ({"Type": "In", "QueryValue": "b", "Values": ["a", "b"]}, True),
        ({"Type": "Not", "Expression": {"Type": "Equals", "LeftValue": 1, "RightValue": 1}}, False),
        ({"Type": "Or", "Conditions": [{"Type": "GreaterThan", "LeftValue": 1, "RightValue": 2},
                                       {"Type": "LessThan", "LeftValue": 1, "RightValue": 2}]}, True),
    ],
)  # fmt: skip
def test_conditions_evaluate_as_sagemaker_evaluates_them(condition: dict[str, Any], outcome: bool) -> None:
    assert evaluate_condition(condition, context(), FakeS3({})) is outcome


def test_steps_run_after_what_they_refer_to_and_depend_on() -> None:
    # GIVEN steps listed out of order: C refers to B's properties, B depends on A
    steps = [
        {"Name": "C", "Type": "Fail", "Arguments": {"ErrorMessage": {"Get": "Steps.B.ModelPackageArn"}}},
        {"Name": "B", "Type": "Fail", "DependsOn": ["A"]},
        {"Name": "A", "Type": "Fail"},
    ]
    # THEN they run A, B, C
    assert [s["Name"] for s in in_dependency_order(steps)] == ["A", "B", "C"]


def test_steps_that_depend_on_each_other_are_refused() -> None:
    steps = [
        {"Name": "A", "Type": "Fail", "DependsOn": ["B"]},
        {"Name": "B", "Type": "Fail", "DependsOn": ["A"]},
    ]
    with pytest.raises(StepFailure, match="depend on each other"):
        in_dependency_order(steps)


def test_a_step_type_that_does_not_run_here_fails_the_execution_with_the_reason(tmp_path: Path) -> None:
    # GIVEN a definition with a step type local mode does not run (no AWS call is needed to know)
    definition = {"Parameters": [], "Steps": [{"Name": "Notify", "Type": "Lambda", "Arguments": {}}]}
    record = ExecutionRecord("arn:aws:sagemaker:us-east-1:1:pipeline/p/execution/abc123")
    # WHEN it runs
    PipelineExecutor(None, None, tmp_path).run(definition, record)  # type: ignore[arg-type]
    # THEN the execution and the step fail, and the reason names the type and what does run
    assert record.status == "Failed"
    (step,) = record.api_steps()
    assert step["StepStatus"] == "Failed" and "'Lambda' does not run locally" in step["FailureReason"]
    assert "Processing, Training, Condition, RegisterModel, Fail" in str(record.failure_reason)


def test_a_fail_step_fails_the_execution_with_its_message(tmp_path: Path) -> None:
    definition = {
        "Parameters": DECLARED,
        "Steps": [{"Name": "Stop", "Type": "Fail", "Arguments": {"ErrorMessage": {"Std:Join": {
            "On": " ", "Values": ["not above", {"Get": "Parameters.Threshold"}]}}}}],
    }  # fmt: skip
    record = PipelineExecutor(None, None, tmp_path).run(definition, ExecutionRecord("arn:x/execution/e1"))  # type: ignore[arg-type]
    assert (record.status, record.failure_reason) == ("Failed", "not above 0.9")
    assert record.api_steps()[0]["Metadata"] == {"Fail": {"ErrorMessage": "not above 0.9"}}


def test_a_training_step_that_cannot_run_here_fails_the_step_with_the_reason(tmp_path: Path) -> None:
    # GIVEN a Train step of a team's own image, without script mode (its entry point is the image's)
    arguments = {
        "AlgorithmSpecification": {"TrainingImage": "123456789012.dkr.ecr.us-east-1.amazonaws.com/team:1"},
        "RoleArn": "arn:aws:iam::123456789012:role/training",
        "OutputDataConfig": {"S3OutputPath": "s3://artifacts/models"},
    }
    definition = {"Parameters": [], "Steps": [{"Name": "Train", "Type": "Training", "Arguments": arguments}]}
    record = PipelineExecutor(None, None, tmp_path).run(definition, ExecutionRecord("arn:x/execution/e2"))  # type: ignore[arg-type]
    # THEN the step fails as SageMaker's validation would, saying why, not as the emulator's own error
    (step,) = record.api_steps()
    assert step["StepStatus"] == "Failed"
    assert str(record.failure_reason).startswith("ValidationException: the training image")
    assert "own entry point does not run on this machine" in str(record.failure_reason)
